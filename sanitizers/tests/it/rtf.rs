//! RTF: objects, DDE and other non-allowlisted fields, remote templates and metadata are
//! dropped from a strictly tokenized tree that is written back as RTF; the visible text, code
//! page bytes and pictures stay; ambiguous input is held.

use crate::common;

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

/// A small RTF document around `body`.
fn rtf_with(body: &str) -> Vec<u8> {
    format!("{{\\rtf1\\ansi\\ansicpg1252\\deff0{{\\fonttbl{{\\f0 Arial;}}}}\\pard before\\par {body}\\par after\\par}}")
        .into_bytes()
}

/// Sanitizes `body` in a document and returns the output as text, checking it was delivered.
fn sanitized_rtf(body: &str) -> (mukaika_sanitizers::Outcome, String) {
    let outcome = process(&rtf_with(body), "a.rtf");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{body}: {:?}",
        outcome.report.reason
    );
    let text = String::from_utf8_lossy(outcome.output().unwrap().bytes()).into_owned();
    (outcome, text)
}

#[test]
fn an_ignorable_group_before_the_instruction_does_not_hide_ddeauto() {
    for body in [
        r#"{\field{\*\fldinst {\*\x junk} DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt dde shown}}"#,
        r#"{\field{\*\fldinst {\*\x PAGE} DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt dde shown}}"#,
        r#"{\field{\*\fldinst {\*\x PAGE}DDE c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt dde shown}}"#,
    ] {
        let (outcome, text) = sanitized_rtf(body);
        assert!(
            removed(&outcome, What::Field, "DDE"),
            "{body}: {:?}",
            outcome.report.removed
        );
        assert!(!text.contains("DDE") && !text.contains("cmd.exe"), "{text}");
        assert!(to_text(outcome.output().unwrap().bytes()).contains("dde shown"));
    }
}

#[test]
fn a_field_with_two_instructions_or_a_stray_instruction_keeps_only_its_result() {
    for body in [
        r#"{\field{\*\fldinst PAGE}{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt two shown}}"#,
        r#"{\field{\*\fldinst PAGE}{\*\fldinst INCLUDEPICTURE "\\\\host\\share\\a.png" \\d}{\fldrslt two shown}}"#,
        r#"{\field{\*\fldinst PAGE}{\fldrslt two shown}{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe}}"#,
        r#"two shown{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}"#,
        r#"two shown{\b \fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}"#,
    ] {
        let (outcome, text) = sanitized_rtf(body);
        assert!(
            removed(&outcome, What::Field, ""),
            "{body}: {:?}",
            outcome.report.removed
        );
        for gone in ["DDE", "cmd.exe", "INCLUDEPICTURE", "host"] {
            assert!(!text.contains(gone), "{gone} survived: {text}");
        }
        assert!(to_text(outcome.output().unwrap().bytes()).contains("two shown"));
    }
}

#[test]
fn an_instruction_word_after_spaces_groups_or_escapes_is_read_as_word_reads_it() {
    for body in [
        // Formatting groups and spaces before the type, the dangerous word after an allowed one.
        r#"{\field{\*\fldinst   {\b  }  {PAGE}{ DDEAUTO c:\\windows\\system32\\cmd.exe}}{\fldrslt shown}}"#,
        // A switch's `\\` escape, then a second field type.
        r#"{\field{\*\fldinst DATE \\@ "yyyy" DDEAUTO c:\\windows\\system32\\cmd.exe}{\fldrslt shown}}"#,
        // The type spelled with code-page escapes.
        r#"{\field{\*\fldinst PAGE \'44\'44\'45AUTO c:\\windows\\system32\\cmd.exe}{\fldrslt shown}}"#,
        // A Unicode escape whose fallback a naive reader would take for part of the word.
        r#"{\field{\*\fldinst \uc1\u80 xAGE DDEAUTO c:\\windows\\system32\\cmd.exe}{\fldrslt shown}}"#,
        // A UNC picture behind an ignorable group that says PAGE.
        r#"{\field{\*\fldinst {\*\x PAGE} INCLUDEPICTURE "\\\\host\\share\\a.png" \\d}{\fldrslt shown}}"#,
    ] {
        let (outcome, text) = sanitized_rtf(body);
        assert!(
            removed(&outcome, What::Field, ""),
            "{body}: {:?}",
            outcome.report.removed
        );
        for gone in ["DDE", "\\'44\\'44", "cmd.exe", "INCLUDEPICTURE", "host"] {
            assert!(!text.contains(gone), "{gone} survived: {text}");
        }
        assert!(to_text(outcome.output().unwrap().bytes()).contains("shown"));
    }
}

