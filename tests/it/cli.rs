//! `mukaika sanitize` end to end: real files in temp folders, the real binary.

use mukaika_fixtures as generate;

use crate::support;

use std::path::Path;
use std::process::Command;
use support::mukaika;

fn report(dir: &Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{name}.report.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sanitize_writes_outputs_and_a_report_for_every_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let out = tmp.path().join("out");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("見積書.docm"),
        generate::docm_with_macro().build(),
    )
    .unwrap();
    std::fs::write(input.join("brochure.pdf"), generate::pdf_js_openaction()).unwrap();
    std::fs::write(input.join("setup.exe"), b"MZ\x90\x00\x03\x00\x00\x00").unwrap();
    let args: Vec<String> = ["sanitize", "--json", "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .chain(
            ["見積書.docm", "brochure.pdf", "setup.exe"]
                .iter()
                .map(|n| input.join(n).display().to_string()),
        )
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = mukaika(&args);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);

    let docm = report(&out, "見積書.docm");
    assert_eq!(docm["verdict"], "sanitized");
    assert_eq!(docm["output"], "見積書.docx");
    let docx = std::fs::read(out.join("見積書.docx")).unwrap();
    assert_eq!(docm["output_sha256"], generate_sha(&docx));
    assert!(!out.join("見積書.docm").exists());

    assert_eq!(report(&out, "brochure.pdf")["verdict"], "sanitized");
    assert!(out.join("brochure.pdf").exists());

    let exe = report(&out, "setup.exe");
    assert_eq!(exe["verdict"], "blocked");
    assert_eq!(exe["output"], serde_json::Value::Null);
    assert!(
        !out.join("setup.exe").exists(),
        "a blocked input never reaches the output folder"
    );
}

fn generate_sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn clashing_names_get_a_numbered_suffix_never_an_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("out"),
    );
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("doc.pdf"), generate::pdf_js_openaction()).unwrap();
    std::fs::write(b.join("doc.pdf"), generate::pdf_kitchen_sink()).unwrap();
    let result = mukaika(&[
        "sanitize",
        "--out",
        out.to_str().unwrap(),
        a.join("doc.pdf").to_str().unwrap(),
        b.join("doc.pdf").to_str().unwrap(),
    ]);
    assert!(result.status.success());
    assert!(out.join("doc.pdf").exists() && out.join("doc (2).pdf").exists());
    assert!(
        out.join("doc.pdf.report.json").exists() && out.join("doc.pdf (2).report.json").exists()
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        4,
        "no temporary files are left behind"
    );
}

#[test]
fn exits_two_on_bad_usage_and_one_on_an_unwritable_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = tmp.path().join("a.pdf");
    std::fs::write(&pdf, generate::pdf_js_openaction()).unwrap();
    let out = tmp.path().join("out");

    assert_eq!(mukaika(&["sanitize"]).status.code(), Some(2));
    let missing = mukaika(&[
        "sanitize",
        "--out",
        out.to_str().unwrap(),
        "/nonexistent/x.pdf",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file"));

    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, "keep_link = true\n").unwrap();
    let bad = mukaika(&[
        "sanitize",
        "--policy",
        policy.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        pdf.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("keep_link"));

    // A regular file where the folder should be: cannot be created.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let target = blocker.join("out");
    let unwritable = mukaika(&[
        "sanitize",
        "--out",
        target.to_str().unwrap(),
        pdf.to_str().unwrap(),
    ]);
    assert_eq!(unwritable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unwritable.stderr).contains("cannot create output folder"));
}

#[test]
fn a_policy_file_changes_the_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let docm = tmp.path().join("a.docm");
    std::fs::write(&docm, generate::docm_with_macro().build()).unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, "[actions]\ndocm = \"quarantine\"\n").unwrap();
    let out = tmp.path().join("out");
    let result = mukaika(&[
        "sanitize",
        "--policy",
        policy.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        docm.to_str().unwrap(),
    ]);
    assert!(result.status.success());
    let r = report(&out, "a.docm");
    assert_eq!(r["verdict"], "quarantined");
    assert_eq!(r["reason"]["code"], "policy-quarantine");
    assert!(!out.join("a.docx").exists());
}

