//! A small, namespace-aware XML tree for Office parts, stored flat.
//!
//! Owns: parsing a part (quick-xml underneath) into an arena of nodes and attributes, resolving
//! each element's and attribute's namespace, marking nodes and attributes removed or unwrapped,
//! and serialising what is left as UTF-8 XML.
//! Invariants: text and attribute values are kept in their escaped form (borrowed from the
//! input where possible) and written back as they were, so nothing is double-escaped or
//! unescaped by accident; DOCTYPE declarations (XXE, entity bombs) and undefined entities are
//! malformed; comments and processing instructions are dropped; nesting is bounded so neither
//! parsing nor writing can overflow the stack. Removal only ever marks: node ids stay valid.
//! Must never: expand an entity other than the five predefined ones and character references.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{Error, Result};

/// Deepest element nesting accepted (Office documents stay far below this).
const MAX_DEPTH: usize = 256;

/// Index of a node in its document.
pub type NodeId = usize;

const NONE: usize = usize::MAX;
/// No child or sibling, in a node's `u32` links.
const NO_LINK: u32 = u32::MAX;

/// Most nodes and attributes a part may have: links are `u32`, and no Office part comes
/// near this (a 100 MB sheet has a few million).
const MAX_NODES: usize = (u32::MAX - 1) as usize;

/// A qualified name as written and the namespace it resolved to, interned per document:
/// every `w:r` of a part shares one.
#[derive(Debug)]
pub struct Name {
    qname: Box<str>,
    ns: Rc<str>,
    local: usize,
}

impl Name {
    fn new(qname: &str, ns: Rc<str>) -> Rc<Self> {
        Rc::new(Self {
            qname: qname.into(),
            ns,
            local: qname.rfind(':').map_or(0, |i| i + 1),
        })
    }
    /// The qualified name as written (`w:r`).
    pub fn qname(&self) -> &str {
        &self.qname
    }
    /// The namespace URI ("" when none).
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// The local part (`r`).
    pub fn local(&self) -> &str {
        self.qname.get(self.local..).unwrap_or("")
    }
}

/// What a node is. Kept small (a node is one of tens of thousands in a large part): names
/// are shared, attribute ranges and links are `u32`.
#[derive(Debug, Clone)]
pub enum Kind<'a> {
    /// An element.
    Element {
        /// Its name and namespace.
        name: Rc<Name>,
        /// Its attributes, as a range of [`Document::attrs`].
        attrs: Range<u32>,
    },
    /// Text, escaped as in the source.
    Text(Cow<'a, str>),
    /// A CDATA section's content.
    CData(Cow<'a, str>),
}

/// One node and its links.
#[derive(Debug, Clone)]
pub struct NodeData<'a> {
    /// What it is.
    pub kind: Kind<'a>,
    first_child: u32,
    next_sibling: u32,
    /// Removed with everything below it.
    pub removed: bool,
    /// Its own tags are dropped; its children stay in its place.
    pub unwrapped: bool,
}

/// An attribute with its resolved namespace.
#[derive(Debug, Clone)]
pub struct Attr<'a> {
    name: Rc<Name>,
    /// The value, escaped as in the source.
    pub raw: Cow<'a, str>,
    /// Dropped from the output.
    pub removed: bool,
}

impl Attr<'_> {
    /// The qualified name as written (`r:id`).
    pub fn qname(&self) -> &str {
        self.name.qname()
    }
    /// The namespace URI ("" for unprefixed attributes).
    pub fn ns(&self) -> &str {
        self.name.ns()
    }
    /// The local part of the name.
    pub fn local(&self) -> &str {
        self.name.local()
    }
    /// The unescaped value.
    pub fn value(&self) -> String {
        unescape(&self.raw)
    }
}

/// A parsed part.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    nodes: Vec<NodeData<'a>>,
    attrs: Vec<Attr<'a>>,
    root: NodeId,
}

impl<'a> Document<'a> {
    /// Parses a part.
    ///
    /// # Errors
    /// Not UTF-8, not well-formed, a DOCTYPE, an undefined entity, nesting over the limit.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text =
            std::str::from_utf8(bytes).map_err(|_| Error::unsupported("XML part is not UTF-8"))?;
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;

