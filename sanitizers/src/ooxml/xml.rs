//! A small, namespace-aware XML tree for Office parts.
//!
//! Owns: parsing a part into a tree (quick-xml underneath), resolving each element's and
//! attribute's namespace, and serialising the tree back as UTF-8 XML.
//! Invariants: text and attribute values are kept in their escaped form and written back as
//! they were (so nothing is double-escaped or unescaped by accident); DOCTYPE declarations
//! (XXE, entity bombs) and undefined entities are malformed; comments and processing
//! instructions are dropped; nesting is bounded so neither parsing nor writing can overflow
//! the stack.
//! Must never: expand an entity other than the five predefined ones and character references.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{Error, Result};

/// Deepest element nesting accepted (Office documents stay far below this).
const MAX_DEPTH: usize = 256;

/// A node of the tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Text, escaped as in the source.
    Text(String),
    /// A CDATA section's content.
    CData(String),
}

/// An element with its resolved namespace.
#[derive(Debug, Clone)]
pub struct Element {
    /// The qualified name as written (`w:r`).
    pub name: String,
    /// The element's namespace URI ("" when none).
    pub ns: String,
    /// Attributes in source order.
    pub attrs: Vec<Attr>,
    /// Child nodes.
    pub children: Vec<Node>,
}

/// An attribute with its resolved namespace.
#[derive(Debug, Clone)]
pub struct Attr {
    /// The qualified name as written (`r:id`).
    pub name: String,
    /// The attribute's namespace URI ("" for unprefixed attributes).
    pub ns: String,
    /// The value, escaped as in the source.
    pub raw: String,
}

impl Attr {
    /// The local part of the name.
    pub fn local(&self) -> &str {
        local_of(&self.name)
    }
    /// The unescaped value.
    pub fn value(&self) -> String {
        unescape(&self.raw)
    }
}

impl Element {
    /// The local part of the name.
    pub fn local(&self) -> &str {
        local_of(&self.name)
    }

    /// True when the element has this namespace (any of `uris`) and local name.
    pub fn is(&self, uris: &[&str], local: &str) -> bool {
        self.local() == local && uris.contains(&self.ns.as_str())
    }

    /// The unescaped value of an attribute by qualified name.
    pub fn attr(&self, name: &str) -> Option<String> {
        self.attrs.iter().find(|a| a.name == name).map(Attr::value)
    }

    /// The unescaped value of an attribute by namespace and local name.
    pub fn attr_ns(&self, uris: &[&str], local: &str) -> Option<String> {
        self.attrs
            .iter()
            .find(|a| a.local() == local && uris.contains(&a.ns.as_str()))
            .map(Attr::value)
    }

    /// Child elements.
    pub fn children_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// All text below this element, unescaped, in document order.
    pub fn text(&self) -> String {
        let mut out = String::new();
        collect_text(self, &mut out, 0);
        out
    }
}

fn collect_text(el: &Element, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for child in &el.children {
        match child {
            Node::Text(t) => out.push_str(&unescape(t)),
            Node::CData(t) => out.push_str(t),
            Node::Element(e) => collect_text(e, out, depth + 1),
        }
    }
}

/// A parsed part.
#[derive(Debug, Clone)]
pub struct Document {
    /// The root element.
    pub root: Element,
}

impl Document {
    /// Parses a part.
    ///
    /// # Errors
    /// Not UTF-8, not well-formed, a DOCTYPE, an undefined entity, nesting over the limit.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|_| Error::unsupported("XML part is not UTF-8"))?;
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;

        // Each open element, with the namespace scope it opened.
        let mut stack: Vec<(Element, Vec<(String, String)>)> = Vec::new();
        let mut scopes: Vec<HashMap<String, String>> = vec![HashMap::from([
            ("xml".to_string(), "http://www.w3.org/XML/1998/namespace".to_string()),
        ])];
        let mut root: Option<Element> = None;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| Error::malformed(format!("XML error at byte {}: {e}", reader.buffer_position())))?;
            match event {
                Event::Start(e) | Event::Empty(e) if root.is_some() => {
                    let _ = e;
                    return Err(Error::malformed("XML has more than one root element"));
                }
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let is_empty = matches!(event, Event::Empty(_));
                    let name = e.name().as_ref().to_string();
                    let mut raw_attrs = Vec::new();
                    let mut scope = scopes.last().cloned().unwrap_or_default();
                    for attr in e.attributes().with_checks(true) {
                        let attr = attr.map_err(|err| Error::malformed(format!("attribute error: {err}")))?;
                        let key = attr.key.as_ref().to_string();
                        let raw = attr.value.to_string();
                        if key == "xmlns" {
                            scope.insert(String::new(), unescape(&raw));
                        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                            scope.insert(prefix.to_string(), unescape(&raw));
                        }
                        check_refs(&raw)?;
                        raw_attrs.push((key, raw));
                    }
                    let ns = resolve(&scope, &name, true);
                    let attrs = raw_attrs
                        .into_iter()
                        .map(|(key, raw)| Attr {
                            ns: if key.starts_with("xmlns") { String::new() } else { resolve(&scope, &key, false) },
                            name: key,
                            raw,
                        })
                        .collect();
                    let el = Element { name, ns, attrs, children: Vec::new() };
                    if is_empty {
                        attach(&mut stack, &mut root, Node::Element(el));
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return Err(Error::limit_exceeded("XML nested too deeply"));
                        }
                        scopes.push(scope);
                        stack.push((el, Vec::new()));
                    }
                }
                Event::End(_) => {
                    let Some((el, _)) = stack.pop() else {
                        return Err(Error::malformed("unbalanced end tag"));
                    };
                    scopes.pop();
                    attach(&mut stack, &mut root, Node::Element(el));
                }
                Event::Text(t) => {
                    if let Some((parent, _)) = stack.last_mut() {
                        push_text(parent, &t);
                    } else if !t.trim().is_empty() {
                        return Err(Error::malformed("text outside the root element"));
                    }
                }
                Event::GeneralRef(r) => {
                    let entity = format!("&{};", &*r);
                    check_refs(&entity)?;
                    if let Some((parent, _)) = stack.last_mut() {
                        push_text(parent, &entity);
                    }
                }
                Event::CData(c) => {
                    if let Some((parent, _)) = stack.last_mut() {
                        parent.children.push(Node::CData(c.to_string()));
                    }
                }
                Event::DocType(_) => return Err(Error::malformed("DOCTYPE in an Office part (entity expansion risk)")),
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() {
            return Err(Error::malformed("XML ends inside an element"));
        }
        let root = root.ok_or_else(|| Error::malformed("XML has no root element"))?;
        Ok(Document { root })
    }

    /// Serialises the tree as UTF-8 with a standalone declaration.
    pub fn write(&self) -> Vec<u8> {
        let mut out = String::with_capacity(4096);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n");
        write_element(&self.root, &mut out);
        out.into_bytes()
    }
}