#[test]
fn mail_convert_writes_message_report_and_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let ppap = tmp.path().join("ppap.eml");
    std::fs::write(&ppap, generate::mail_ppap()).unwrap();
    let enveloped = tmp.path().join("enveloped.eml");
    std::fs::write(&enveloped, generate::mail_smime_enveloped()).unwrap();
    let result = mukaika(&[
        "mail",
        "convert",
        "--json",
        "--out",
        out.to_str().unwrap(),
        ppap.to_str().unwrap(),
        enveloped.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let reports: Vec<serde_json::Value> = String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports[0]["verdict"], "delivered");
    assert_eq!(reports[0]["attachments"][0]["disposition"], "held");
    assert_eq!(reports[0]["attachments"][0]["detected_type"], "zip");
    let id = reports[0]["id"].as_str().unwrap();
    let qid = reports[0]["attachments"][0]["quarantine_id"]
        .as_str()
        .unwrap();
    let converted = std::fs::read(out.join(format!("{id}.eml"))).unwrap();
    assert!(String::from_utf8_lossy(&converted).contains("X-Mukaika-Id: "));
    assert!(out.join(format!("{id}.report.json")).exists());
    assert!(
        out.join("quarantine")
            .join(format!("{qid}-見積書.zip"))
            .exists(),
        "held original kept"
    );

    assert_eq!(reports[1]["verdict"], "quarantined");
    let id2 = reports[1]["id"].as_str().unwrap();
    assert!(
        !out.join(format!("{id2}.eml")).exists(),
        "nothing delivered for a held message"
    );
    assert_eq!(
        std::fs::read(out.join("quarantine").join(format!("{id2}.eml"))).unwrap(),
        generate::mail_smime_enveloped()
    );
}

