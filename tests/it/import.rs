//! The import folder end to end on real temp folders: what staff drop appears sanitized with a
//! Japanese report in the export folder, what cannot be made safe leaves only a report and goes
//! to the quarantine, nothing is taken before it settles, and a crash loses and duplicates
//! nothing.

use crate::support;
use mukaika_fixtures as generate;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A configuration for `data` with the given settle time (the default pair under `data`).
fn config_file(data: &Path, settle: u64, extra: &str) -> PathBuf {
    let text = support::config_text(data, "127.0.0.1:0")
        .replace("settle_secs = 5", &format!("settle_secs = {settle}"))
        .replace("rescan_secs = 30", "rescan_secs = 1")
        + extra;
    let path = data.join("mukaika.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn import_once(config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["import", "once", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A record-style UTC time (`2026-12-04T17:52:55.843Z`) anywhere in `text`.
fn has_utc_record_time(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b.get(i..i + 20).is_some_and(|w| {
            w[..4].iter().all(u8::is_ascii_digit)
                && w[4] == b'-'
                && w[10] == b'T'
                && w[13] == b':'
                && (w[19] == b'Z' || w[19] == b'.')
        })
    })
}

#[test]
fn reports_for_staff_say_why_in_plain_japanese_in_local_time() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let import = data.join("import");
    let export = data.join("export");
    put(&import.join("setup.exe"), b"MZ\x90\x00 synthetic program");
    // A program under a harmless name, and an archive posing as a PDF.
    put(&import.join("見積.txt"), b"MZ\x90\x00 synthetic program");
    put(&import.join("請求書.pdf"), &zip_bomb()[..]);
    put(
        &import.join("一覧.csv"),
        "名前,金額\r\n架空,=1+1\r\n".as_bytes(),
    );
    put(
        &import.join("見積書.docm"),
        &generate::docm_with_macro().build(),
    );
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let reports: Vec<String> = files_under(&export)
        .into_iter()
        .filter(|f| f.ends_with(".無害化レポート.txt"))
        .collect();
    assert_eq!(reports.len(), 5, "{reports:?}");
    for name in &reports {
        let text = std::fs::read_to_string(export.join(name)).unwrap();
        for jargon in [
            "is blocked by policy",
            "held by policy",
            "blocked-kind",
            "type-mismatch",
            "limit-exceeded",
            "{\"",
            "\"finding\"",
            "種類: pe",
            "(pe)",
            "extended-properties",
            "/_rels/",
            "word/vbaProject.bin",
        ] {
            assert!(!text.contains(jargon), "{jargon:?} in {name}:\n{text}");
        }
        assert!(
            !has_utc_record_time(&text),
            "a UTC record time in {name}:\n{text}"
        );
        assert!(text.contains(" (JST)\r\n"), "{name}:\n{text}");
    }
    let read = |n: &str| std::fs::read_to_string(export.join(n)).unwrap();
    let exe = read("setup.exe.無害化レポート.txt");
    assert!(exe.contains("判定: 削除\r\n"), "{exe}");
    assert!(
        exe.contains("理由: Windows の実行ファイル (プログラム) は、"),
        "{exe}"
    );
    assert!(exe.contains("隔離ID: I"), "{exe}");
    let disguised = read("見積.txt.無害化レポート.txt");
    assert!(
        disguised
            .contains("拡張子は「.txt」ですが、中身は Windows の実行ファイル (プログラム) でした"),
        "{disguised}"
    );
    let csv = read("一覧.csv.無害化レポート.txt");
    assert!(csv.contains("(2 行目 2 列目)"), "{csv}");

    // The CLI tells the same story: the verdict word, the plain reason, local time; the
    // record below it keeps the code, and its JSON is readable (no \u000a for newlines).
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = table
        .lines()
        .find(|l| l.contains("\tsetup.exe\t"))
        .and_then(|l| l.split('\t').nth(4))
        .unwrap_or_else(|| panic!("{table}"))
        .to_string();
    let shown = cli(&["quarantine", "show", &id]);
    for needle in [
        "判定: 削除\n",
        "理由: 実行ファイル・スクリプト等 [blocked-kind]\n",
        "説明: Windows の実行ファイル (プログラム) は、",
        " (JST)\n",
        "\"reason\": \"blocked-kind\"",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
    }
    assert!(!shown.contains("\\u000a"), "{shown}");
    let listed = cli(&["quarantine", "list"]);
    assert!(
        listed
            .contains("\t取り込みフォルダ\t実行ファイル・スクリプト等 [blocked-kind]\tsetup.exe\t"),
        "{listed}"
    );
}

