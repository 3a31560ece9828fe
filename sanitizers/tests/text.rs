//! Plain text, CSV and HTML files: validated text passes byte for byte, formula cells are
//! neutralised in the file's own encoding, HTML becomes text, and names Windows would run are
//! blocked whatever the content.

mod common;

use common::*;
use encoding_rs::SHIFT_JIS;
use mukaika_sanitizers::{FileKind, Policy, Registry, Verdict, What};

#[test]
fn cp932_text_with_machine_dependent_characters_passes_unchanged() {
    let text = "令和６年度　①②③ ㈱ 髙橋 ﾊﾝｶｸ\r\nⅰⅱⅲ 纊褜鍈\r\n";
    let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
    assert!(!unmappable);
    let outcome = process(&bytes, "お知らせ.txt");
    assert_eq!(outcome.report.verdict, Verdict::Passed);
    assert_eq!(outcome.output().unwrap().bytes(), &bytes[..]);
    assert!(outcome.report.warnings.iter().any(|w| w.contains("CP932")));
}

#[test]
fn undecodable_text_is_quarantined_not_passed() {
    // A lone CP932 lead byte at the end, and a UTF-8 sequence cut in half in the middle.
    for bytes in [&b"abc\x82"[..], &b"abc\xE3\x81 def\xFF\xFE\xFD"[..]] {
        let outcome = process(bytes, "memo.txt");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined);
        assert_eq!(outcome.report.reason.unwrap().code, "malformed");
    }
    let outcome = process(b"hello\x1b]0;title\x07 world", "memo.txt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
}

#[test]
fn csv_formula_cells_are_neutralised_and_dde_reported() {
    let csv = "氏名,金額,備考\r\n山田,=1+1,\"=cmd|' /C calc'!A0\"\r\n鈴木,-500,@SUM(A1)\r\n";
    let (bytes, _, _) = SHIFT_JIS.encode(csv);
    let outcome = process(&bytes, "一覧.csv");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert!(removed(&outcome, What::Dde, "row 2, column 3"));
    assert!(removed(&outcome, What::Formula, "row 2, column 2"));
    assert!(removed(&outcome, What::Formula, "row 3, column 3"));
    assert_eq!(
        outcome.report.removed.len(),
        3,
        "-500 is a number, not a formula"
    );
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Csv);
    assert_eq!(out.name(), "一覧.csv");
    let (decoded, _, errors) = SHIFT_JIS.decode(out.bytes());
    assert!(!errors);
    assert_eq!(
        decoded,
        "氏名,金額,備考\r\n山田,'=1+1,\"'=cmd|' /C calc'!A0\"\r\n鈴木,-500,'@SUM(A1)\r\n"
    );
    // The output re-opens clean: a second run changes nothing.
    let again = process(out.bytes(), "一覧.csv");
    assert_eq!(again.report.verdict, Verdict::Sanitized);
    assert!(again.report.removed.is_empty());
    assert_eq!(again.output().unwrap().bytes(), out.bytes());
}

#[test]
fn utf16_csv_is_rewritten_in_utf16() {
    // encoding_rs only decodes UTF-16 (WHATWG), so build the units by hand.
    let mut bytes16 = vec![0xFF, 0xFE];
    for unit in "a\t=HYPERLINK(\"x\")\n".encode_utf16() {
        bytes16.extend_from_slice(&unit.to_le_bytes());
    }
    let outcome = process(&bytes16, "list.tsv");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let out = outcome.output().unwrap().bytes();
    let units: Vec<u16> = out[2..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&units).unwrap(),
        "a\t'=HYPERLINK(\"x\")\n"
    );
}

#[test]
fn csv_with_formulas_is_held_when_neutralising_is_off() {
    let policy = Policy {
        csv_neutralize_formulas: false,
        ..Policy::default()
    };
    let outcome = process_with(b"a,=1+1\n", "x.csv", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    let clean = process_with(b"a,b\n1,2\n", "x.csv", &policy);
    assert_eq!(clean.report.verdict, Verdict::Sanitized);
}

#[test]
fn text_and_csv_can_be_set_to_pass_but_archives_cannot() {
    let registry = Registry::standard();
    let pass = Policy::from_toml("[actions]\ncsv = \"pass\"\ntext = \"pass\"\n").unwrap();
    registry.check_policy(&pass).unwrap();
    let outcome = process_with(b"a,=1+1\n", "x.csv", &pass);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Quarantined,
        "a CSV with a formula cell is not inert"
    );
    let outcome = process_with(b"a,b\n", "x.csv", &pass);
    assert_eq!(outcome.report.verdict, Verdict::Passed);
    let bad = Policy::from_toml("[actions]\nzip = \"pass\"\n").unwrap();
    assert!(registry
        .check_policy(&bad)
        .unwrap_err()
        .to_string()
        .contains("validator"));
}

