//! TNEF (winmail.dat): the body becomes 本文.txt and every attachment goes through the
//! registry; the Outlook wrapper itself never reaches LGWAN.

use crate::common;

use std::io::{Cursor, Read};

use common::generate::*;
use common::*;
use mukaika_sanitizers::{FileKind, Verdict, What};

#[test]
fn winmail_dat_becomes_a_zip_of_body_and_rebuilt_attachments() {
    let input = tnef(
        "お世話になっております。\r\n見積書を添付します。",
        &[
            ("見積書.pdf", &pdf_js_openaction()),
            ("メモ.txt", b"memo\r\n"),
        ],
    );
    let outcome = assert_fail_closed("winmail.dat", &input);
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Zip);
    let mut names = zip_names(out.bytes());
    names.sort();
    assert_eq!(names, vec!["メモ.txt", "本文.txt", "見積書.pdf"]);
    let mut zip = zip::ZipArchive::new(Cursor::new(out.bytes())).unwrap();
    let mut body = String::new();
    zip.by_name("本文.txt")
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert!(body.contains("見積書を添付します。"), "{body}");
    let pdf = outcome
        .report
        .children
        .iter()
        .find(|c| c.input.as_deref() == Some("見積書.pdf"))
        .unwrap();
    assert_eq!(pdf.verdict, Verdict::Sanitized);
    assert!(pdf.removed.iter().any(|r| r.what == What::Javascript));
}

#[test]
fn a_bad_checksum_or_a_cut_attribute_holds_the_stream() {
    let mut input = tnef("body", &[("a.txt", b"hello\n")]);
    let last = input.len() - 1;
    input[last] ^= 0xFF;
    let outcome = process(&input, "winmail.dat");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.report.reason.unwrap().detail.contains("checksum"));
}

#[test]
fn a_script_inside_blocks_the_whole_stream() {
    let input = tnef("body", &[("run.vbs", b"MsgBox 1\r\n")]);
    let outcome = process(&input, "winmail.dat");
    assert_eq!(outcome.report.verdict, Verdict::Blocked);
}