#[test]
fn report_times_follow_the_configured_zone_and_an_unknown_zone_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let zone = |path: &Path, name: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.replace("timezone = \"Asia/Tokyo\"", &format!("timezone = {name:?}"));
        assert!(text.contains(name));
        std::fs::write(path, text).unwrap();
    };
    let config = config_file(&data, 0, "");
    zone(&config, "Europe/Berlin");
    put(&data.join("import/memo.txt"), b"memo\n");
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let text = std::fs::read_to_string(data.join("export/memo.txt.無害化レポート.txt")).unwrap();
    let processed = text
        .lines()
        .find_map(|l| l.strip_prefix("処理日時: "))
        .unwrap_or_default();
    assert!(
        processed.ends_with(" (CET)") || processed.ends_with(" (CEST)"),
        "{text}"
    );

    let bad = config_file(&root.path().join("bad"), 0, "");
    zone(&bad, "Asia/Tokio");
    let out = Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ui.timezone") && err.contains("Asia/Tokio"),
        "{err}"
    );
}

#[test]
fn dropped_files_come_out_sanitized_with_reports_and_the_rest_is_held() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let import = data.join("import");
    let export = data.join("export");
    put(
        &import.join("総務課/2026/見積書.docm"),
        &generate::docm_with_macro().build(),
    );
    put(&import.join("setup.exe"), b"MZ\x90\x00 synthetic program");
    // 16 MiB of zeros deflate to ~16 KB: past the compression-ratio limit.
    put(&import.join("zeros.zip"), &zip_bomb());
    put(
        &import.join("一覧.csv"),
        "名前,金額\r\n架空,=1+1\r\n".as_bytes(),
    );
    // macOS writes decomposed names: が as か + combining mark.
    put(&import.join("か\u{3099}いよう.txt"), b"summary\n");
    put(&import.join("CON.txt"), b"device name\n");
    put(
        &import.join("~$見積書.docm"),
        b"owner file of an open document",
    );
    put(&import.join("upload.part"), b"half a file");
    // A name clash: the export folder already holds memo.txt.
    put(&export.join("memo.txt"), b"an earlier result\n");
    put(&import.join("memo.txt"), b"new memo\n");

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("総務課/2026/見積書.docm\t無害化済み\t総務課/2026/見積書.docx"),
        "{table}"
    );

    let out = files_under(&export);
    for expected in [
        "総務課/2026/見積書.docx",
        "総務課/2026/見積書.docx.無害化レポート.txt",
        "setup.exe.無害化レポート.txt",
        "zeros.zip.無害化レポート.txt",
        "一覧.csv",
        "がいよう.txt",
        "memo.txt",
        "memo (2).txt",
    ] {
        assert!(
            out.iter().any(|f| f == expected),
            "{expected} missing from {out:?}"
        );
    }
    assert!(
        !out.iter().any(|f| f == "setup.exe" || f == "zeros.zip"),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|f| f.starts_with("名前を確認できないファイル-")),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read(export.join("memo.txt")).unwrap(),
        b"an earlier result\n",
        "an existing export is never overwritten"
    );
    assert_eq!(
        std::fs::read_to_string(export.join("一覧.csv")).unwrap(),
        "名前,金額\r\n架空,'=1+1\r\n"
    );
    let report =
        std::fs::read_to_string(export.join("総務課/2026/見積書.docx.無害化レポート.txt")).unwrap();
    for needle in [
        "判定: 無害化済み",
        "種類: マクロ付きの Word 文書 (.docm) → Word 文書 (.docx)",
        "入力 SHA-256:",
        "マクロ (VBA)",
    ] {
        assert!(report.contains(needle), "{needle} missing:\n{report}");
    }
    // Staff read the text report: its time is Japan time, and says so.
    let processed = report
        .lines()
        .find_map(|l| l.strip_prefix("処理日時: "))
        .unwrap_or_default();
    assert!(
        processed.len() == 25
            && processed.get(10..11) == Some(" ")
            && processed.ends_with(" (JST)"),
        "{report}"
    );
    let exe = std::fs::read_to_string(export.join("setup.exe.無害化レポート.txt")).unwrap();
    assert!(
        exe.contains("判定: 削除") && exe.contains("隔離ID: "),
        "{exe}"
    );

    // Taken files are gone from the import folder; copy tools' temporary files wait.
    assert_eq!(files_under(&import), vec!["upload.part", "~$見積書.docm"]);
    // The originals that were not delivered are in the quarantine.
    let held = support::quarantined(&data, 3);
    assert_eq!(held.len(), 3, "exe, bomb and the device name: {held:?}");
    let kinds = support::audit_kinds(&data);
    for k in ["file_imported", "file_exported", "quarantined"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not audited: {kinds:?}");
    }
    let report = mukaika::audit::verify(&data.join("audit"), None, None).unwrap();
    assert!(report.intact());

    // The copy finishes and renames its file into place: the next pass takes it.
    std::fs::rename(import.join("upload.part"), import.join("upload.txt")).unwrap();
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert!(export.join("upload.txt").exists(), "{table}");
    assert!(!import.join("upload.txt").exists());
}

fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("zeros.bin", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&vec![0u8; 16 << 20]).unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn nothing_is_taken_before_it_settles() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 3600, "");
    put(&data.join("import/new.txt"), b"just written\n");
    let (code, table) = import_once(&config);
    assert_eq!(code, 0);
    assert!(table.contains("待機中 1 件"), "{table}");
    assert!(data.join("import/new.txt").exists());
    assert!(files_under(&data.join("export")).is_empty());
}

#[test]
fn an_unwritable_export_folder_leaves_the_file_in_place_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    put(&data.join("import/a.txt"), b"hello\n");
    // The export "folder" is a file: nothing can be written there.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("export"), b"not a folder").unwrap();
    let (code, table) = import_once(&config);
    assert_ne!(code, 0, "{table}");
    assert!(table.contains("エラー"), "{table}");
    assert!(data.join("import/a.txt").exists(), "the original stays");
    let kinds = support::audit_kinds(&data);
    assert!(kinds.iter().any(|k| k == "import_failed"), "{kinds:?}");
}

#[test]
fn exports_get_the_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("# mode = \"0640\"", "mode = \"0640\"");
    std::fs::write(&config, text).unwrap();
    put(&data.join("import/課/a.txt"), b"hello\n");
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&data.join("export/課/a.txt")), 0o640);
    assert_eq!(
        mode(&data.join("export/課/a.txt.無害化レポート.txt")),
        0o640
    );
    assert_eq!(mode(&data.join("export/課")), 0o750);
}

/// A ledger entry of the pair `default` for `source`, with its (temporary, final) renames.
fn ledger_entry(source: &Path, renames: &[(&Path, PathBuf)]) -> Vec<u8> {
    serde_json::json!({
        "pair": "default",
        "source": source,
        "renames": renames,
        "archive_to": null,
    })
    .to_string()
    .into_bytes()
}

/// A data directory with `import/報告.txt` waiting: (its root, data, config, the file).
fn one_report_to_import() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let source = data.join("import/報告.txt");
    put(&source, b"report body\n");
    (root, data, config, source)
}

#[test]
fn a_crash_between_ledger_and_rename_is_completed_without_a_duplicate() {
    let (_root, data, config, source) = one_report_to_import();
    // The state a crash leaves after the ledger was written and before the renames.
    let export = data.join("export");
    let tmp = export.join(".I1-1-0.0.tmp");
    let tmp_report = export.join(".I1-1-0.1.tmp");
    put(&tmp, b"report body\n");
    put(&tmp_report, "\u{FEFF}無害化レポート\r\n".as_bytes());
    put(
        &data.join("import-state/ledger/I1-1-0.json"),
        &ledger_entry(
            &source,
            &[
                (&tmp, export.join("報告.txt")),
                (&tmp_report, export.join("報告.txt.無害化レポート.txt")),
            ],
        ),
    );
    // And a stray temporary from a crash before any ledger.
    put(&export.join(".I2-1-0.0.tmp"), b"partial");

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert_eq!(
        files_under(&export),
        vec!["報告.txt", "報告.txt.無害化レポート.txt"],
        "completed once, no second copy, no leftovers"
    );
    assert!(!source.exists());
    assert!(files_under(&data.join("import-state/ledger")).is_empty());
}

