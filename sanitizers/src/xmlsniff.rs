//! What kind of XML a document is, decided by parsing all of it.
//!
//! Owns: [`sniff`], a streaming pass over a whole markup document (quick-xml underneath) that
//! resolves every element's namespace — with character references in `xmlns` values expanded,
//! as a browser does — and reads every processing instruction and the DOCTYPE, wherever they
//! sit. It tells Office XML (Word 2003 XML, SpreadsheetML, Flat OPC, anything carrying
//! `mso-application` or an Office namespace), XHTML, SVG and Windows shell XML apart from XML
//! a browser would style, script or expand (an `xml-stylesheet` PI, XHTML/SVG/XSLT elements
//! below the root, a DOCTYPE), and those from plain data XML.
//! Invariants: there is no prefix window — a marker after a 10 KB comment counts as much as
//! one in the first line; [`XmlClass::Data`] is returned only after the whole document parsed
//! as well-formed, namespace-well-formed XML with nothing active in it. Work is linear in the
//! input (no nested scans; attribute duplicates are checked with a set) and memory is bounded
//! by the input (one decoded copy at most, a stack of open elements).
//! Must never: expand an entity other than the predefined ones and character references,
//! fetch a DTD, or call a document plain data because it failed to parse.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use quick_xml::events::Event;
use quick_xml::Reader;

/// The XHTML namespace: elements in it are HTML to a browser, wherever they sit.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// The SVG namespace.
pub const SVG_NS: &str = "http://www.w3.org/2000/svg";
/// XSLT: a stylesheet a browser applies, turning data into HTML.
pub const XSLT_NS: &str = "http://www.w3.org/1999/XSL/Transform";

/// Namespaces (by prefix) whose elements a browser renders or runs in any XML document.
const ACTIVE_NS: &[(&str, &str)] = &[
    (XHTML_NS, "XHTML element"),
    (SVG_NS, "SVG element"),
    (XSLT_NS, "XSLT element"),
    // msxsl:script runs JScript/VBScript inside an XSLT transform.
    ("urn:schemas-microsoft-com:xslt", "MSXSL element"),
    ("urn:schemas-microsoft-com:vml", "VML element"),
    ("http://www.w3.org/1998/Math/MathML", "MathML element"),
    (
        "http://www.mozilla.org/keymaster/gatekeeper/there.is.only.xul",
        "XUL element",
    ),
    ("http://www.w3.org/2001/XInclude", "XInclude element"),
];

/// Namespace prefixes that Word, Excel and PowerPoint open as documents: Word 2003 XML
/// (`…/office/word/2003/wordml`), SpreadsheetML (`urn:schemas-microsoft-com:office:spreadsheet`),
/// Flat OPC (`…/office/2006/xmlPackage`) and bare Open XML parts.
const OFFICE_NS_PREFIXES: &[&str] = &[
    "urn:schemas-microsoft-com:office:",
    "http://schemas.microsoft.com/office/",
    "http://schemas.openxmlformats.org/",
    "http://purl.oclc.org/ooxml/",
];

/// Windows shell XML: library and search-connector descriptions point Explorer at remote
/// shares as soon as they are opened or previewed.
const SHELL_NS_PREFIX: &str = "http://schemas.microsoft.com/windows/";

/// Deepest element nesting followed before the document is called unverifiable.
const MAX_DEPTH: usize = 4096;

/// What a markup document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlClass {
    /// Office opens it as a document (macros, DDE, remote templates, OLE links and all).
    Office(String),
    /// The root element is XHTML, or `html` in no namespace (a well-formed HTML page, whose
    /// DOCTYPE is then the page's, not a data file's entity store).
    Xhtml,
    /// The root element is SVG.
    Svg,
    /// A Windows shell description (`.library-ms`, `.searchConnector-ms`, `.settingcontent-ms`).
    Shell(String),
    /// Well-formed, but a browser would style, script or expand it, or it is too deep or wide
    /// to verify: never plain data.
    Active(String),
    /// Well-formed XML with nothing active anywhere in it.
    Data,
    /// Starts like markup but is not well-formed XML (or not in a decodable encoding).
    Malformed(String),
}