fn push_text(parent: &mut Element, text: &str) {
    if let Some(Node::Text(prev)) = parent.children.last_mut() {
        prev.push_str(text);
    } else {
        parent.children.push(Node::Text(text.to_string()));
    }
}

fn attach(stack: &mut [(Element, Vec<(String, String)>)], root: &mut Option<Element>, node: Node) {
    match stack.last_mut() {
        Some((parent, _)) => parent.children.push(node),
        None => {
            if let Node::Element(el) = node {
                *root = Some(el);
            }
        }
    }
}

fn resolve(scope: &HashMap<String, String>, qname: &str, default_applies: bool) -> String {
    match qname.split_once(':') {
        Some((prefix, _)) => scope.get(prefix).cloned().unwrap_or_default(),
        None if default_applies => scope.get("").cloned().unwrap_or_default(),
        None => String::new(),
    }
}

fn local_of(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Rejects references other than the predefined entities and character references.
fn check_refs(raw: &str) -> Result<()> {
    let mut rest = raw;
    while let Some(start) = rest.find('&') {
        let after = &rest[start + 1..];
        let end = after.find(';').ok_or_else(|| Error::malformed("unterminated entity reference"))?;
        let name = &after[..end];
        let ok = matches!(name, "lt" | "gt" | "amp" | "apos" | "quot")
            || name
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16).is_ok())
                .or_else(|| name.strip_prefix('#').map(|d| d.parse::<u32>().is_ok()))
                .unwrap_or(false);
        if !ok {
            return Err(Error::malformed(format!("undefined entity &{name};")));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Unescapes the predefined entities and character references.
pub fn unescape(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let ch = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => name
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Escapes a string for an attribute value in double quotes.
pub fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn write_element(el: &Element, out: &mut String) {
    out.push('<');
    out.push_str(&el.name);
    for a in &el.attrs {
        out.push(' ');
        out.push_str(&a.name);
        out.push_str("=\"");
        // Raw values are already escaped, but a value that was single-quoted may hold `"`.
        out.push_str(&a.raw.replace('"', "&quot;").replace('<', "&lt;"));
        out.push('"');
    }
    if el.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in &el.children {
        match child {
            Node::Element(e) => write_element(e, out),
            Node::Text(t) => out.push_str(t),
            Node::CData(c) => {
                out.push_str("<![CDATA[");
                out.push_str(c);
                out.push_str("]]>");
            }
        }
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resolves_namespaces() {
        let src = br#"<?xml version="1.0"?><a:x xmlns:a="urn:a" xmlns:r="urn:r"><a:y r:id="rId1" v='say "hi"'>1 &amp; 2</a:y><!-- c --><z/></a:x>"#;
        let doc = Document::parse(src).unwrap();
        let y = doc.root.children_elements().next().unwrap();
        assert!(y.is(&["urn:a"], "y"));
        assert_eq!(y.attr_ns(&["urn:r"], "id").as_deref(), Some("rId1"));
        assert_eq!(y.text(), "1 & 2");
        let out = String::from_utf8(doc.write()).unwrap();
        assert!(out.ends_with(r#"<a:x xmlns:a="urn:a" xmlns:r="urn:r"><a:y r:id="rId1" v="say &quot;hi&quot;">1 &amp; 2</a:y><z/></a:x>"#), "{out}");
        Document::parse(out.as_bytes()).unwrap();
    }

    #[test]
    fn rejects_doctype_and_unknown_entities() {
        assert!(Document::parse(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>").unwrap_err().is_malformed());
        assert!(Document::parse(b"<x>&a;</x>").unwrap_err().is_malformed());
        assert!(Document::parse(b"<x><y></x>").is_err());
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        assert!(Document::parse(deep.as_bytes()).is_err());
    }
}
