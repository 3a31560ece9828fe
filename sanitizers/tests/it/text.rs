//! Plain text, CSV and HTML files: validated text passes byte for byte, formula cells are
//! neutralised in the file's own encoding, HTML becomes text, and names Windows would run are
//! blocked whatever the content.

use crate::common;
use crate::csv_oracle;

use common::*;
use encoding_rs::SHIFT_JIS;
use mukaika_sanitizers::{FileKind, Policy, Registry, Verdict, What};
use proptest::prelude::*;

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

/// The encodings the CSV tests below write their files in.
#[derive(Debug, Clone, Copy)]
enum Enc {
    Utf8,
    Cp932,
    Utf16Le,
}

fn encode(text: &str, enc: Enc) -> Vec<u8> {
    match enc {
        Enc::Utf8 => text.as_bytes().to_vec(),
        Enc::Cp932 => {
            let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
            assert!(!unmappable, "{text:?} is not CP932");
            bytes.into_owned()
        }
        // encoding_rs only decodes UTF-16 (WHATWG), so build the units by hand.
        Enc::Utf16Le => std::iter::once(0xFEFF)
            .chain(text.encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect(),
    }
}

fn decode_as(bytes: &[u8], enc: Enc) -> String {
    match enc {
        Enc::Utf8 => String::from_utf8(bytes.to_vec()).unwrap(),
        Enc::Cp932 => {
            let (text, _, errors) = SHIFT_JIS.decode(bytes);
            assert!(!errors);
            text.into_owned()
        }
        Enc::Utf16Le => {
            assert_eq!(&bytes[..2], b"\xFF\xFE");
            let units: Vec<u16> = bytes[2..]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).unwrap()
        }
    }
}

/// The output re-opens clean: a second pass removes nothing and changes no byte.
fn assert_idempotent(out: &[u8], name: &str) {
    let again = process(out, name);
    assert_eq!(again.report.verdict, Verdict::Sanitized, "{name}");
    assert!(
        again.report.removed.is_empty(),
        "second pass removed {:?}",
        again.report.removed
    );
    assert_eq!(again.output().unwrap().bytes(), out);
}

/// Sanitizes `csv` written in `enc` and checks the output reads exactly `expected` (so every
/// character that is not an inserted `'` is as it was), that no reader's split finds a formula
/// in it, and that it is idempotent.
fn assert_neutralised(csv: &str, enc: Enc, expected: &str) -> mukaika_sanitizers::Outcome {
    let name = "一覧.csv";
    let outcome = process(&encode(csv, enc), name);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap().bytes().to_vec();
    assert_eq!(decode_as(&out, enc), expected);
    assert_eq!(
        csv_oracle::formula_cells(expected),
        Vec::<(char, String)>::new()
    );
    assert_eq!(
        outcome.report.removed.len(),
        expected.matches('\'').count() - csv.matches('\'').count()
    );
    assert_idempotent(&out, name);
    outcome
}

#[test]
fn sep_directive_on_the_first_line_sets_the_split() {
    let outcome = assert_neutralised(
        "sep=;\r\n氏名;備考\r\n山田;=cmd|' /C calc'!A0\r\n",
        Enc::Cp932,
        "sep=;\r\n氏名;備考\r\n山田;'=cmd|' /C calc'!A0\r\n",
    );
    assert!(removed(&outcome, What::Dde, "row 3, column 2"));
}

#[test]
fn a_delimiter_that_changes_after_line_one_is_still_split() {
    assert_neutralised(
        "氏名\t備考\r\n山田,=1+1\r\n鈴木;+A1\r\n",
        Enc::Utf8,
        "氏名\t備考\r\n山田,'=1+1\r\n鈴木;'+A1\r\n",
    );
}

#[test]
fn utf16_csv_is_split_on_tabs_even_when_line_one_has_a_comma() {
    assert_neutralised(
        "\"氏名, 役職\"\t金額\r\n山田\t=HYPERLINK(\"http://evil.example/\")\r\n",
        Enc::Utf16Le,
        "\"氏名, 役職\"\t金額\r\n山田\t'=HYPERLINK(\"http://evil.example/\")\r\n",
    );
}