/// Classifies `bytes` when they start (after a BOM and whitespace) with `<`; `None` for
/// anything that does not look like markup at all.
pub fn sniff(bytes: &[u8]) -> Option<XmlClass> {
    let text = match decode(bytes) {
        Ok(text) => text,
        Err(why) => {
            // Undecodable: still markup if its first visible byte is `<` (ASCII-compatible
            // encodings), and then it is markup that did not parse.
            let start = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            let first = start.iter().find(|b| !b.is_ascii_whitespace());
            return (first == Some(&b'<')).then_some(XmlClass::Malformed(why));
        }
    };
    if !text.trim_start().starts_with('<') {
        return None;
    }
    Some(classify(&text))
}

/// The document as UTF-8, decoded the way an XML reader would: a BOM wins, then the encoding
/// the XML declaration names, else UTF-8 — each without a single replacement. A declared
/// encoding we cannot follow byte for byte (UTF-7, UTF-16 without a BOM, ISO-2022-JP, EBCDIC)
/// is an error: another reader could see markup where we see text.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
    let strict = |enc: &'static Encoding, body: &[u8]| {
        enc.decode_without_bom_handling_and_without_replacement(body)
            .map(|t| Cow::Owned(t.into_owned()))
            .ok_or_else(|| format!("not valid {}", enc.name()))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return strict(UTF_16LE, rest);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return strict(UTF_16BE, rest);
    }
    let (body, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let declared = match declared_encoding(body) {
        Some(label) => Some(
            Encoding::for_label(label.trim().as_bytes())
                .filter(|e| e.is_ascii_compatible() && *e != encoding_rs::ISO_2022_JP)
                .ok_or_else(|| format!("declared encoding {label:?} cannot be verified"))?,
        ),
        None => None,
    };
    match declared {
        Some(enc) if !bom && enc != UTF_8 => strict(enc, body),
        _ => std::str::from_utf8(body)
            .map(Cow::Borrowed)
            .map_err(|_| "not UTF-8 and no other encoding declared".to_string()),
    }
}

/// The `encoding` pseudo-attribute of a leading XML declaration.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(512)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// Namespace bindings in scope: per prefix, a stack of URIs (innermost last), so a lookup
/// costs the same however many declarations a document piles up.
#[derive(Default)]
struct Scopes {
    by_prefix: HashMap<String, Vec<String>>,
}

impl Scopes {
    fn bind(&mut self, prefix: &str, uri: String) {
        self.by_prefix
            .entry(prefix.to_string())
            .or_default()
            .push(uri);
    }

    fn unbind(&mut self, prefixes: &[String]) {
        for prefix in prefixes {
            if let Some(uris) = self.by_prefix.get_mut(prefix) {
                uris.pop();
            }
        }
    }

    /// The namespace bound to `prefix` (`xml` is always bound; `xmlns=""` undeclares the
    /// default namespace).
    fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some("http://www.w3.org/XML/1998/namespace");
        }
        self.by_prefix
            .get(prefix)
            .and_then(|uris| uris.last())
            .map(String::as_str)
            .filter(|ns| !(prefix.is_empty() && ns.is_empty()))
    }
}

fn classify(text: &str) -> XmlClass {
    match walk(text) {
        Ok(class) => class,
        Err(why) => XmlClass::Malformed(why),
    }
}