        let mut doc = Document {
            nodes: Vec::with_capacity(text.len() / 24),
            attrs: Vec::new(),
            root: NONE,
        };
        // Open elements: (id, last child so far, namespace bindings it declared). Bindings
        // live on one stack searched from the top, so elements that declare none (most) cost
        // nothing.
        let mut stack: Vec<(NodeId, usize, usize)> = Vec::new();
        let mut bindings: Vec<(String, Rc<str>)> = vec![(
            "xml".to_string(),
            Rc::from("http://www.w3.org/XML/1998/namespace"),
        )];
        let empty: Rc<str> = Rc::from("");
        let mut names = Names::new(empty.clone());
        loop {
            let event = reader.read_event().map_err(|e| {
                Error::malformed(format!(
                    "XML error at byte {}: {e}",
                    reader.buffer_position()
                ))
            })?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    // quick-xml reads `<\n/>` as an element with no name; written back it is
                    // `</>`, which no parser reads.
                    if e.name().as_ref().is_empty() {
                        return Err(Error::malformed("XML element without a name"));
                    }
                    if stack.is_empty() && doc.root != NONE {
                        return Err(Error::malformed("XML has more than one root element"));
                    }
                    let is_empty = matches!(event, Event::Empty(_));
                    // First pass (only when the tag declares any): namespace declarations, so
                    // that every name below resolves against the bindings this element opens.
                    let mut declared = 0;
                    if e.attributes_raw().contains("xmlns") {
                        for attr in e.attributes().with_checks(false) {
                            let attr = attr.map_err(|err| {
                                Error::malformed(format!("attribute error: {err}"))
                            })?;
                            let key = attr.key.as_ref();
                            let prefix = if key == "xmlns" {
                                Some("")
                            } else {
                                key.strip_prefix("xmlns:")
                            };
                            if let Some(prefix) = prefix {
                                check_refs(&attr.value)?;
                                let uri = intern(&bindings, &unescape(&attr.value));
                                bindings.push((prefix.to_string(), uri));
                                declared += 1;
                            }
                        }
                        if declared > 0 {
                            names.bindings_changed();
                        }
                    }
                    let name = names.get(e.name().as_ref(), &bindings, true);
                    let start = doc.attrs.len();
                    for attr in e.attributes().with_checks(true) {
                        let attr = attr
                            .map_err(|err| Error::malformed(format!("attribute error: {err}")))?;
                        let key = attr.key.as_ref();
                        let raw = reborrow(text, &attr.value);
                        check_refs(&raw)?;
                        // Declarations belong to no namespace of their own.
                        let name = if key.starts_with("xmlns") {
                            names.declaration(key)
                        } else {
                            names.get(key, &bindings, false)
                        };
                        doc.attrs.push(Attr {
                            name,
                            raw,
                            removed: false,
                        });
                    }
                    if doc.attrs.len() > MAX_NODES {
                        return Err(Error::limit_exceeded("XML part has too many attributes"));
                    }
                    let attrs = start as u32..doc.attrs.len() as u32;
                    let id = doc.push(&mut stack, Kind::Element { name, attrs })?;
                    if doc.root == NONE {
                        doc.root = id;
                    }
                    if is_empty {
                        if declared > 0 {
                            bindings.truncate(bindings.len() - declared);
                            names.bindings_changed();
                        }
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return Err(Error::limit_exceeded("XML nested too deeply"));
                        }
                        stack.push((id, NONE, declared));
                    }
                }
                Event::End(_) => {
                    let Some((_, _, declared)) = stack.pop() else {
                        return Err(Error::malformed("unbalanced end tag"));
                    };
                    if declared > 0 {
                        bindings.truncate(bindings.len() - declared);
                        names.bindings_changed();
                    }
                }
                Event::Text(t) => {
                    if !stack.is_empty() {
                        doc.push(&mut stack, Kind::Text(reborrow(text, &t)))?;
                    } else if !t.trim().is_empty() {
                        return Err(Error::malformed("text outside the root element"));
                    }
                }
                Event::GeneralRef(r) => {
                    let entity = format!("&{};", &*r);
                    check_refs(&entity)?;
                    if !stack.is_empty() {
                        doc.push(&mut stack, Kind::Text(Cow::Owned(entity)))?;
                    }
                }
                Event::CData(c) => {
                    if !stack.is_empty() {
                        doc.push(&mut stack, Kind::CData(reborrow(text, &c)))?;
                    }
                }
                Event::DocType(_) => {
                    return Err(Error::malformed(
                        "DOCTYPE in an Office part (entity expansion risk)",
                    ))
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() {
            return Err(Error::malformed("XML ends inside an element"));
        }
        if doc.root == NONE {
            return Err(Error::malformed("XML has no root element"));
        }
        Ok(doc)
    }

    /// Appends a node as the last child of the innermost open element.
    fn push(&mut self, stack: &mut [(NodeId, usize, usize)], kind: Kind<'a>) -> Result<NodeId> {
        let id = self.nodes.len();
        if id >= MAX_NODES {
            return Err(Error::limit_exceeded("XML part has too many nodes"));
        }
        self.nodes.push(NodeData {
            kind,
            first_child: NO_LINK,
            next_sibling: NO_LINK,
            removed: false,
            unwrapped: false,
        });
        if let Some((parent, last, _)) = stack.last_mut() {
            if *last == NONE {
                self.nodes[*parent].first_child = id as u32;
            } else {
                self.nodes[*last].next_sibling = id as u32;
            }
            *last = id;
        }
        Ok(id)
    }

    /// The root element.
    pub fn root(&self) -> NodeId {
        self.root
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &NodeData<'a> {
        &self.nodes[id]
    }

    /// Children of a node, removed ones included (check [`NodeData::removed`]).
    pub fn children(&self, id: NodeId) -> Children<'_, 'a> {
        Children {
            doc: self,
            next: self.nodes[id].first_child,
        }
    }

    /// Child elements that are not removed.
    pub fn child_elements(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.children(id)
            .filter(|&c| !self.nodes[c].removed && self.is_element(c))
    }

    /// True for element nodes.
    pub fn is_element(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].kind, Kind::Element { .. })
    }

    /// The qualified name of an element ("" for other nodes).
    pub fn name(&self, id: NodeId) -> &str {
        match &self.nodes[id].kind {
            Kind::Element { name, .. } => name.qname(),
            _ => "",
        }
    }

    /// The local name of an element ("" for other nodes).
    pub fn local(&self, id: NodeId) -> &str {
        match &self.nodes[id].kind {
            Kind::Element { name, .. } => name.local(),
            _ => "",
        }
    }

    /// The first child of a node, removed or not.
    pub fn first_child(&self, id: NodeId) -> Option<NodeId> {
        let c = self.nodes[id].first_child;
        (c != NO_LINK).then_some(c as usize)
    }

    /// The next sibling of a node, removed or not.
    pub fn next_sibling(&self, id: NodeId) -> Option<NodeId> {
        let c = self.nodes[id].next_sibling;
        (c != NO_LINK).then_some(c as usize)
    }

    /// The namespace URI of an element ("" for other nodes).
    pub fn ns(&self, id: NodeId) -> &str {
        match &self.nodes[id].kind {
            Kind::Element { name, .. } => name.ns(),
            _ => "",
        }
    }

    /// True when the node is an element with this namespace (any of `uris`) and local name.
    pub fn is(&self, id: NodeId, uris: &[&str], local: &str) -> bool {
        self.local(id) == local && uris.contains(&self.ns(id))
    }

    /// Where an element's attributes are in `attrs` (empty for other nodes).
    fn attr_range(&self, id: NodeId) -> Range<usize> {
        match &self.nodes[id].kind {
            Kind::Element { attrs, .. } => attrs.start as usize..attrs.end as usize,
            _ => 0..0,
        }
    }

    /// The live attributes of an element.
    pub fn attrs(&self, id: NodeId) -> impl Iterator<Item = &Attr<'a>> {
        self.attrs[self.attr_range(id)]
            .iter()
            .filter(|a| !a.removed)
    }

    /// The attributes of an element, for marking removals.
    pub fn attrs_mut(&mut self, id: NodeId) -> &mut [Attr<'a>] {
        let range = self.attr_range(id);
        &mut self.attrs[range]
    }

    /// The unescaped value of an attribute by qualified name.
    pub fn attr(&self, id: NodeId, name: &str) -> Option<String> {
        self.attrs(id).find(|a| a.qname() == name).map(Attr::value)
    }

    /// The unescaped value of an attribute by namespace and local name.
    pub fn attr_ns(&self, id: NodeId, uris: &[&str], local: &str) -> Option<String> {
        self.attrs(id)
            .find(|a| a.local() == local && uris.contains(&a.ns()))
            .map(Attr::value)
    }

    /// All live text below a node, unescaped, in document order.
    pub fn text(&self, id: NodeId) -> String {
        let mut out = String::new();
        self.collect_text(id, &mut out, 0);
        out
    }

    fn collect_text(&self, id: NodeId, out: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for c in self.children(id) {
            let node = &self.nodes[c];
            if node.removed {
                continue;
            }
            match &node.kind {
                Kind::Text(t) => out.push_str(&unescape(t)),
                Kind::CData(t) => out.push_str(t),
                Kind::Element { .. } => self.collect_text(c, out, depth + 1),
            }
        }
    }

    /// Removes a node and everything below it from the output.
    pub fn remove(&mut self, id: NodeId) {
        self.nodes[id].removed = true;
    }

    /// Drops an element's own tags, keeping its children in its place.
    pub fn unwrap(&mut self, id: NodeId) {
        self.nodes[id].unwrapped = true;
    }

    /// Serialises what is left, with a standalone declaration.
    pub fn write(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.nodes.len() * 24);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n");
        self.write_node(self.root, &mut out);
        out.into_bytes()
    }

    fn write_node(&self, id: NodeId, out: &mut String) {
        let node = &self.nodes[id];
        if node.removed {
            return;
        }
        match &node.kind {
            Kind::Text(t) => out.push_str(t),
            Kind::CData(c) => {
                out.push_str("<![CDATA[");
                out.push_str(c);
                out.push_str("]]>");
            }
            Kind::Element { name, .. } => {
                if node.unwrapped {
                    for c in self.children(id) {
                        self.write_node(c, out);
                    }
                    return;
                }
                out.push('<');
                out.push_str(name.qname());
                for a in self.attrs(id) {
                    out.push(' ');
                    out.push_str(a.qname());
                    out.push_str("=\"");
                    // Raw values are already escaped, but a single-quoted value may hold `"`.
                    if a.raw.contains(['"', '<']) {
                        out.push_str(&a.raw.replace('"', "&quot;").replace('<', "&lt;"));
                    } else {
                        out.push_str(&a.raw);
                    }
                    out.push('"');
                }
                if self.children(id).all(|c| self.nodes[c].removed) {
                    out.push_str("/>");
                    return;
                }
                out.push('>');
                for c in self.children(id) {
                    self.write_node(c, out);
                }
                out.push_str("</");
                out.push_str(name.qname());
                out.push('>');
            }
        }
    }
}

