//! RTF: objects, DDE and other non-allowlisted fields, remote templates and metadata are
//! dropped from a strictly tokenized tree that is written back as RTF; the visible text, code
//! page bytes and pictures stay; ambiguous input is held.

mod common;

use common::generate::*;
use common::*;
use mukaika_sanitizers::rtf::text::to_text;
use mukaika_sanitizers::{FileKind, Verdict, What};

#[test]
fn objects_fields_templates_and_info_go_text_stays() {
    let input = rtf_with_threats();
    let outcome = assert_fail_closed("議事録.rtf", &input);
    assert!(removed(&outcome, What::OleObject, "Package"));
    assert!(removed(&outcome, What::Field, "DDEAUTO"));
    assert!(removed(
        &outcome,
        What::ExternalReference,
        "templates.example.invalid"
    ));
    assert!(removed(&outcome, What::Metadata, "document information"));
    assert!(
        !removed(&outcome, What::Field, "PAGE"),
        "PAGE is allowlisted"
    );
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Rtf);
    let text = String::from_utf8_lossy(out.bytes());
    for gone in [
        "objdata",
        "DDEAUTO",
        "template",
        "Synthetic Author",
        "\\object",
    ] {
        assert!(!text.contains(gone), "{gone} survived:\n{text}");
    }
    assert!(text.contains("\\pngblip"), "the result picture stays");
    let shown = to_text(out.bytes());
    assert!(shown.contains("会議資料"), "{shown}");
    assert!(
        shown.contains("shown result") && shown.contains("dde result"),
        "{shown}"
    );
    assert!(shown.contains("page 1"), "{shown}");
}

#[test]
fn binary_data_of_any_length_round_trips() {
    let input = b"{\\rtf1 {\\pict\\wmetafile8\\bin3 \x01}\x02} after\\par}";
    let outcome = process(input, "a.rtf");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let out = outcome.output().unwrap().bytes();
    assert!(
        out.windows(9).any(|w| w == b"\\bin3 \x01}\x02"),
        "{}",
        String::from_utf8_lossy(out)
    );
    assert!(to_text(out).contains("after"));
}

#[test]
fn a_header_word_only_opens_is_written_as_rtf1() {
    let outcome = process(b"{\\rtvpn\\ansi hello\\par}", "a.rtf");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert!(outcome
        .output()
        .unwrap()
        .bytes()
        .starts_with(b"{\\rtf1 \\ansi hello"));
    assert!(outcome.report.warnings.iter().any(|w| w.contains("rtvpn")));
}

#[test]
fn ambiguous_rtf_is_held() {
    for bad in [
        &b"{\\rtf1 unbalanced {group}"[..],
        b"{\\rtf1 \\'4 bad hex}",
        b"{\\rtf1 \\bin400 short}",
        b"{\\rtf1 ok} {\\rtf1 second document}",
    ] {
        let outcome = process(bad, "a.rtf");
        assert_eq!(
            outcome.report.verdict,
            Verdict::Quarantined,
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(outcome.report.reason.unwrap().code, "malformed");
    }
    let mut deep = b"{\\rtf1 ".to_vec();
    deep.extend(std::iter::repeat_n(b'{', 600));
    deep.extend(std::iter::repeat_n(b'}', 601));
    let outcome = process(&deep, "deep.rtf");
    assert_eq!(outcome.report.reason.unwrap().code, "limit-exceeded");
}