#[test]
fn a_ledger_entry_whose_exports_are_gone_keeps_the_original_and_exports_it_again() {
    let (_root, data, config, source) = one_report_to_import();
    // An entry whose export is neither renamed nor still under its temporary name (removed
    // by hand, or by a tool cleaning the export folder): completing it would remove the
    // original with nothing exported.
    let export = data.join("export");
    std::fs::create_dir_all(&export).unwrap();
    put(
        &data.join("import-state/ledger/I1-1-0.json"),
        &ledger_entry(
            &source,
            &[(&export.join(".I1-1-0.0.tmp"), export.join("報告.txt"))],
        ),
    );

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert_eq!(
        files_under(&export),
        vec!["報告.txt", "報告.txt.無害化レポート.txt"],
        "processed again from the start: {table}"
    );
    assert_eq!(
        std::fs::read(export.join("報告.txt")).unwrap(),
        b"report body\n"
    );
    assert!(!source.exists());
    assert!(files_under(&data.join("import-state/ledger")).is_empty());
    let kinds = support::audit_kinds(&data);
    assert!(kinds.iter().any(|k| k == "import_failed"), "{kinds:?}");
}

#[test]
fn a_ledger_entry_with_one_export_gone_keeps_what_is_in_place_and_exports_the_original_again() {
    let (_root, data, config, source) = one_report_to_import();
    // The output was renamed into place (and may have been read on the LGWAN side already);
    // the report is gone under both names.
    let export = data.join("export");
    put(&export.join("報告.txt"), b"report body\n");
    put(
        &data.join("import-state/ledger/I1-1-0.json"),
        &ledger_entry(
            &source,
            &[
                (&export.join(".I1-1-0.0.tmp"), export.join("報告.txt")),
                (
                    &export.join(".I1-1-0.1.tmp"),
                    export.join("報告.txt.無害化レポート.txt"),
                ),
            ],
        ),
    );

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    // Nothing removed from the export folder, the original not retired before its results
    // were all there: a visible second copy at worst, never a lost file or report.
    assert_eq!(
        files_under(&export),
        vec![
            "報告 (2).txt",
            "報告 (2).txt.無害化レポート.txt",
            "報告.txt"
        ],
        "{table}"
    );
    assert_eq!(
        std::fs::read(export.join("報告 (2).txt")).unwrap(),
        b"report body\n"
    );
    assert!(!source.exists());
}

#[test]
fn a_ledger_entry_a_crash_cut_off_before_its_rename_is_discarded_and_the_file_taken_again() {
    let (_root, data, config, source) = one_report_to_import();
    // A crash inside the ledger's durable write: the entry is whole under its temporary name,
    // never renamed, so it was never committed and its exports must not appear.
    let export = data.join("export");
    let tmp = export.join(".I1.7.0.0123456789ab.tmp");
    put(&tmp, b"stale body\n");
    let cut_off = data.join("import-state/ledger/.mukaika.7.0.0123456789ab.tmp");
    put(
        &cut_off,
        &ledger_entry(&source, &[(&tmp, export.join("報告.txt"))]),
    );

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert_eq!(
        files_under(&export),
        vec!["報告.txt", "報告.txt.無害化レポート.txt"]
    );
    assert_eq!(
        std::fs::read(export.join("報告.txt")).unwrap(),
        b"report body\n",
        "exported from the original, not from the uncommitted entry"
    );
    assert!(!cut_off.exists());
    assert!(files_under(&data.join("import-state/ledger")).is_empty());
}