/// Iterator over a node's children.
pub struct Children<'d, 'a> {
    doc: &'d Document<'a>,
    next: u32,
}

impl Iterator for Children<'_, '_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        if self.next == NO_LINK {
            return None;
        }
        let id = self.next as usize;
        self.next = self.doc.nodes[id].next_sibling;
        Some(id)
    }
}

/// Interned names and their resolved namespaces.
///
/// Element and attribute names repeat thousands of times (w:r, w:t, w:val): each is stored
/// once, with its namespace as an element and as an attribute cached beside it until the
/// bindings change (Office parts declare namespaces on the root element, so in practice that
/// happens once). One hash lookup per name.
struct Names {
    slots: HashMap<String, Slot, foldhash::fast::RandomState>,
    empty: Rc<str>,
}

struct Slot {
    as_element: Option<Rc<Name>>,
    as_attribute: Option<Rc<Name>>,
}

impl Names {
    fn new(empty: Rc<str>) -> Self {
        Self {
            slots: HashMap::default(),
            empty,
        }
    }

    /// The interned name with its namespace under the current bindings.
    fn get(&mut self, raw: &str, bindings: &[(String, Rc<str>)], is_element: bool) -> Rc<Name> {
        let empty = &self.empty;
        let slot = match self.slots.get_mut(raw) {
            Some(slot) => slot,
            None => self.slots.entry(raw.to_string()).or_insert(Slot {
                as_element: None,
                as_attribute: None,
            }),
        };
        let cached = if is_element {
            &mut slot.as_element
        } else {
            &mut slot.as_attribute
        };
        cached
            .get_or_insert_with(|| Name::new(raw, resolve(bindings, raw, is_element, empty)))
            .clone()
    }