#[test]
fn quoted_padded_and_fullwidth_triggers_are_neutralised() {
    assert_neutralised(
        "a,\"=1+1\",  =1+1,\t-A1,\" @SUM(A1)\"\r\n＝1+1,＋A1,－A1,＠SUM(A1),\u{3000}=1+1\r\n",
        Enc::Cp932,
        "a,\"'=1+1\",  '=1+1,\t'-A1,\" '@SUM(A1)\"\r\n'＝1+1,'＋A1,'－A1,'＠SUM(A1),\u{3000}'=1+1\r\n",
    );
}

#[test]
fn a_formula_only_under_a_semicolon_split_is_neutralised() {
    let outcome = assert_neutralised(
        "氏名,備考\r\n山田,メモ;=HYPERLINK(\"http://evil.example/\",\"詳細\")\r\n",
        Enc::Cp932,
        "氏名,備考\r\n山田,メモ;'=HYPERLINK(\"http://evil.example/\",\"詳細\")\r\n",
    );
    assert!(removed(&outcome, What::Formula, "split on ';'"));
}

#[test]
fn only_the_quote_is_added_machine_dependent_bytes_stay() {
    // 髙 ① ㈱ and an NEC-selected IBM extension (0xED40, 纊) that re-encoding would change,
    // then an ideographic space and a fullwidth ＝: the `'` goes between two 2-byte characters.
    let mut input = SHIFT_JIS.encode("髙橋,①,㈱\r\n").0.into_owned();
    input.extend_from_slice(b"\xED\x40,");
    let at = input.len() + 2;
    input.extend_from_slice(&SHIFT_JIS.encode("\u{3000}＝1+1\r\n").0);
    let mut expected = input.clone();
    expected.insert(at, b'\'');
    let outcome = process(&input, "一覧.csv");
    assert_eq!(outcome.output().unwrap().bytes(), &expected[..]);
    assert_idempotent(&expected, "一覧.csv");
}

#[test]
fn negative_numbers_stay_numbers_under_every_split() {
    let csv = "-500,残高\r\n\"-1\",\"x\"\r\n1;-2,+3.5e2\r\n";
    let outcome = process(csv.as_bytes(), "一覧.csv");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert!(
        outcome.report.removed.is_empty(),
        "{:?}",
        outcome.report.removed
    );
    assert_eq!(outcome.output().unwrap().bytes(), csv.as_bytes());
}

/// CP932 text as old Japanese editors save it: with the DOS end-of-file byte.
fn cp932_with_dos_eof(text: &str) -> Vec<u8> {
    let mut bytes = SHIFT_JIS.encode(text).0.into_owned();
    bytes.push(0x1A);
    bytes
}

#[test]
fn cp932_text_and_csv_ending_in_dos_eof_are_delivered() {
    let txt = cp932_with_dos_eof("お知らせ　①②\r\n以上\r\n");
    let outcome = process(&txt, "お知らせ.txt");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Passed,
        "{:?}",
        outcome.report.reason
    );
    assert_eq!(outcome.output().unwrap().bytes(), &txt[..]);

    let csv = cp932_with_dos_eof("氏名,金額\r\n山田,100\r\n");
    let outcome = process(&csv, "一覧.csv");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert_eq!(outcome.output().unwrap().bytes(), &csv[..]);

    let formula = cp932_with_dos_eof("氏名,金額\r\n山田,=1+1\r\n");
    let outcome = process(&formula, "一覧.csv");
    let out = outcome.output().unwrap().bytes();
    assert_eq!(out, &cp932_with_dos_eof("氏名,金額\r\n山田,'=1+1\r\n")[..]);
    assert_idempotent(out, "一覧.csv");
}