#[test]
fn html_files_become_text_with_defanged_links() {
    let html = "<!DOCTYPE html><html><head><script>fetch('https://evil.example/x')</script>\
        </head><body><h1>お知らせ</h1><p>詳細は<a href=\"https://www.example.jp/info\">こちら</a></p>\
        <iframe src=\"https://evil.example/\"></iframe></body></html>";
    let outcome = process(html.as_bytes(), "案内.html");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::Javascript, "script"));
    assert!(removed(&outcome, What::ExternalReference, "frame"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Text);
    assert_eq!(out.name(), "案内.txt");
    let text = std::str::from_utf8(&out.bytes()[3..]).unwrap();
    assert!(text.contains("お知らせ"));
    assert!(
        text.contains("こちら <hxxps://www[.]example[.]jp/info>"),
        "{text}"
    );
    assert!(!text.contains("fetch("));
    assert!(!text.contains("<iframe") && !text.contains("<script") && !text.contains("<p>"));

    let mut quarantine = Policy::default();
    quarantine
        .actions
        .insert("html".into(), mukaika_sanitizers::Action::Quarantine);
    let held = process_with(html.as_bytes(), "案内.html", &quarantine);
    assert_eq!(held.report.verdict, Verdict::Quarantined);
}

#[test]
fn names_windows_would_run_are_blocked_whatever_the_content() {
    for name in [
        "readme.url",
        "請求書.pdf.exe",
        "invoice\u{202E}fdp.scr",
        "web.iqy",
        "macro.slk",
        "setup.msi",
        "disk.vhdx",
    ] {
        let outcome = process(b"just some harmless text\n", name);
        assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
        assert_eq!(
            outcome.report.reason.unwrap().code,
            "blocked-name",
            "{name}"
        );
    }
    let policy = Policy {
        blocked_extensions: vec!["txt".into()],
        ..Policy::default()
    };
    let outcome = process_with(b"hello\n", "a.txt", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Blocked);
}

#[test]
fn sylk_spreadsheets_are_not_text() {
    let sylk = b"ID;P\r\nC;X1;Y1;EEXEC(\"calc.exe\")\r\nE\r\n";
    let outcome = process(sylk, "data.txt");
    assert_eq!(outcome.report.detected_type, FileKind::Sylk);
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
}

#[test]
fn onenote_chm_and_disk_images_are_blocked_by_content() {
    let mut onenote = vec![
        0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D, 0xAE, 0xB1, 0x53, 0x78, 0xD0, 0x29, 0x96,
        0xD3,
    ];
    onenote.extend_from_slice(&[0; 64]);
    let mut fixed_vhd = vec![0u8; 4096];
    fixed_vhd.extend_from_slice(b"conectix");
    fixed_vhd.resize(4096 + 512, 0);
    let mut dmg = vec![0u8; 2048];
    dmg.extend_from_slice(b"koly");
    dmg.resize(2048 + 512, 0);
    for (bytes, kind, name) in [
        (onenote, FileKind::OneNote, "議事録.pdf"),
        (
            b"ITSF\x03\x00\x00\x00`\x00\x00\x00".to_vec(),
            FileKind::Chm,
            "help.txt",
        ),
        (fixed_vhd, FileKind::Vhd, "backup.dat"),
        (b"vhdxfile synthetic".to_vec(), FileKind::Vhd, "disk.bin"),
        (dmg, FileKind::Dmg, "installer.dat"),
    ] {
        let outcome = process(&bytes, name);
        assert_eq!(outcome.report.detected_type, kind, "{name}");
        assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
    }
}

#[test]
fn japanese_office_formats_without_an_open_cdr_are_held() {
    // 一太郎 documents are compound files mukaika cannot rebuild.
    let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    std::io::Write::write_all(
        &mut file.create_stream("/DocumentText").unwrap(),
        b"synthetic",
    )
    .unwrap();
    let bytes = file.into_inner().into_inner();
    let outcome = process(&bytes, "報告書.jtd");
    assert_eq!(outcome.report.detected_type, FileKind::OleOther);
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
}