#[test]
fn mail_convert_reads_standard_input() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args([
            "mail",
            "convert",
            "--json",
            "--out",
            out.to_str().unwrap(),
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&generate::mail_html_only())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(result.status.success());
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["verdict"], "delivered");
    assert_eq!(
        mukaika(&[
            "mail",
            "convert",
            "--out",
            out.to_str().unwrap(),
            "/nonexistent.eml"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn the_readme_policy_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let toml: String = readme
        .split("```toml")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block")
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, toml).unwrap();
    let pdf = tmp.path().join("a.pdf");
    std::fs::write(&pdf, generate::pdf_js_openaction()).unwrap();
    let result = mukaika(&[
        "sanitize",
        "--policy",
        policy.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
        pdf.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// `mukaika selfcheck --config F` with `bin` first on PATH (for a stand-in chronyc).
fn selfcheck(config: &Path, bin: &Path) -> (i32, String) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["selfcheck", "--config"])
        .arg(config)
        .env("PATH", path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The result column (適合 / 不適合) of the row for `item`.
fn result<'a>(table: &'a str, item: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.contains(item))
        .and_then(|l| l.split('\t').nth(2))
        .unwrap_or_else(|| panic!("no row for {item}:\n{table}"))
}

#[test]
fn selfcheck_prints_the_clause_table_and_fails_on_any_gap() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let chronyc = bin.join("chronyc");
    std::fs::write(
        &chronyc,
        "#!/bin/sh\necho 'Reference ID    : 7F7F0101 ()'\necho 'Leap status     : Normal'\n",
    )
    .unwrap();
    std::fs::set_permissions(&chronyc, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A stand-in clamd that answers VERSION, on a socket of its own.
    let socket = dir.path().join("clamd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in listener.incoming().flatten() {
            let mut command = Vec::new();
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != 0 {
                command.push(byte[0]);
            }
            let reply: &[u8] = if command == b"zVERSION" {
                b"ClamAV 1.4.6/27100/Fri Nov 27 09:00:00 2026\0"
            } else {
                b"PONG\0"
            };
            let _ = conn.write_all(reply);
        }
    });
    let data = dir.path().join("data");
    let base = mukaika::config::DEFAULT_TOML
        .replace("dir = \"./data\"", &format!("dir = \"{}\"", data.display()))
        .replace(
            "# clamd = \"unix:/run/clamav/clamd.ctl\"",
            &format!("clamd = \"unix:{}\"", socket.display()),
        );
    let config = dir.path().join("mukaika.toml");

    std::fs::write(&config, &base).unwrap();
    let (code, table) = selfcheck(&config, &bin);
    for clause in [
        "7.1(14)①",
        "7.1(14)③",
        "5.3④⑤",
        "7.1(6)",
        "7.4(1)",
        "8.1②",
        "2(9)",
        "6.4(3)⑤",
    ] {
        assert!(table.contains(clause), "{clause} missing:\n{table}");
    }
    assert_eq!(code, 0, "{table}");
    assert_eq!(result(&table, "時刻の同期"), "適合");
    assert!(table.contains("ClamAV 1.4.6/27100"), "{table}");

    // Listening beyond loopback without TLS fails 5.3.
    let exposed = base
        .replace("listen = \"127.0.0.1:2525\"", "listen = \"0.0.0.0:2525\"")
        .replace(
            "accepted_domains = []",
            "accepted_domains = [\"city.example.lg.jp\"]",
        );
    std::fs::write(&config, exposed).unwrap();
    let (code, table) = selfcheck(&config, &bin);
    assert_eq!(code, 1);
    assert_eq!(result(&table, "SMTP 受信の暗号化"), "不適合", "{table}");

    // An account still on its one-time password fails 6.4(3)⑤.
    let parsed = mukaika::config::ServiceConfig::from_toml(&base).unwrap();
    let reply = mukaika::admin::control::run(
        &parsed,
        mukaika::admin::control::Op::UserAdd {
            name: "sato".into(),
            roles: vec![mukaika::review::Role::Operator],
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    let (code, table) = selfcheck(&config, &bin);
    assert_eq!(code, 1);
    assert_eq!(result(&table, "初期パスワード"), "不適合", "{table}");
    assert!(table.contains("初期パスワードのまま: sato"), "{table}");
    assert_eq!(result(&table, "二人承認"), "適合", "{table}");
    std::fs::remove_file(data.join("review.db")).unwrap();
    let _ = std::fs::remove_file(data.join("review.db-wal"));
    let _ = std::fs::remove_file(data.join("review.db-shm"));
    std::fs::remove_dir_all(data.join("audit")).unwrap();

    // A tampered audit chain fails 7.1(6).
    std::fs::write(&config, &base).unwrap();
    let log =
        mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig::new(data.join("audit"), "gw1"))
            .unwrap();
    for i in 0..3 {
        log.append(mukaika::audit::AuditEvent::ServiceStarted(
            mukaika::audit::event::ServiceEvent {
                version: format!("0.{i}"),
                reason: None,
            },
        ))
        .unwrap();
    }
    drop(log);
    let file = mukaika::audit::log::list_files(&data.join("audit")).unwrap()[0].clone();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("0.1", "9.9", 1)).unwrap();
    let (code, table) = selfcheck(&config, &bin);
    assert_eq!(code, 1);
    assert_eq!(result(&table, "改ざん検知"), "不適合", "{table}");
}