#[test]
fn cp932_mail_attachment_ending_in_dos_eof_is_attached() {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD
        .encode(cp932_with_dos_eof("会議のお知らせ\r\n①日時\r\n"));
    let raw = format!(
        "From: sender@example.jp\r\nTo: staff@city.example.lg.jp\r\nSubject: notice\r\n\
         Date: Fri, 4 Dec 2026 10:00:00 +0900\r\nMessage-ID: <eof@example.jp>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attached\r\n\
         --b1\r\nContent-Type: text/plain; name=\"memo.txt\"\r\n\
         Content-Disposition: attachment; filename=\"memo.txt\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b1--\r\n"
    );
    let outcome = mukaika_sanitizers::mail::convert(
        raw.as_bytes(),
        "eof",
        &Registry::standard(),
        &Policy::default(),
    );
    let attachments = &outcome.report.attachments;
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0].disposition,
        mukaika_sanitizers::mail::Disposition::Attached,
        "{:?}",
        attachments[0].report.reason
    );
    assert_eq!(attachments[0].report.verdict, Verdict::Passed);
}

/// Pieces CSV files are made of, weighted toward the characters that decide a split.
fn csv_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ",", ",", ";", ";", "\t", "\t", "\"", "\"", " ", "\u{3000}", "=", "+", "-", "@", "＝",
        "－", "＠", "1", "2", ".", "e", "a", "名", "\r\n", "\n", "\r", "|", "!", "(", "[", "'",
        "sep=;\n", "sep=|\n",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the file: no cell under any split is left a formula, only `'` is added, and
    /// a second pass removes nothing.
    #[test]
    fn no_formula_survives_any_split(
        pieces in prop::collection::vec(csv_piece(), 0..40),
        enc in prop::sample::select(vec![Enc::Utf8, Enc::Cp932, Enc::Utf16Le]),
    ) {
        let csv: String = pieces.concat();
        let outcome = process(&encode(&csv, enc), "x.csv");
        let Some(out) = outcome.output() else {
            // Held is fail-closed and allowed (e.g. `sep='`); nothing to check.
            return Ok(());
        };
        let text = decode_as(out.bytes(), enc);
        prop_assert_eq!(csv_oracle::formula_cells(&text), Vec::<(char, String)>::new());
        // Only quotes were added: dropping exactly as many `'` as were removed gives the input.
        let mut rest = text.chars().peekable();
        let mut added = 0;
        for c in csv.chars() {
            while rest.peek() == Some(&'\'') && c != '\'' {
                rest.next();
                added += 1;
            }
            prop_assert_eq!(rest.next(), Some(c));
        }
        added += rest.filter(|&c| c == '\'').count();
        prop_assert_eq!(added, outcome.report.removed.len());
        let again = process(out.bytes(), "x.csv");
        prop_assert!(again.report.removed.is_empty(), "{:?}", again.report.removed);
        prop_assert_eq!(again.output().map(|o| o.bytes().to_vec()), Some(out.bytes().to_vec()));
    }
}

#[test]
fn html_whose_text_reads_as_markup_again_is_held_as_a_decision_not_a_bug() {
    // `<<body>body>"`: the page's text is `<body>"`, which content detection takes for HTML
    // again, so the text could never pass its own re-check (found by the registry fuzz target).
    for page in [
        &b"<<body>body>\""[..],
        b"<p>&lt;script&gt; shown as text</p>",
    ] {
        let outcome = process(page, "page.html");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{page:?}");
        let reason = outcome.report.reason.unwrap();
        assert_eq!(reason.code, "unsupported", "{page:?}: {}", reason.detail);
    }
}

#[test]
fn a_csv_named_file_holding_html_is_a_type_mismatch_not_text() {
    // Content detection reads it as HTML and would deliver its rendered text, whose cells the
    // CSV rules never saw; a spreadsheet would still open it as cells. Found by the csv fuzz
    // target.
    for input in [
        &b"<body>=cmd|' /C calc'!A0,1\n"[..],
        b"name,value\n<script>x</script>\n=1+1,2\n",
    ] {
        let outcome = process(input, "list.csv");
        assert!(outcome.output().is_none(), "{:?}", outcome.report);
        let reason = outcome.report.reason.clone().expect("a reason");
        assert_eq!(reason.code, "type-mismatch", "{reason:?}");
    }
    // The same bytes named as HTML are still converted.
    let outcome = process(b"<body><p>hello</p></body>", "page.html");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report
    );
}