    /// A namespace declaration's name (`xmlns`, `xmlns:w`), which is in no namespace.
    fn declaration(&mut self, raw: &str) -> Rc<Name> {
        let empty = self.empty.clone();
        let slot = match self.slots.get_mut(raw) {
            Some(slot) => slot,
            None => self.slots.entry(raw.to_string()).or_insert(Slot {
                as_element: None,
                as_attribute: None,
            }),
        };
        slot.as_attribute
            .get_or_insert_with(|| Name::new(raw, empty))
            .clone()
    }

    fn bindings_changed(&mut self) {
        for slot in self.slots.values_mut() {
            slot.as_element = None;
            slot.as_attribute = None;
        }
    }
}

/// Borrows `s` from `input` when it is a slice of it (quick-xml hands out borrowed text and
/// attribute values when nothing needed unescaping), so values cost no allocation.
fn reborrow<'a>(input: &'a str, s: &str) -> Cow<'a, str> {
    let base = input.as_ptr() as usize;
    let start = s.as_ptr() as usize;
    if start >= base && start + s.len() <= base + input.len() {
        let offset = start - base;
        if let Some(slice) = input.get(offset..offset + s.len()) {
            return Cow::Borrowed(slice);
        }
    }
    Cow::Owned(s.to_string())
}

