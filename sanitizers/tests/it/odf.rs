//! OpenDocument: macros, event bindings, macro fields, external images, linked sections, DDE,
//! hyperlinks (by policy), thumbnails and metadata go; the text and pictures stay in a new
//! package with `mimetype` first and a manifest of exactly what was kept.

use crate::common;

use std::io::{Cursor, Read};

use common::generate::*;
use common::*;
use mukaika_sanitizers::{FileKind, Policy, Verdict, What};

fn member(zip: &[u8], name: &str) -> Option<String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut file = archive.by_name(name).ok()?;
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    Some(s)
}

#[test]
fn active_and_external_content_goes_text_and_pictures_stay() {
    let outcome = assert_fail_closed("お知らせ.odt", &odt_with_threats());
    for (what, needle) in [
        (What::Macro, "macro library"),
        (What::AutoAction, "event listener"),
        (What::Macro, "macro-running field"),
        (What::ExternalReference, "tracker.example.invalid"),
        (What::ExternalReference, "linked section"),
        (What::DataConnection, "DDE"),
        (What::Hyperlink, "www.example.jp"),
        (What::Metadata, "thumbnail"),
        (What::Metadata, "meta.xml"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "{what:?} {needle}: {:?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Odt);
    let names = zip_names(out.bytes());
    assert_eq!(names[0], "mimetype", "mimetype comes first");
    let mut rest = names[1..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        vec!["META-INF/manifest.xml", "Pictures/logo.png", "content.xml"]
    );
    let content = member(out.bytes(), "content.xml").unwrap();
    for gone in [
        "vnd.sun.star.script",
        "execute-macro",
        "tracker.example",
        "secret.odt",
        "dde-connection",
        "www.example.jp",
    ] {
        assert!(!content.contains(gone), "{gone} survived");
    }
    for kept in [
        "会議のお知らせ",
        "こちら",
        "クリックしてください",
        "リンクされた節",
        "Pictures/logo.png",
    ] {
        assert!(content.contains(kept), "{kept} lost");
    }
    let manifest = member(out.bytes(), "META-INF/manifest.xml").unwrap();
    assert!(manifest.contains("Pictures/logo.png") && !manifest.contains("Basic"));
}

#[test]
fn hyperlinks_stay_when_policy_keeps_links() {
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&odt_with_threats(), "a.odt", &policy);
    let content = member(outcome.output().unwrap().bytes(), "content.xml").unwrap();
    assert!(content.contains("https://www.example.jp/info"));
    assert!(
        !content.contains("tracker.example"),
        "external images go whatever the link policy"
    );
}

#[test]
fn password_protected_packages_are_held() {
    let odt = odt_with_threats();
    let mut archive = zip::ZipArchive::new(Cursor::new(&odt)).unwrap();
    let mut manifest = String::new();
    archive
        .by_name("META-INF/manifest.xml")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let locked_manifest = manifest.replace(
        "manifest:media-type=\"text/xml\"/>",
        "manifest:media-type=\"text/xml\"><manifest:encryption-data manifest:checksum-type=\"SHA1/1K\" manifest:checksum=\"AAAA\"/></manifest:file-entry>",
    );
    let mut members = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        members.push((f.name().unwrap().into_owned(), bytes));
    }
    let entries: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, b)| {
            if n == "META-INF/manifest.xml" {
                (n.as_str(), locked_manifest.as_bytes())
            } else {
                (n.as_str(), b.as_slice())
            }
        })
        .collect();
    let outcome = process(&zip_of(&entries), "locked.odt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "encrypted");
}

// ---------------------------------------------------------------------------------------------
// Issue #20, class 6: links by namespace, formulas and names that reach outside.
// ---------------------------------------------------------------------------------------------

/// A marker carried by every hostile link and formula below: it must not survive anywhere.
const MARK: &str = HIDDEN_MARK;

/// Sanitizes a package and checks no member of the output holds the marker, and that a
/// second pass removes nothing.
fn assert_marker_gone(name: &str, input: &[u8]) -> mukaika_sanitizers::Outcome {
    let outcome = assert_fail_closed(name, input);
    let out = outcome.output().unwrap().bytes();
    assert_eq!(
        zip_members_containing(out, MARK),
        Vec::<String>::new(),
        "{name}: the marker survives; report {:#?}",
        outcome.report.removed
    );
    assert_second_pass_removes_nothing(&outcome);
    outcome
}

#[test]
fn links_under_any_prefix_bound_to_xlink_are_judged() {
    // Links kept by policy: only web and mail links may stay, whatever their prefix.
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let input = odt_with_prefixed_xlink();
    assert_marker_gone("prefix.odt", &input);
    let outcome = process_with(&input, "prefix.odt", &policy);
    assert!(
        removed(&outcome, What::ExternalReference, "attacker.invalid"),
        "{:#?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::Hyperlink, "file:///C:/"));
    let out = outcome.output().unwrap().bytes();
    assert_eq!(zip_members_containing(out, MARK), Vec::<String>::new());
    let content = member(out, "content.xml").unwrap();
    for kept in [
        "本文",
        "ファイルへのリンク",
        "foo:href=\"Pictures/logo.png\"",
    ] {
        assert!(content.contains(kept), "{kept} lost: {content}");
    }
    assert!(zip_names(out).contains(&"Pictures/logo.png".to_string()));
}

#[test]
fn spreadsheet_formulas_names_and_conditions_that_reach_outside_go() {
    let input = ods_with_outside_formulas();
    let outcome = assert_marker_gone("集計.ods", &input);
    for (what, needle) in [
        (
            What::ExternalReference,
            "content-validation table:condition",
        ),
        (
            What::ExternalReference,
            "content-validation table:base-cell-address",
        ),
        (What::Field, "DDE call"),
        (What::DataConnection, "WEBSERVICE call"),
        (What::ExternalReference, "-3.ods"),
        (What::Hyperlink, "HYPERLINK to file:"),
        (What::DataConnection, "condition"),
        (What::ExternalReference, "named-range 遠隔"),
        (What::DataConnection, "named-expression ウェブ"),
        (What::Field, "named-expression 交換"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    assert_eq!(
        outcome.report.removed.len(),
        10,
        "{:#?}",
        outcome.report.removed
    );
    let content = member(outcome.output().unwrap().bytes(), "content.xml").unwrap();
    for kept in [
        "office:value=\"10\"",
        "office:string-value=\"応答\"",
        "office:value=\"5\"",
        "of:=SUM([.A1])",
        "table:name=\"範囲\"",
        "table:name=\"val1\"",
    ] {
        assert!(content.contains(kept), "{kept} lost: {content}");
    }
    assert!(
        !content.contains("遠隔") && !content.contains("ウェブ"),
        "{content}"
    );
}