#[test]
fn the_daemon_waits_for_a_slow_writer_and_survives_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 1, "");
    let serve = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = serve(&config);
    let import = data.join("import");
    let export = data.join("export");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !import.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A slow writer: half now, the rest after less than the settle time.
    let slow = import.join("slow.csv");
    put(&slow, b"a,b\r\n");
    std::thread::sleep(Duration::from_millis(400));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&slow)
            .unwrap();
        f.write_all(b"c,=2+2\r\n").unwrap();
    }
    // Many files, then SIGKILL while they are being taken.
    for i in 0..40 {
        put(
            &import.join(format!("file-{i:02}.txt")),
            format!("body {i}\n").as_bytes(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&export).len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();

    // Restart and let it finish.
    let mut child = serve(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files_under(&import).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();

    assert!(
        files_under(&import).is_empty(),
        "{:?}",
        files_under(&import)
    );
    let out = files_under(&export);
    for i in 0..40 {
        let name = format!("file-{i:02}.txt");
        assert!(out.contains(&name), "{name} lost: {out:?}");
    }
    assert!(
        !out.iter().any(|f| f.contains(" (2)") || f.starts_with('.')),
        "duplicates or leftovers: {out:?}"
    );
    assert_eq!(
        std::fs::read(export.join("slow.csv")).unwrap(),
        b"a,b\r\nc,'=2+2\r\n",
        "the slow file was taken whole"
    );
}

/// Issue #20 (classes 1 and 8) through the import folder: Windows shell files and Office XML
/// never reach the export folder (only their reports do); XHTML comes out as text.
#[test]
fn shell_files_and_office_xml_never_reach_the_export_folder() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let import = data.join("import/課");
    let mut desktop_ini = vec![0xFF, 0xFE];
    for unit in "[.ShellClassInfo]\r\nIconResource=\\\\198.51.100.7\\s\\f.ico,0\r\n".encode_utf16()
    {
        desktop_ini.extend_from_slice(&unit.to_le_bytes());
    }
    put(&import.join("desktop.ini"), &desktop_ini);
    put(
        &import.join("share.searchConnector-ms"),
        b"<?xml version=\"1.0\"?><searchConnectorDescription \
          xmlns=\"http://schemas.microsoft.com/windows/2009/searchConnector\"/>",
    );
    put(
        &import.join("notes.txt"),
        b"[InternetShortcut]\r\nURL=file://198.51.100.7/s/x.exe\r\n",
    );
    put(
        &import.join("文書.xml"),
        b"<w:wordDocument xmlns:w=\"http://schemas.microsoft.com/office/word/2003/wordml\">\
          <w:body/></w:wordDocument>",
    );
    put(
        &import.join("page.xml"),
        b"<h:html xmlns:h=\"http://www.w3.org/1999/xhtml\"><h:body><h:p>hello</h:p>\
          <h:script>alert(1)</h:script></h:body></h:html>",
    );
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let out = files_under(&data.join("export"));
    for gone in [
        "課/desktop.ini",
        "課/share.searchConnector-ms",
        "課/notes.txt",
        "課/文書.xml",
    ] {
        assert!(!out.iter().any(|f| f == gone), "{gone} delivered: {out:?}");
        assert!(
            out.iter()
                .any(|f| f == &format!("{gone}.無害化レポート.txt")),
            "{gone} has no report: {out:?}"
        );
    }
    assert!(!out.iter().any(|f| f == "課/page.xml"), "{out:?}");
    let page = std::fs::read_to_string(data.join("export/課/page.txt")).unwrap();
    assert!(page.contains("hello") && !page.contains("<h:"), "{page}");
}

/// Issue #16 H: a SIGKILL during an import pass left one held file quarantined twice, one copy
/// without an audit record. Killed again and again mid-pass, each held file ends up in the
/// quarantine once, with its `quarantined` record, and nothing is lost.
#[test]
fn import_killed_mid_pass_quarantines_each_file_once_with_its_audit_record() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    // Batches of held and passing files; a new batch whenever the folder is empty before
    // enough kills have landed mid-pass (how far a pass gets depends on the machine's load).
    const BATCH: usize = 40;
    let mut held = 0;
    let add_batch = |held: &mut usize| {
        for n in *held..*held + BATCH {
            put(
                &data.join(format!("import/prog-{n:03}.exe")),
                format!("MZ\x00\x00 synthetic program {n}").as_bytes(),
            );
            put(
                &data.join(format!("import/memo-{n:03}.txt")),
                format!("memo {n}\n").as_bytes(),
            );
        }
        *held += BATCH;
    };
    add_batch(&mut held);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    let mut passes = 0;
    loop {
        if files_under(&data.join("import")).is_empty() {
            if kills >= 20 {
                break;
            }
            add_batch(&mut held);
        }
        passes += 1;
        assert!(passes < 300, "the import never finished");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(["import", "once", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if kills < 20 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(Duration::from_millis(30 + rng % 200));
            if child.try_wait().unwrap().is_none() {
                kills += 1;
            }
            let _ = child.kill(); // SIGKILL
        }
        let _ = child.wait();
    }
    assert!(kills >= 20, "only {kills} kills landed mid-pass");
    let items = support::quarantined(&data, held);
    let mut per_file: std::collections::HashMap<&str, usize> = Default::default();
    for item in &items {
        *per_file.entry(item.origin_id.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = per_file.iter().filter(|(_, n)| **n > 1).collect();
    let records = mukaika::audit::search(&data.join("audit"), &Default::default()).unwrap();
    let audited: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r.event["type"] == "quarantined")
        .filter_map(|r| r.event["item_id"].as_str())
        .collect();
    let unaudited: Vec<_> = items
        .iter()
        .filter(|i| !audited.contains(i.id.as_str()))
        .map(|i| (&i.id, &i.origin_id))
        .collect();
    println!(
        "issue16-H: {kills} kills over {passes} passes; {} quarantined items for {held} files, {} held twice, {} without a record",
        items.len(),
        twice.len(),
        unaudited.len()
    );
    assert!(twice.is_empty(), "quarantined more than once: {twice:?}");
    assert_eq!(per_file.len(), held, "every held file is in the quarantine");
    assert!(unaudited.is_empty(), "no audit record: {unaudited:?}");
    let exported = files_under(&data.join("export"));
    for n in 0..held {
        let memo = format!("memo-{n:03}.txt");
        assert_eq!(
            exported.iter().filter(|f| **f == memo).count(),
            1,
            "{memo} exported once: {exported:?}"
        );
    }
    let audit = mukaika::audit::verify(&data.join("audit"), None, None).unwrap();
    assert!(audit.intact(), "{:?}", audit.problem);
}

#[test]
fn a_long_japanese_name_gets_an_export_and_report_that_fit_and_is_taken_once() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let import = data.join("import");
    let export = data.join("export");
    // 253 bytes: near the 255 a Linux file system holds (a 300-byte name cannot even be
    // created here), so `.無害化レポート.txt` (26 bytes) cannot simply be appended.
    let name = format!("{}.csv", "議事録".repeat(83 / 3) + "議事");
    assert_eq!(name.len(), 253);
    put(&import.join(&name), "名前,金額\r\n架空,=1+1\r\n".as_bytes());

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let report = format!("{}.csv.無害化レポート.txt", "議事録".repeat(25));
    assert!(report.len() <= 255);
    assert_eq!(files_under(&export), {
        let mut v = vec![name.clone(), report.clone()];
        v.sort();
        v
    });
    assert_eq!(
        std::fs::read_to_string(export.join(&name)).unwrap(),
        "名前,金額\r\n架空,'=1+1\r\n"
    );
    assert!(std::fs::read_to_string(export.join(&report))
        .unwrap()
        .contains(&format!("出力: {name}")));
    assert!(files_under(&import).is_empty(), "the original is taken");

    // A rescan finds nothing more to do, and no temporary or ledger file is left anywhere.
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert_eq!(files_under(&export).len(), 2);
    let everything = files_under(&data);
    assert!(
        !everything
            .iter()
            .any(|f| f.ends_with(".tmp") || f.contains("ledger/")),
        "{everything:?}"
    );
}

#[test]
fn a_long_name_that_clashes_gets_a_numbered_name_that_fits() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let import = data.join("import");
    let export = data.join("export");
    let name = format!("{}.txt", "議事録".repeat(83 / 3) + "議事");
    put(&export.join(&name), b"an earlier result\n");
    put(&import.join(&name), "本文\r\n".as_bytes());

    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    // The stem gives way to " (2)"; the extension stays.
    let numbered = format!("{} (2).txt", "議事録".repeat(82 / 3) + "議");
    assert!(numbered.len() <= 255);
    let out = files_under(&export);
    assert!(out.contains(&numbered), "{out:?}");
    assert_eq!(
        std::fs::read(export.join(&name)).unwrap(),
        b"an earlier result\n"
    );
    assert_eq!(
        std::fs::read_to_string(export.join(&numbered)).unwrap(),
        "本文\r\n"
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out.iter().all(|f| f.len() <= 255 && f.ends_with(".txt")));
    assert!(files_under(&import).is_empty());
}