/// Issue #16 I: `mukaika quarantine list | head -1` (and `queue list | head`) panicked on the
/// closed pipe. The reader here is gone before the first line, as `head` is after its one.
#[test]
fn listings_into_a_closed_pipe_end_quietly() {
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("mukaika.toml");
    std::fs::write(&cfg, support::config_text(data.path(), "127.0.0.1:0")).unwrap();
    let store = mukaika::store::quarantine::open(
        data.path().join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap();
    let (spool, _) = mukaika::store::spool::Spool::open(data.path().join("spool"), 1).unwrap();
    for n in 0..3 {
        let body = format!("held {n}");
        store
            .put(
                &mukaika::store::quarantine::QuarantineItem {
                    id: format!("Q{n}"),
                    source: "mail".into(),
                    origin_id: format!("O{n}"),
                    name: None,
                    reason: "encrypted".into(),
                    detail: String::new(),
                    sha256: mukaika::sanitizers::report::sha256_hex(body.as_bytes()),
                    size: body.len() as u64,
                    at: format!("2026-01-0{}T00:00:00.000Z", n + 1),
                    report: serde_json::Value::Null,
                    mail_from: None,
                    rcpt_to: Vec::new(),
                    subject: None,
                    detected_type: None,
                },
                body.as_bytes(),
            )
            .unwrap();
        spool
            .accept(
                mukaika::envelope::Envelope {
                    helo: "x".into(),
                    mail_from: "a@example.invalid".into(),
                    rcpt_to: vec!["b@example.invalid".into()],
                    eight_bit: false,
                    smtputf8: false,
                },
                "127.0.0.1",
                b"Subject: q\r\n\r\nx\r\n",
            )
            .unwrap();
    }
    for args in [
        ["quarantine", "list", "--config"],
        ["queue", "list", "--config"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(args)
            .arg(&cfg)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && stderr.is_empty(),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn mail_convert_keeps_a_held_attachment_whose_name_is_300_bytes() {
    let long = format!("{}ab資料.zip", "見積書".repeat(32));
    assert_eq!(long.len(), 300);
    let ppap = String::from_utf8(generate::mail_ppap()).unwrap();
    let short_word = generate::encoded_word("UTF-8", "見積書.zip".as_bytes());
    assert!(ppap.contains(&short_word));
    let raw = ppap.replace(
        &short_word,
        &generate::encoded_word("UTF-8", long.as_bytes()),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = tmp.path().join("long.eml");
    std::fs::write(&input, raw).unwrap();
    let result = mukaika(&[
        "mail",
        "convert",
        "--json",
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8(result.stdout).unwrap().trim()).unwrap();
    assert_eq!(report["attachments"][0]["disposition"], "held");
    let qid = report["attachments"][0]["quarantine_id"].as_str().unwrap();
    let held: Vec<String> = std::fs::read_dir(out.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    let name = &held[0];
    assert!(name.len() <= 255, "{} bytes", name.len());
    // Cut at a character (a String holds it), extension kept, and the rest of the original.
    let stem = name.strip_suffix(".zip").unwrap();
    assert!(stem.len() > 200, "{name}");
    assert!(format!("{qid}-{long}").starts_with(stem), "{name}");
}

/// Listings are read by people: Japan time, marked; `--json` keeps the UTC record.
#[test]
fn quarantine_and_queue_listings_show_japan_time() {
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("mukaika.toml");
    std::fs::write(&cfg, support::config_text(data.path(), "127.0.0.1:0")).unwrap();
    let store = mukaika::store::quarantine::open(
        data.path().join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap();
    // 2026-12-04T17:52:55.843Z: 02:52:55 on the 5th in Japan.
    let clock = mukaika::clock::TestClock::at(1_796_406_775_843);
    let (spool, _) =
        mukaika::store::spool::Spool::open_with_clock(data.path().join("spool"), 1, clock).unwrap();
    store
        .put(
            &mukaika::store::quarantine::QuarantineItem {
                id: "Q1".into(),
                source: "mail".into(),
                origin_id: "Q1".into(),
                name: None,
                reason: "encrypted".into(),
                detail: String::new(),
                sha256: mukaika::sanitizers::report::sha256_hex(b"x"),
                size: 1,
                at: "2026-12-04T17:52:55.843Z".into(),
                report: serde_json::Value::Null,
                mail_from: None,
                rcpt_to: Vec::new(),
                subject: None,
                detected_type: None,
            },
            b"x",
        )
        .unwrap();
    spool
        .accept(
            mukaika::envelope::Envelope {
                helo: "x".into(),
                mail_from: "a@example.invalid".into(),
                rcpt_to: vec!["b@example.invalid".into()],
                eight_bit: false,
                smtputf8: false,
            },
            "127.0.0.1",
            b"Subject: q\r\n\r\nx\r\n",
        )
        .unwrap();
    let cfg = cfg.to_str().unwrap();
    for args in [
        ["quarantine", "list", "--config", cfg],
        ["queue", "list", "--config", cfg],
    ] {
        let out = mukaika(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout.contains("2026-12-05 02:52:55 (JST)"),
            "{args:?}: {stdout}"
        );
        assert!(!stdout.contains("T17:52"), "{args:?}: {stdout}");
    }
    let json = mukaika(&["quarantine", "list", "--json", "--config", cfg]);
    assert!(String::from_utf8_lossy(&json.stdout).contains("2026-12-04T17:52:55.843Z"));
}

#[test]
fn queue_list_refuses_a_state_it_does_not_know_and_counts_what_it_lists() {
    let data = tempfile::tempdir().unwrap();
    let conf_path = data.path().join("mukaika.toml");
    std::fs::write(&conf_path, support::config_text(data.path(), "127.0.0.1:0")).unwrap();
    let conf = conf_path.to_str().unwrap();
    let out = support::mukaika(&["queue", "list", "--state", "bogus", "--config", conf]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("incoming, active, deferred, hold, corrupt")
    );
    let out = support::mukaika(&["queue", "list", "--state", "hold", "--config", conf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 件"));
}

/// Issue #19: shell completions come from the binary itself, for the shells people use.
#[test]
fn completions_name_the_subcommands_for_each_shell() {
    let out = mukaika(&["completions", "bash"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("complete -F"), "{text}");
    for word in ["serve", "quarantine", "audit", "--log-format"] {
        assert!(
            text.contains(word),
            "{word} missing from the bash completion"
        );
    }
    for shell in ["zsh", "fish"] {
        let out = mukaika(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("serve"),
            "{shell}"
        );
    }
    let out = mukaika(&["completions", "tcsh-9"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Issue #19: `mukaika man` prints a roff manual page naming every subcommand.
#[test]
fn man_prints_a_roff_page_naming_the_subcommands() {
    let out = mukaika(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(".ie") || text.contains("\n.TH "), "{text}");
    assert!(text.contains(".TH mukaika 1"), "{text}");
    for word in ["serve", "quarantine", "health", "completions"] {
        assert!(text.contains(word), "{word} missing from the page");
    }
}

/// The name the password database gives `uid` (as `id -un` would), or `uid<N>`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}

#[test]
fn a_cli_approval_is_recorded_with_the_os_user_and_pid_the_kernel_reports() {
    let data = tempfile::tempdir().unwrap();
    let conf_path = data.path().join("mukaika.toml");
    let text = support::config_text(data.path(), "127.0.0.1:0");
    std::fs::write(&conf_path, &text).unwrap();
    let conf = conf_path.to_str().unwrap();
    let config = mukaika::config::ServiceConfig::from_toml(&text).unwrap();
    let original = b"Subject: held\r\n\r\nbody\r\n";
    support::hold(
        data.path(),
        &support::held_mail("Q0001", "malformed", original),
        original,
    );
    // The service runs: every command below goes through its control socket.
    let rt = support::runtime();
    let running = support::start(&rt, config, &text);
    let yamada = support::cli_account(conf, data.path(), "yamada", "operator");
    let tanaka = support::cli_account(conf, data.path(), "tanaka", "approver");
    let out = mukaika(&[
        "quarantine",
        "request-release",
        "Q0001",
        "--user",
        "yamada",
        "--password-file",
        yamada.to_str().unwrap(),
        "--reason",
        "取引先に確認済み",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let child = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args([
            "quarantine",
            "approve",
            &rid,
            "--user",
            "tanaka",
            "--password-file",
            tanaka.to_str().unwrap(),
            "--reason",
            "ok",
            "--config",
            conf,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Account changes by the local administrator name the OS user too.
    let out = mukaika(&["admin", "user", "disable", "yamada", "--config", conf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(running.stop("test"));

    let uid = rustix::process::getuid().as_raw();
    let records: Vec<serde_json::Value> =
        mukaika::audit::search(&data.path().join("audit"), &Default::default())
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
    let approved: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] == "release_approved")
        .collect();
    assert_eq!(approved.len(), 1);
    let via = &approved[0]["via"];
    assert_eq!(via["channel"], "cli", "{via}");
    assert_eq!(via["os_user"], user_name(uid), "{via}");
    assert_eq!(via["uid"], uid, "{via}");
    assert_eq!(
        via["pid"], pid,
        "the approving process, as the kernel saw it: {via}"
    );
    // The proof's login check names the same process.
    assert!(records
        .iter()
        .any(|r| r["type"] == "admin_login" && r["user"] == "tanaka" && r["via"]["pid"] == pid));
    // Every review action and account change names the command line.
    for r in records.iter().filter(|r| {
        [
            "release_requested",
            "release_approved",
            "user_changed",
            "admin_login",
        ]
        .contains(&r["type"].as_str().unwrap_or_default())
    }) {
        assert_eq!(r["via"]["channel"], "cli", "{r}");
        assert_eq!(r["via"]["uid"], uid, "{r}");
    }
    let disabled = records
        .iter()
        .find(|r| r["type"] == "user_changed" && r["action"] == "disable")
        .expect("the disabling is on record");
    assert_eq!(disabled["by"], format!("cli:{}", user_name(uid)));
}