/// Walks the whole document; `Err` is a well-formedness failure.
fn walk(text: &str) -> Result<XmlClass, String> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;

    // Per open element, the prefixes it declared (empty, so no allocation, for most).
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut scopes = Scopes::default();
    let mut seen_root = false;
    let mut seen_markup = false;
    let mut doctype = false;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {at}: {e}"))?;
        match event {
            Event::Decl(_) => {
                if seen_markup {
                    return Err("XML declaration after the start of the document".into());
                }
            }
            Event::PI(pi) => {
                let target = pi.target().to_ascii_lowercase();
                if target == "mso-application" {
                    return Ok(XmlClass::Office(format!(
                        "<?mso-application {}?> (Office opens it as a document)",
                        pi.content().trim()
                    )));
                }
                if target == "xml-stylesheet" {
                    return Ok(XmlClass::Active(
                        "<?xml-stylesheet?> (a browser renders it through a stylesheet)".into(),
                    ));
                }
                if target == "xml" {
                    return Err("XML declaration after the start of the document".into());
                }
            }
            Event::DocType(_) => {
                if seen_root || doctype {
                    return Err("DOCTYPE out of place".into());
                }
                doctype = true;
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                if stack.is_empty() && seen_root {
                    return Err("more than one root element".into());
                }
                // Namespace declarations first: the element's own name resolves against them.
                let mut declared: Vec<String> = Vec::new();
                // A set, not quick-xml's pairwise check: an element with 100 000 attributes
                // must cost 100 000 steps, not 10^10.
                let mut keys: HashSet<&str> = HashSet::new();
                let mut attr_prefixes: Vec<&str> = Vec::new();
                for attr in e.attributes().with_checks(false) {
                    let attr = attr.map_err(|err| format!("attribute error: {err}"))?;
                    let key = attr.key.into_inner();
                    if !keys.insert(key) {
                        return Err(format!("attribute {key} appears twice"));
                    }
                    let value = quick_xml::escape::unescape(&attr.value)
                        .map_err(|err| format!("attribute {key}: {err}"))?;
                    let prefix = if key == "xmlns" {
                        Some("")
                    } else {
                        key.strip_prefix("xmlns:")
                    };
                    match prefix {
                        Some(prefix) => {
                            if !prefix.is_empty() && value.is_empty() {
                                return Err(format!("prefix {prefix} bound to nothing"));
                            }
                            if prefix == "xmlns" {
                                return Err("the xmlns prefix cannot be declared".into());
                            }
                            scopes.bind(prefix, value.into_owned());
                            declared.push(prefix.to_string());
                        }
                        None => {
                            if let Some((p, _)) = key.split_once(':') {
                                attr_prefixes.push(p);
                            }
                        }
                    }
                }
                for p in attr_prefixes {
                    if scopes.resolve(p).is_none() {
                        return Err(format!("attribute prefix {p} is not declared"));
                    }
                }
                let qname = e.name().into_inner();
                let (prefix, local) = match qname.split_once(':') {
                    Some((p, l)) => (p, l),
                    None => ("", qname),
                };
                let ns = match scopes.resolve(prefix) {
                    Some(ns) => ns,
                    None if prefix.is_empty() => "",
                    None => return Err(format!("element prefix {prefix} is not declared")),
                };
                if !seen_root {
                    seen_root = true;
                    if let Some(class) = classify_root(ns, local) {
                        return Ok(class);
                    }
                    if doctype {
                        return Ok(XmlClass::Active(
                            "DOCTYPE (entities and external DTDs a browser may expand or fetch)"
                                .into(),
                        ));
                    }
                }
                if let Some(class) = classify_element(ns, qname) {
                    return Ok(class);
                }
                if matches!(event, Event::Empty(_)) {
                    scopes.unbind(&declared);
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Ok(XmlClass::Active(format!(
                            "elements nested over {MAX_DEPTH} deep (not verified)"
                        )));
                    }
                    stack.push(declared);
                }
            }
            Event::End(_) => {
                let declared = stack.pop().ok_or("unbalanced end tag")?;
                scopes.unbind(&declared);
            }
            Event::Text(t) => {
                if stack.is_empty() && !t.trim().is_empty() {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(_) => {
                if stack.is_empty() {
                    return Err("CDATA outside the root element".into());
                }
            }
            Event::GeneralRef(r) => {
                if stack.is_empty() {
                    return Err("entity reference outside the root element".into());
                }
                match r.resolve_char_ref() {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let name: &str = &r;
                        if !matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") {
                            return Err(format!("undefined entity &{name};"));
                        }
                    }
                    Err(err) => return Err(format!("bad character reference: {err}")),
                }
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
        seen_markup = true;
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    if !seen_root {
        return Err("no root element".into());
    }
    Ok(XmlClass::Data)
}