/// An importer run in this process (settle time 0) whose test hook is `hook`.
fn hooked_importer(
    data: &Path,
    hook: impl Fn(mukaika::source::import::HookPoint, &Path) + Send + Sync + 'static,
) -> (
    mukaika::source::import::Importer,
    mukaika::config::ServiceConfig,
) {
    let text =
        support::config_text(data, "127.0.0.1:0").replace("settle_secs = 5", "settle_secs = 0");
    let config = mukaika::config::ServiceConfig::from_toml(&text).unwrap();
    std::fs::create_dir_all(data).unwrap();
    let audit = std::sync::Arc::new(mukaika::store::open_audit(&config).unwrap());
    let quarantine =
        mukaika::store::quarantine::open(data.join("quarantine"), config.quarantine.store).unwrap();
    let registry = std::sync::Arc::new(mukaika::service::registry(&config, None));
    let importer = mukaika::source::import::Importer::new(
        config.import.clone(),
        &config.data.dir,
        registry,
        audit,
        quarantine,
    )
    .with_hook(hook);
    assert!(importer.create_folders().is_empty());
    (importer, config)
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_subfolder_swapped_for_a_link_outside_after_listing_exports_and_deletes_nothing_outside() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let outside = root.path().join("outside");
    put(&outside.join("secret.txt"), b"outside secret\n");
    std::fs::set_permissions(
        outside.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let import = data.join("import");
    let swapped = AtomicBool::new(false);
    let (dept, moved, target) = (import.join("課"), import.join("課.old"), outside.clone());
    let (importer, config) = hooked_importer(&data, move |point, path| {
        if point == mukaika::source::import::HookPoint::BeforeOpen
            && path.ends_with("課/secret.txt")
            && !swapped.swap(true, Ordering::SeqCst)
        {
            std::fs::rename(&dept, &moved).unwrap();
            std::os::unix::fs::symlink(&target, &dept).unwrap();
        }
    });
    put(&import.join("課/secret.txt"), b"inside, listed\n");

    let summary = importer.pass(&config.policy, false);

    assert!(summary.processed.is_empty(), "{:?}", summary.processed);
    assert_eq!(summary.skipped.len(), 1, "{:?}", summary.skipped);
    let exported = files_under(&data.join("export"));
    assert!(
        exported.is_empty(),
        "nothing from outside is exported: {exported:?}"
    );
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"outside secret\n",
        "the outside original is not deleted"
    );
    assert!(data.join("import/課.old/secret.txt").exists());
}

