//! PDF rebuilder behaviour, each case run through the fail-closed helper.

mod common;

use common::generate::*;
use common::*;
use mukaika_sanitizers::{Policy, Verdict, What};

const FORBIDDEN: &[&str] = &[
    "JS",
    "JavaScript",
    "AA",
    "Launch",
    "URI",
    "GoToR",
    "GoToE",
    "EmbeddedFile",
    "EmbeddedFiles",
    "EF",
    "AF",
    "RichMedia",
    "FileAttachment",
    "XFA",
    "SubmitForm",
    "ImportData",
];

fn assert_no_active_content(bytes: &[u8]) {
    let names = pdf_names(bytes);
    for bad in FORBIDDEN {
        assert!(!names.iter().any(|n| n == bad), "output still has /{bad}");
    }
}

#[test]
fn removes_javascript_openaction_and_keeps_pages() {
    let input = pdf_js_openaction();
    let outcome = assert_fail_closed("brochure.pdf", &input);
    assert!(
        removed(&outcome, What::Javascript, "OpenAction"),
        "{:?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert!(!pdf_names(out).iter().any(|n| n == "OpenAction"));
    assert_eq!(pdf_pages(out), 2);
}

#[test]
fn removes_every_active_family_and_keeps_what_is_harmless() {
    let input = pdf_kitchen_sink();
    let outcome = assert_fail_closed("form.pdf", &input);
    for (what, needle) in [
        (What::Javascript, "/Names /JavaScript"),
        (What::EmbeddedFile, "/Names /EmbeddedFiles"),
        (What::EmbeddedFile, "catalog /AF"),
        (What::EmbeddedFile, "FileAttachment"),
        (What::Multimedia, "RichMedia"),
        (What::AutoAction, "catalog /AA"),
        (What::AutoAction, "triggers: O"),
        (What::AutoAction, "triggers: K"),
        (What::Action, "Launch: cmd.exe"),
        (What::Action, "GoToR"),
        (What::Hyperlink, "https://phish.invalid/login"),
        (What::Javascript, "/A"),
        (What::Xfa, "XFA"),
        (What::Metadata, "trailer /Info"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert_eq!(pdf_pages(out), 3);
    let names = pdf_names(out);
    assert!(
        names.iter().any(|n| n == "GoTo"),
        "in-document GoTo link must stay"
    );
    assert!(
        names.iter().any(|n| n == "AcroForm") && names.iter().any(|n| n == "Fields"),
        "form fields stay"
    );
    assert!(
        names.iter().any(|n| n == "OpenAction"),
        "a plain destination OpenAction stays"
    );
    assert!(
        names.iter().any(|n| n == "Outlines"),
        "outline stays without its action"
    );
    assert!(!names.iter().any(|n| n == "Info" || n == "Author"));
}

#[test]
fn keeps_uri_links_when_policy_allows() {
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&pdf_kitchen_sink(), "form.pdf", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let names = pdf_names(outcome.output().unwrap().bytes());
    assert!(names.iter().any(|n| n == "URI"));
    assert!(!names.iter().any(|n| n == "Launch" || n == "JS"));
}

#[test]
fn drops_non_web_uri_actions_even_when_links_are_kept() {
    let (mut doc, cat, _) = pdf_base(1);
    let c = doc
        .get_object_mut(cat)
        .and_then(lopdf::Object::as_dict_mut)
        .unwrap();
    c.set("OpenAction", lopdf::dictionary! { "S" => "URI", "URI" => lopdf::Object::string_literal("javascript:app.alert(1)") });
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&bytes, "a.pdf", &policy);
    assert!(
        removed(&outcome, What::Hyperlink, "javascript:"),
        "{:?}",
        outcome.report.removed
    );
    assert!(!pdf_names(outcome.output().unwrap().bytes())
        .iter()
        .any(|n| n == "URI"));
}

#[test]
fn rebuilds_from_the_final_revision_and_drops_history() {
    let input = pdf_incremental_js();
    let outcome = assert_fail_closed("update.pdf", &input);
    assert!(removed(&outcome, What::RevisionHistory, "earlier revision"));
    assert!(
        removed(&outcome, What::Javascript, "OpenAction"),
        "{:?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert_eq!(out.windows(5).filter(|w| *w == b"%%EOF").count(), 1);
    assert_eq!(pdf_pages(out), 2);
}

#[test]
fn drops_bytes_before_the_header_and_after_the_end() {
    let outcome = assert_fail_closed("carrier.pdf", &pdf_with_junk_around());
    assert!(removed(&outcome, What::TrailingData, "before %PDF- header"));
    assert!(removed(&outcome, What::TrailingData, "after last %%EOF"));
    let out = outcome.output().unwrap().bytes();
    assert!(out.starts_with(b"%PDF-"));
    assert!(!out.windows(8).any(|w| w == b"appended"));
}

#[test]
fn quarantines_a_pdf_without_pages() {
    let (mut doc, _, pages) = pdf_base(1);
    doc.objects.insert(pages, lopdf::Object::Dictionary(lopdf::dictionary! { "Type" => "Pages", "Kids" => Vec::<lopdf::Object>::new(), "Count" => 0 }));
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let outcome = process(&bytes, "empty.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");
}

#[test]
fn quarantines_zip_magic_in_front_of_a_pdf() {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend(pdf_js_openaction());
    let outcome = process(&bytes, "invoice.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "polyglot");
}