/// Reuses an equal namespace string already bound, so most elements share one allocation.
fn intern(bindings: &[(String, Rc<str>)], uri: &str) -> Rc<str> {
    bindings
        .iter()
        .rev()
        .find(|(_, u)| &**u == uri)
        .map_or_else(|| Rc::from(uri), |(_, u)| u.clone())
}

fn resolve(
    bindings: &[(String, Rc<str>)],
    qname: &str,
    default_applies: bool,
    empty: &Rc<str>,
) -> Rc<str> {
    let prefix = match qname.split_once(':') {
        Some((prefix, _)) => prefix,
        None if default_applies => "",
        None => return empty.clone(),
    };
    bindings
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map_or_else(|| empty.clone(), |(_, uri)| uri.clone())
}

/// Rejects references other than the predefined entities and character references.
fn check_refs(raw: &str) -> Result<()> {
    let mut rest = raw;
    while let Some(start) = rest.find('&') {
        let after = &rest[start + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| Error::malformed("unterminated entity reference"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resolves_namespaces() {
        let src = br#"<?xml version="1.0"?><a:x xmlns:a="urn:a" xmlns:r="urn:r"><a:y r:id="rId1" v='say "hi"'>1 &amp; 2</a:y><!-- c --><z/></a:x>"#;
        let doc = Document::parse(src).unwrap();
        let y = doc.child_elements(doc.root()).next().unwrap();
        assert!(doc.is(y, &["urn:a"], "y"));
        assert_eq!(doc.attr_ns(y, &["urn:r"], "id").as_deref(), Some("rId1"));
        assert_eq!(doc.text(y), "1 & 2");
        let out = String::from_utf8(doc.write()).unwrap();
        assert!(out.ends_with(r#"<a:x xmlns:a="urn:a" xmlns:r="urn:r"><a:y r:id="rId1" v="say &quot;hi&quot;">1 &amp; 2</a:y><z/></a:x>"#), "{out}");
        Document::parse(out.as_bytes()).unwrap();
    }

    #[test]
    fn removal_and_unwrapping_only_mark() {
        let src = b"<r><keep>a</keep><gone>b</gone><wrap><in>c</in></wrap></r>";
        let mut doc = Document::parse(src).unwrap();
        let kids: Vec<_> = doc.child_elements(doc.root()).collect();
        doc.remove(kids[1]);
        doc.unwrap(kids[2]);
        assert_eq!(
            String::from_utf8(doc.write()).unwrap().lines().nth(1),
            Some("<r><keep>a</keep><in>c</in></r>")
        );
    }

    #[test]
    fn nodes_and_attributes_stay_small() {
        // Tens of thousands of each in a large part: their size is the parser's memory.
        assert!(std::mem::size_of::<NodeData<'_>>() <= 48);
        assert!(std::mem::size_of::<Attr<'_>>() <= 40);
    }

    #[test]
    fn rejects_doctype_and_unknown_entities() {
        assert!(
            Document::parse(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>")
                .unwrap_err()
                .is_malformed()
        );
        assert!(Document::parse(b"<x>&a;</x>").unwrap_err().is_malformed());
        assert!(Document::parse(b"<x><y></x>").is_err());
        assert!(Document::parse(b"<x/><y/>").is_err());
        let deep = "<a>".repeat(300) + &"</a>".repeat(300);
        assert!(Document::parse(deep.as_bytes()).is_err());
    }
}