#[test]
fn a_fifo_put_in_place_of_a_listed_file_does_not_hang_the_pass() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let swapped = AtomicBool::new(false);
    let (importer, config) = hooked_importer(&data, move |point, path| {
        if point == mukaika::source::import::HookPoint::BeforeOpen
            && !swapped.swap(true, Ordering::SeqCst)
        {
            std::fs::remove_file(path).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        }
    });
    put(&data.join("import/a.txt"), b"listed as a file\n");

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let summary = importer.pass(&config.policy, false);
        let _ = tx.send((summary.processed.len(), summary.skipped.len()));
    });
    let (processed, skipped) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the pass returns although a FIFO took the file's place");
    assert_eq!((processed, skipped), (0, 1));
    assert!(files_under(&data.join("export")).is_empty());
}

#[test]
fn a_hard_linked_file_is_skipped_and_its_other_name_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (importer, config) = hooked_importer(&data, |_, _| {});
    let outside = root.path().join("outside/private.txt");
    put(&outside, b"private notes\n");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&outside, data.join("import/private.txt")).unwrap();

    let summary = importer.pass(&config.policy, false);

    assert!(summary.processed.is_empty(), "{:?}", summary.processed);
    assert_eq!(summary.skipped.len(), 1);
    assert!(
        summary.skipped[0].error.contains("hard link"),
        "{:?}",
        summary.skipped
    );
    assert!(files_under(&data.join("export")).is_empty());
    assert_eq!(std::fs::read(&outside).unwrap(), b"private notes\n");
    assert_eq!(mode_of(&outside), 0o600);
    assert!(data.join("import/private.txt").exists(), "left untouched");
    let again = importer.pass(&config.policy, false);
    assert_eq!(again.skipped.len(), 1, "still not taken");
    let refusals = support::audit_kinds(&data)
        .iter()
        .filter(|k| *k == "import_failed")
        .count();
    assert_eq!(refusals, 1, "audited once, not on every pass");
}

