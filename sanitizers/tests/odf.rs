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

// ---------------------------------------------------------------------------------------------
// Issue #20, class 6: links by namespace, formulas and names that reach outside.
// ---------------------------------------------------------------------------------------------

/// A marker carried by every hostile link and formula below: it must not survive anywhere.
const MARK: &str = "MUKAIKA-MARK";

/// An ODF package of the given type with one content part and a picture.
fn odf_of(mimetype: &str, content: &str) -> Vec<u8> {
    let manifest = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\"><manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{mimetype}\"/><manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/><manifest:file-entry manifest:full-path=\"Pictures/logo.png\" manifest:media-type=\"image/png\"/></manifest:manifest>"
    );
    let png = tiny_png();
    zip_of(&[
        ("mimetype", mimetype.as_bytes()),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", content.as_bytes()),
        ("Pictures/logo.png", &png),
    ])
}

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
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" xmlns:foo="http://www.w3.org/1999/xlink" office:version="1.2"><office:body><office:text>
<text:p>本文</text:p>
<text:p><draw:frame draw:name="unc" svg:width="1cm" svg:height="1cm"><draw:image foo:href="\\attacker.invalid\share\{MARK}-1.png" foo:type="simple"/></draw:frame></text:p>
<text:p><text:a foo:type="simple" foo:href="file:///C:/{MARK}-2.exe">ファイルへのリンク</text:a></text:p>
<text:p><draw:frame draw:name="logo" svg:width="1cm" svg:height="1cm"><draw:image foo:href="Pictures/logo.png" foo:type="simple"/></draw:frame></text:p>
</office:text></office:body></office:document-content>"#
    );
    // Links kept by policy: only web and mail links may stay, whatever their prefix.
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let input = odf_of("application/vnd.oasis.opendocument.text", &content);
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
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" office:version="1.2"><office:body><office:spreadsheet>
<table:content-validations><table:content-validation table:name="val1" table:condition="of:cell-content-is-in-list(['file:///C:/{MARK}-v.ods'#$Sheet1.A1:.A3])" table:allow-empty-cell="true" table:base-cell-address="Sheet1.A2"/></table:content-validations>
<table:table table:name="Sheet1">
<table:table-row>
<table:table-cell office:value-type="float" office:value="1"><text:p>1</text:p></table:table-cell>
<table:table-cell table:formula="of:=DDE(&quot;cmd&quot;;&quot;/c {MARK}-1&quot;;&quot;A1&quot;)" office:value-type="float" office:value="10"><text:p>10</text:p></table:table-cell>
<table:table-cell table:formula="of:=COM.MICROSOFT.WEBSERVICE(&quot;http://{MARK}-2.invalid/&quot;)" office:value-type="string" office:string-value="応答"><text:p>応答</text:p></table:table-cell>
<table:table-cell table:formula="of:=['file:///C:/{MARK}-3.ods'#$Sheet1.A1]" office:value-type="float" office:value="5"><text:p>5</text:p></table:table-cell>
<table:table-cell table:formula="of:=HYPERLINK(&quot;file:///C:/{MARK}-4.exe&quot;;&quot;開く&quot;)" office:value-type="string" office:string-value="開く"><text:p>開く</text:p></table:table-cell>
<table:table-cell table:formula="of:=SUM([.A1])" office:value-type="float" office:value="1"><text:p>1</text:p></table:table-cell>
</table:table-row>
<table:table-row><table:table-cell table:content-validation-name="val1" office:value-type="float" office:value="3"><text:p>3</text:p></table:table-cell></table:table-row>
<calcext:conditional-formats><calcext:conditional-format calcext:target-range-address="Sheet1.A1:Sheet1.A1"><calcext:condition calcext:apply-style-name="Default" calcext:value="formula-is(WEBSERVICE(&quot;http://{MARK}-9.invalid&quot;))" calcext:base-cell-address="Sheet1.A1"/></calcext:conditional-format></calcext:conditional-formats>
</table:table>
<table:named-expressions>
<table:named-range table:name="遠隔" table:base-cell-address="$Sheet1.$A$1" table:cell-range-address="'file:///C:/{MARK}-5.ods'#$Sheet1.$A$1"/>
<table:named-expression table:name="ウェブ" table:base-cell-address="$Sheet1.$A$1" table:expression="of:WEBSERVICE(&quot;http://{MARK}-6.invalid/&quot;)"/>
<table:named-expression table:name="交換" table:base-cell-address="$Sheet1.$A$1" table:expression="of:DDE(&quot;cmd&quot;;&quot;/c {MARK}-7&quot;;&quot;x&quot;)"/>
<table:named-range table:name="範囲" table:base-cell-address="$Sheet1.$A$1" table:cell-range-address="$Sheet1.$A$1:.$A$2"/>
</table:named-expressions>
</office:spreadsheet></office:body></office:document-content>"#
    );
    let input = odf_of("application/vnd.oasis.opendocument.spreadsheet", &content);
    let outcome = assert_marker_gone("集計.ods", &input);
    for (what, needle) in [
        (What::ExternalReference, "content-validation"),
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
        9,
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