#[test]
fn allowlisted_fields_stay_as_plain_instructions() {
    let (outcome, text) = sanitized_rtf(
        r#"{\field{\*\fldinst {\rtlch\fcs1 \af0 \insrsid1  PAGE \\* MERGEFORMAT}}{\fldrslt 7}} {\field\fldlock{\*\fldinst DATE \\@ "yyyy\'94\'4e"}{\fldrslt 2026}}"#,
    );
    assert!(
        outcome.report.removed.is_empty(),
        "{:?}",
        outcome.report.removed
    );
    assert!(
        text.contains(r#"{\*\fldinst  PAGE \\* MERGEFORMAT}"#),
        "{text}"
    );
    assert!(text.contains(r#"DATE \\@ "yyyy\'94\'4e""#), "{text}");
    assert!(text.contains("\\fldlock"), "{text}");
    // A Unicode bookmark name (with a document-wide \uc2) is written with one '?' fallback and
    // a \uc1 that says so; a second pass reads it the same (the registry re-checks that).
    let (outcome, text) =
        sanitized_rtf(r#"\uc2 {\field{\*\fldinst REF \u12354 \'82\'a0_mark \\h}{\fldrslt r}}"#);
    assert!(
        outcome.report.removed.is_empty(),
        "{:?}",
        outcome.report.removed
    );
    assert!(text.contains(r#"\uc1 REF \u12354 ?_mark \\h}"#), "{text}");
    // Ignorable data inside an allowed instruction goes, and is reported.
    let (outcome, text) = sanitized_rtf(
        r#"{\field{\*\fldinst FORMTEXT {\*\datafield 8001000000000000}{\*\formfield{\fftype0{\*\ffname Text1}}}}{\fldrslt filled}}"#,
    );
    assert!(removed(&outcome, What::Field, "ignorable group"));
    assert!(
        text.contains("FORMTEXT") && !text.contains("datafield"),
        "{text}"
    );
}

#[test]
fn a_shape_picture_linked_to_a_unc_path_goes() {
    let body = r#"{\shp{\*\shpinst\shpleft0\shptop0\shpright100\shpbottom100{\sp{\sn shapeType}{\sv 75}}{\sp{\sn pibName}{\sv \\\\host\\share\\x.png}}{\sp{\sn pibFlags}{\sv 10}}{\sp{\sn fillBlipName}{\sv http://fetch.invalid/f.png}}}}"#;
    let (outcome, text) = sanitized_rtf(body);
    assert!(
        removed(&outcome, What::ExternalReference, "pibName"),
        "{:?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::ExternalReference, "fillBlipName"));
    for gone in ["pibName", "host", "share", "fillBlipName", "fetch.invalid"] {
        assert!(!text.contains(gone), "{gone} survived: {text}");
    }
    assert!(
        text.contains("shapeType"),
        "harmless properties stay: {text}"
    );
}

#[test]
fn a_mail_merge_data_source_goes() {
    let body = r#"{\*\mailmerge\mmmaintypecatalog\mmlinktoquery\mmdatatypeodbc{\*\mmconnectstr DSN=marker;DBQ=c:\\data.mdb;ODBC;}{\*\mmquery SELECT * FROM marker_table}}{\*\mmodsoudl Provider=MSDASQL;ODBC;marker}"#;
    let (outcome, text) = sanitized_rtf(body);
    assert!(
        removed(&outcome, What::DataConnection, "mail merge"),
        "{:?}",
        outcome.report.removed
    );
    for gone in ["mailmerge", "mmconnectstr", "ODBC", "marker", "mmodso"] {
        assert!(!text.contains(gone), "{gone} survived: {text}");
    }
    // Word's math properties share the `\mm` prefix and stay.
    let (outcome, text) = sanitized_rtf(r#"{\*\mmathPr\mmathFont34\mbrkBin0}"#);
    assert!(outcome.report.removed.is_empty());
    assert!(text.contains("mmathPr"), "{text}");
}