#[test]
fn a_file_put_in_place_of_the_original_before_removal_is_kept_for_the_next_pass() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let replaced = AtomicBool::new(false);
    let (importer, config) = hooked_importer(&data, move |point, path| {
        if point == mukaika::source::import::HookPoint::BeforeRetire
            && !replaced.swap(true, Ordering::SeqCst)
        {
            let newer = path.with_file_name("newer.part");
            std::fs::write(&newer, b"second version\n").unwrap();
            std::fs::rename(&newer, path).unwrap();
        }
    });
    put(&data.join("import/memo.txt"), b"first version\n");

    let summary = importer.pass(&config.policy, false);

    assert_eq!(summary.processed.len(), 1, "{:?}", summary.failed);
    assert_eq!(
        std::fs::read(data.join("import/memo.txt")).unwrap(),
        b"second version\n",
        "the file put there after reading is not deleted"
    );
    assert_eq!(
        std::fs::read(data.join("export/memo.txt")).unwrap(),
        b"first version\n"
    );
}

#[test]
fn processed_originals_are_archived_not_deleted_when_configured() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("archive_processed = false", "archive_processed = true");
    std::fs::write(&config, text).unwrap();
    put(&data.join("import/課/memo.txt"), b"keep me\n");
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    assert!(!data.join("import/課/memo.txt").exists());
    assert_eq!(
        std::fs::read(data.join("import-state/processed/default/課/memo.txt")).unwrap(),
        b"keep me\n"
    );
    assert_eq!(
        std::fs::read(data.join("export/課/memo.txt")).unwrap(),
        b"keep me\n"
    );
}

/// Issue #22 item 6: a folder whose name carries a bidi override (`資料\u{202e}txt.exe`) is not
/// mirrored into the export side, where Explorer would show it reversed; the file in it is held
/// with a reason, and a plain neighbour is exported as usual.
#[test]
fn a_folder_named_with_a_bidi_override_is_not_mirrored_into_the_export() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    put(
        &data.join("import/資料\u{202e}txt.exe/memo.txt"),
        "架空のメモ\r\n".as_bytes(),
    );
    put(&data.join("import/plain.txt"), "本文\r\n".as_bytes());
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let out = files_under(&data.join("export"));
    assert!(out.iter().any(|f| f == "plain.txt"), "{out:?}");
    assert!(
        !out.iter().any(|f| f.contains('\u{202e}')),
        "a bidi override reached the export side: {out:?}"
    );
    assert!(
        !out.iter().any(|f| f.ends_with("memo.txt")),
        "the file under the disguised folder was exported: {out:?}"
    );
}

/// `import once` names the files it refused to touch (a hard link here) in its table, so the
/// operator running the pass sees why a file stays in the import folder.
#[test]
fn import_once_lists_the_files_it_refused_to_touch() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = config_file(&data, 0, "");
    let outside = root.path().join("outside/private.txt");
    put(&outside, b"private notes\n");
    std::fs::create_dir_all(data.join("import")).unwrap();
    std::fs::hard_link(&outside, data.join("import/private.txt")).unwrap();
    let (code, table) = import_once(&config);
    assert_eq!(code, 0, "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("private.txt"))
        .unwrap_or_else(|| panic!("no row for the refused file: {table}"));
    assert!(row.contains("対象外"), "{row}");
    assert!(table.contains("対象外 1 件"), "{table}");
}