/// What the root element alone decides.
fn classify_root(ns: &str, local: &str) -> Option<XmlClass> {
    // Word's "save as web page" roots its HTML in the old REC-html40 namespace, with Office
    // and VML namespaces below: a page, converted to text, not an Office document.
    let html_ns = ns.is_empty() || ns == "http://www.w3.org/TR/REC-html40";
    if ns == XHTML_NS || html_ns && local.eq_ignore_ascii_case("html") {
        return Some(XmlClass::Xhtml);
    }
    if ns == SVG_NS {
        return Some(XmlClass::Svg);
    }
    if ns.starts_with(SHELL_NS_PREFIX) {
        return Some(XmlClass::Shell(format!(
            "root <{local}> in {ns} (Windows shell description)"
        )));
    }
    // `.settingcontent-ms` has no namespace; its root names it.
    if ns.is_empty() && local.eq_ignore_ascii_case("PCSettings") {
        return Some(XmlClass::Shell(
            "root <PCSettings> (Windows settings shortcut)".into(),
        ));
    }
    None
}

/// What one element (the root included) decides wherever it sits.
fn classify_element(ns: &str, qname: &str) -> Option<XmlClass> {
    if OFFICE_NS_PREFIXES.iter().any(|p| ns.starts_with(p)) {
        return Some(XmlClass::Office(format!(
            "<{qname}> in {ns} (Office opens it as a document)"
        )));
    }
    if ns.starts_with(SHELL_NS_PREFIX) {
        return Some(XmlClass::Shell(format!(
            "<{qname}> in {ns} (Windows shell description)"
        )));
    }
    ACTIVE_NS
        .iter()
        .find(|(active, _)| ns == *active)
        .map(|(_, what)| {
            XmlClass::Active(format!("{what} <{qname}> (a browser renders or runs it)"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> XmlClass {
        sniff(s.as_bytes()).expect("markup")
    }

    #[test]
    fn plain_data_is_data_only_when_well_formed() {
        assert_eq!(
            class("<a><b x=\"1\">t &amp; &#x41;</b></a>"),
            XmlClass::Data
        );
        assert!(matches!(class("<a><b></a>"), XmlClass::Malformed(_)));
        assert!(matches!(class("<a>&nbsp;</a>"), XmlClass::Malformed(_)));
        assert!(matches!(class("<a x='1' x='2'/>"), XmlClass::Malformed(_)));
        assert!(matches!(class("<a/><b/>"), XmlClass::Malformed(_)));
        assert!(matches!(class("<p:a/>"), XmlClass::Malformed(_)));
        assert_eq!(sniff(b"hello <a/>"), None);
    }

    #[test]
    fn namespace_uris_written_with_character_references_still_count() {
        let doc = "<d><h:script xmlns:h=\"http&#58;//www.w3.org/1999/xhtml\">x</h:script></d>";
        assert!(matches!(class(doc), XmlClass::Active(_)));
    }

    #[test]
    fn undeclaring_the_default_namespace_leaves_elements_in_none() {
        let doc = "<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        assert_eq!(class(doc), XmlClass::Svg);
        let doc = "<a xmlns=\"urn:x\"><b xmlns=\"\"><c/></b></a>";
        assert_eq!(class(doc), XmlClass::Data);
    }

    #[test]
    fn word_web_pages_are_html_even_with_office_namespaces() {
        let page = "<html xmlns:o=\"urn:schemas-microsoft-com:office:office\" \
            xmlns=\"http://www.w3.org/TR/REC-html40\"><body><o:p>x</o:p></body></html>";
        assert_eq!(class(page), XmlClass::Xhtml);
    }

    #[test]
    fn encodings_another_reader_could_decode_differently_are_not_data() {
        let utf7 = b"<?xml version=\"1.0\" encoding=\"UTF-7\"?><d>+ADw-x/+AD4-</d>";
        assert!(matches!(sniff(utf7), Some(XmlClass::Malformed(_))));
        let utf16 = b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><d/>";
        assert!(matches!(sniff(utf16), Some(XmlClass::Malformed(_))));
    }

    #[test]
    fn declared_non_utf8_encodings_are_decoded() {
        let mut doc = b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>".to_vec();
        doc.extend_from_slice(&encoding_rs::SHIFT_JIS.encode("見積").0);
        doc.extend_from_slice(b"</a>");
        assert_eq!(sniff(&doc), Some(XmlClass::Data));
    }
}
