//! Names chosen by a sender or by whoever drops a file (#22 item 6): control characters,
//! terminal sequences and bidi overrides in them are shown escaped in every listing and log
//! line, and never reach an export file name.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mukaika::store::quarantine::QuarantineItem;
use mukaika_sanitizers::names::is_hidden_control;

/// Sets a terminal's title, splits a TSV row and a log line, starts a fake column.
const TITLE_AND_LINES: &str = "title\u{1b}]0;pwned\u{7}\r\nFORGED\tcol.txt";
/// Shown by a bidi-aware viewer as `見積txt.exe`.
const RLO_TEXT: &str = "見積\u{202e}exe.txt";
/// A held program whose name hides its extension.
const RLO_PROGRAM: &str = "held\u{202e}gpj.exe";

/// A configuration for `data` (the default import pair under it, taken without waiting).
fn config_file(data: &Path) -> PathBuf {
    let text = support::config_text(data, "127.0.0.1:0")
        .replace("settle_secs = 5", "settle_secs = 0")
        .replace("rescan_secs = 30", "rescan_secs = 1");
    std::fs::create_dir_all(data).unwrap();
    let path = data.join("mukaika.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn drop_hostile_files(import: &Path) {
    std::fs::create_dir_all(import).unwrap();
    std::fs::write(import.join(TITLE_AND_LINES), b"bad name\n").unwrap();
    std::fs::write(import.join(RLO_TEXT), b"plain text\n").unwrap();
    std::fs::write(import.join(RLO_PROGRAM), b"MZ\x90\x00 synthetic program").unwrap();
}

fn run(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Every line of `out` free of hidden characters, each with `tabs` tab-separated columns.
fn assert_rows(out: &str, rows: usize, columns: usize) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), rows, "{out}");
    for line in &lines {
        assert!(
            !line.chars().any(|c| c != '\t' && is_hidden_control(c)),
            "raw control in {line:?}"
        );
        assert!(
            line.split('\t').count() == columns || !line.contains('\t'),
            "{line:?}"
        );
    }
}

#[test]
fn hostile_names_are_escaped_in_listings_and_kept_out_of_export_names() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data);
    drop_hostile_files(&data.join("import"));
    // A quarantined mail whose envelope carries the same tricks.
    let store = mukaika::store::quarantine::open(
        data.join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap();
    store
        .put(
            &QuarantineItem {
                id: "m20261204-hostile".into(),
                source: "mail".into(),
                origin_id: "q1".into(),
                name: Some(TITLE_AND_LINES.into()),
                reason: "encrypted".into(),
                detail: String::new(),
                sha256: mukaika_sanitizers::report::sha256_hex(b"m"),
                size: 1,
                at: "2026-12-04T00:00:00Z".into(),
                report: serde_json::Value::Null,
                mail_from: Some("a\u{1b}]0;x\u{7}@example.invalid".into()),
                rcpt_to: vec!["staff@city.example.lg.jp\r\nforged\u{202e}".into()],
                subject: Some(TITLE_AND_LINES.into()),
                detected_type: Some("zip".into()),
            },
            b"m",
        )
        .unwrap();

    // `import once`: a header, one row a file, the summary.
    let table = run(&["import", "once"], &config);
    assert_rows(&table, 5, 5);
    assert!(table.contains("title\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}FORGED\\u{9}col.txt"));

    // `quarantine list`: a header and one row an item (the three files — a name with a bidi
    // control is held as a disguise — and the mail).
    let listing = run(&["quarantine", "list"], &config);
    assert_rows(&listing, 5, 7);
    assert!(listing.contains("held\\u{202e}gpj.exe"), "{listing}");
    assert!(
        listing.contains("a\\u{1b}]0;x\\u{7}@example.invalid"),
        "{listing}"
    );
    let json = run(&["quarantine", "list", "--json"], &config);
    assert!(
        !json.chars().any(|c| c != '\n' && is_hidden_control(c)),
        "{json}"
    );

    // Export and report names carry no control or bidi character; the reports name the
    // input escaped.
    let export = data.join("export");
    let names: Vec<String> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in &names {
        assert!(!name.chars().any(is_hidden_control), "{name:?}");
    }
    assert!(
        names.iter().any(|n| n == "見積_exe.txt.無害化レポート.txt"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "held_gpj.exe.無害化レポート.txt"),
        "{names:?}"
    );
    for name in &names {
        if name.ends_with("無害化レポート.txt") {
            let report = std::fs::read_to_string(export.join(name)).unwrap();
            assert!(
                !report
                    .chars()
                    .any(|c| c != '\r' && c != '\n' && is_hidden_control(c)),
                "{report:?}"
            );
        }
    }
}

#[test]
fn a_file_name_with_a_newline_cannot_forge_a_service_log_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data);
    let child = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let import = data.join("import");
    let export = data.join("export");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !import.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop_hostile_files(&import);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&import).map_or(0, |d| d.count()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(export.exists());
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8(out.stdout).unwrap();
    assert!(log.contains("imported"), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with("20") && !line.chars().any(is_hidden_control),
            "a forged or raw log line: {line:?}\n{log}"
        );
    }
    assert!(
        log.contains("title\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}FORGED"),
        "{log}"
    );
}
