//! OpenDocument: macros, event bindings, macro fields, external images, linked sections, DDE,
//! hyperlinks (by policy), thumbnails and metadata go; the text and pictures stay in a new
//! package with `mimetype` first and a manifest of exactly what was kept.

mod common;

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
