//! OpenDocument (odt, ods, odp): allowlist rebuild of the package and its XML.
//!
//! Owns: reading the package through the hardened ZIP reader, refusing encrypted packages
//! (manifest `encryption-data`), keeping only the members a document needs — `content.xml` and
//! `styles.xml` (of the document and of embedded chart/formula sub-documents), `meta.xml` when
//! metadata is kept, and pictures whose bytes match a picture format — filtering their XML, and
//! writing a new package with `mimetype` first and a manifest listing exactly what was kept.
//! Removed and reported: Basic and script libraries, dialogs, UI configurations, event
//! listeners and inline scripts, macro-running fields, OLE objects (their replacement picture
//! stays), plug-ins, applets, floating frames, DDE sources and connections, linked sections and
//! tables, external images, hyperlinks (by policy), signatures, thumbnails and settings; and
//! every formula that reaches outside the document (judged by [`crate::formula`], as in OOXML:
//! DDE, references into other files, web calls, hyperlinks) — a cell formula goes and the
//! cell keeps its cached value, a named expression or range goes whole, a condition goes.
//! Invariants: every kept XML part is re-serialised from our tree; nothing outside the
//! allowlist is copied; a second pass finds nothing to remove. Links and script handlers are
//! recognised by their namespace, never by the prefix a document chose for it.
//! Must never: copy a member it did not classify, or keep an external reference.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use crate::error::{Error, Result};
use crate::formula;
use crate::kind::FileKind;
use crate::ooxml::xml::{escape_attr, Document, NodeId};
use crate::policy::link_allowed;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;
use crate::util::short;

const MANIFEST_NS: &str = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0";
/// XLink: every link and picture reference (`xlink:href`, whatever the prefix).
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";
/// ODF scripts: event handler attributes.
const SCRIPT_NS: &str = "urn:oasis:names:tc:opendocument:xmlns:script:1.0";

/// Attributes (by local name) whose value is a formula or a cell address that may name
/// another file: cell and text-table formulas, validity and format conditions, named
/// expressions and ranges, conditional-format values, chart and filter ranges.
const FORMULA_ATTRS: &[&str] = &[
    "formula",
    "condition",
    "expression",
    "cell-range-address",
    "base-cell-address",
    "target-range-address",
    "source-cell-range",
];

/// Elements that go whole when one of their formula attributes reaches outside: a name or a
/// condition without its formula is not valid (`calcext:condition`, `style:map`). Elsewhere
/// only the attribute goes (a cell keeps its cached value, a validity its other settings).
const FORMULA_OWNERS: &[&str] = &["named-expression", "named-range", "condition", "map"];

/// Rebuilds OpenDocument packages.
pub struct OdfSanitizer;

/// What becomes of one member.
enum Fate {
    Xml,
    Picture,
    Drop(What, &'static str),
}

/// Elements removed whole, with what they are.
const REMOVED_ELEMENTS: &[(&str, What, &str)] = &[
    ("event-listeners", What::AutoAction, "event listeners"),
    ("event-listener", What::AutoAction, "event listener"),
    ("scripts", What::Macro, "document scripts"),
    ("script", What::Javascript, "inline script"),
    ("object-ole", What::OleObject, "embedded OLE object"),
    ("plugin", What::Multimedia, "plug-in"),
    ("applet", What::Activex, "Java applet"),
    ("floating-frame", What::ExternalReference, "floating frame"),
    ("dde-source", What::DataConnection, "DDE source"),
    (
        "dde-connection-decls",
        What::DataConnection,
        "DDE connections",
    ),
    ("dde-links", What::DataConnection, "DDE links"),
    ("section-source", What::ExternalReference, "linked section"),
    ("table-source", What::ExternalReference, "linked table"),
    ("database-ranges", What::DataConnection, "database ranges"),
    (
        "data-pilot-tables",
        What::DataConnection,
        "pivot tables from external data",
    ),
];

/// Elements whose tags go but whose text stays.
const UNWRAPPED_ELEMENTS: &[(&str, What, &str)] = &[
    ("execute-macro", What::Macro, "macro-running field"),
    ("dde-connection", What::DataConnection, "DDE field"),
];

fn classify(path: &str, strip_metadata: bool, sub_docs: &[String]) -> Fate {
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    };
    let top = dir.split('/').next().unwrap_or("");
    let in_doc = dir.is_empty() || sub_docs.iter().any(|d| d == dir);
    match (top, base) {
        ("Basic", _) | ("Scripts", _) => Fate::Drop(What::Macro, "macro library"),
        ("Dialogs", _) => Fate::Drop(What::Macro, "macro dialog"),
        ("Configurations2", _) => Fate::Drop(What::CustomUi, "UI configuration"),
        ("Thumbnails", _) => Fate::Drop(What::Metadata, "thumbnail of the document"),
        ("META-INF", b) if b.contains("signatures") => Fate::Drop(What::Signature, "signature"),
        ("Pictures", _) | ("ObjectReplacements", _) => Fate::Picture,
        _ if in_doc && (base == "content.xml" || base == "styles.xml") => Fate::Xml,
        _ if in_doc && base == "meta.xml" && !strip_metadata => Fate::Xml,
        _ if in_doc && base == "meta.xml" => Fate::Drop(What::Metadata, "document metadata"),
        _ if in_doc && base == "settings.xml" => {
            Fate::Drop(What::PrinterSettings, "view and printer settings")
        }
        _ if !in_doc && dir.starts_with("Object ") && base.starts_with("Pictures") => Fate::Picture,
        _ if dir.is_empty() && base.starts_with("Object ") => {
            Fate::Drop(What::OleObject, "embedded OLE object")
        }
        _ => Fate::Drop(What::UnknownPart, "member outside the allowlist"),
    }
}

/// True for pictures LibreOffice draws from its own pure decoders; SVG (script-capable) and
/// anything unrecognised are not copied.
fn picture_ok(bytes: &[u8]) -> bool {
    let starts = |m: &[u8]| bytes.starts_with(m);
    starts(b"\x89PNG\r\n\x1a\n")
        || starts(&[0xFF, 0xD8, 0xFF])
        || starts(b"GIF8")
        || starts(b"BM")
        || starts(b"II*\0")
        || starts(b"MM\0*")
        || starts(b"VCLMTF")
        || starts(&[0xD7, 0xCD, 0xC6, 0x9A])
        || starts(&[0x01, 0x00, 0x09, 0x00])
        || starts(&[0x02, 0x00, 0x09, 0x00])
        || bytes.get(40..44) == Some(b" EMF")
}

fn external(href: &str) -> bool {
    let h = href.trim();
    let local = h.strip_prefix("./").unwrap_or(h);
    local.contains(':')
        || local.starts_with('/')
        || local.starts_with("..")
        || local.starts_with('\\')
}

impl Sanitizer for OdfSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Odt, FileKind::Ods, FileKind::Odp]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let limits = cx.policy().limits.clone();
        let strip_metadata = cx.policy().strip_metadata;
        let entries = crate::zipread::entries(input, &limits)?;
        let mut members: BTreeMap<String, &[u8]> = BTreeMap::new();
        let mut order = Vec::new();
        for entry in &entries {
            let name = String::from_utf8_lossy(&entry.raw_name).into_owned();
            if name.is_empty()
                || name.starts_with('/')
                || name.contains('\\')
                || name.split('/').any(|s| s == "..")
                || name.chars().any(char::is_control)
                || entry.is_symlink
            {
                return Err(Error::malformed(format!(
                    "ODF member {name:?} is not a safe relative path"
                )));
            }
            if entry.is_dir || name.ends_with('/') {
                continue;
            }
            if members.insert(name.clone(), &entry.bytes).is_some() {
                return Err(Error::malformed(format!("ODF member {name} appears twice")));
            }
            order.push(name);
        }
        let mimetype = members
            .get("mimetype")
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .ok_or_else(|| Error::malformed("ODF package has no mimetype"))?;
        let expected = match kind {
            FileKind::Odt => "application/vnd.oasis.opendocument.text",
            FileKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            _ => "application/vnd.oasis.opendocument.presentation",
        };
        if !mimetype.starts_with(expected) {
            return Err(Error::unsupported(format!("ODF mimetype {mimetype}")));
        }
        let manifest_bytes = members
            .get("META-INF/manifest.xml")
            .ok_or_else(|| Error::malformed("ODF package has no manifest"))?;
        let manifest = Document::parse(manifest_bytes)?;
        let mut media_types: BTreeMap<String, String> = BTreeMap::new();
        let mut sub_docs = Vec::new();
        for id in descendants(&manifest, manifest.root()) {
            if manifest.local(id) == "encryption-data" {
                return Err(Error::encrypted("ODF package is password-protected"));
            }
            if manifest.local(id) != "file-entry" {
                continue;
            }
            let path = manifest
                .attr_ns(id, &[MANIFEST_NS], "full-path")
                .unwrap_or_default();
            let media = manifest
                .attr_ns(id, &[MANIFEST_NS], "media-type")
                .unwrap_or_default();
            if path.ends_with('/')
                && path.len() > 1
                && media.starts_with("application/vnd.oasis.opendocument.")
            {
                // An embedded chart or formula: a document of its own, filtered the same way.
                sub_docs.push(path.trim_end_matches('/').to_string());
            }
            media_types.insert(path, media);
        }

        let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
        let mut dropped_dirs: BTreeMap<&'static str, usize> = BTreeMap::new();
        for name in &order {
            cx.check_deadline()?;
            if name == "mimetype" || name == "META-INF/manifest.xml" {
                continue;
            }
            let bytes = members[name.as_str()];
            match classify(name, strip_metadata, &sub_docs) {
                Fate::Xml => {
                    let mut doc = Document::parse(bytes)?;
                    filter(&mut doc, name, cx);
                    kept.push((name.clone(), doc.write()));
                }
                Fate::Picture => {
                    if picture_ok(bytes) {
                        kept.push((name.clone(), bytes.to_vec()));
                    } else {
                        cx.remove(
                            What::UnknownPart,
                            name.clone(),
                            "not a picture format mukaika copies",
                        );
                    }
                }
                Fate::Drop(what, why) => {
                    // One line per macro library or UI configuration, not one per file.
                    let group = matches!(what, What::Macro | What::CustomUi);
                    if group {
                        let n = dropped_dirs.entry(why).or_default();
                        *n += 1;
                        if *n > 1 {
                            continue;
                        }
                    }
                    cx.remove(what, name.clone(), why);
                }
            }
        }

        // The new manifest lists exactly what is kept.
        let mut manifest = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<manifest:manifest xmlns:manifest=\"{MANIFEST_NS}\" manifest:version=\"1.2\">\n <manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{}\"/>\n",
            escape_attr(&mimetype)
        );
        for dir in &sub_docs {
            if kept.iter().any(|(n, _)| n.starts_with(&format!("{dir}/"))) {
                let media = media_types
                    .get(&format!("{dir}/"))
                    .cloned()
                    .unwrap_or_default();
                manifest.push_str(&format!(
                    " <manifest:file-entry manifest:full-path=\"{}/\" manifest:media-type=\"{}\"/>\n",
                    escape_attr(dir),
                    escape_attr(&media)
                ));
            }
        }
        for (name, _) in &kept {
            let media = media_types.get(name).cloned().unwrap_or_else(|| {
                if name.ends_with(".xml") {
                    "text/xml".into()
                } else {
                    String::new()
                }
            });
            manifest.push_str(&format!(
                " <manifest:file-entry manifest:full-path=\"{}\" manifest:media-type=\"{}\"/>\n",
                escape_attr(name),
                escape_attr(&media)
            ));
        }
        manifest.push_str("</manifest:manifest>\n");

        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(input.len())));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut put = |name: &str, bytes: &[u8], options| {
            zip.start_file(name, options)
                .and_then(|()| zip.write_all(bytes).map_err(Into::into))
                .map_err(|e| Error::internal(format!("writing the ODF package: {e}")))
        };
        // ODF 1.2 §3.3: `mimetype` first, stored, so the type can be read at a fixed offset.
        put("mimetype", mimetype.as_bytes(), stored)?;
        put("META-INF/manifest.xml", manifest.as_bytes(), deflated)?;
        for (name, bytes) in &kept {
            let options = if name.ends_with(".xml") {
                deflated
            } else {
                stored
            };
            put(name, bytes, options)?;
        }
        let out = zip
            .finish()
            .map_err(|e| Error::internal(format!("finishing the ODF package: {e}")))?;
        Ok(Sanitized::new(out.into_inner(), kind))
    }
}

/// Every element below `id`, depth first (the parser bounds the depth).
fn descendants(doc: &Document<'_>, id: NodeId) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        for c in doc.child_elements(n) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// True for the `value` of a conditional-format condition or entry, which is a formula.
fn is_formula_value(element: &str, attr: &str) -> bool {
    attr == "value"
        && matches!(
            element,
            "condition" | "formatting-entry" | "color-scale-entry"
        )
}

/// Applies the element and attribute rules to one XML part.
fn filter(doc: &mut Document<'_>, part: &str, cx: &mut Context<'_>) {
    let keep_links = cx.policy().keep_links;
    let mut stack = vec![doc.root()];
    while let Some(id) = stack.pop() {
        let local = doc.local(id).to_string();
        if let Some((_, what, why)) = REMOVED_ELEMENTS.iter().find(|(l, _, _)| *l == local) {
            // Name each macro binding that goes with its container: the auditor wants to see
            // which event ran what.
            let inside = std::iter::once(id).chain(descendants(doc, id));
            for d in inside
                .filter(|&d| doc.local(d) == "event-listener")
                .collect::<Vec<_>>()
            {
                let event = doc
                    .attrs(d)
                    .find(|a| a.local() == "event-name")
                    .map(|a| a.value())
                    .unwrap_or_default();
                let target = doc
                    .attrs(d)
                    .find(|a| a.local() == "href" || a.local() == "macro-name")
                    .map(|a| a.value())
                    .unwrap_or_default();
                cx.remove(
                    What::AutoAction,
                    part,
                    format!("event listener {} → {}", short(&event), short(&target)),
                );
            }
            if local != "event-listener" {
                cx.remove(*what, part, *why);
            }
            doc.remove(id);
            continue;
        }
        if let Some((_, what, why)) = UNWRAPPED_ELEMENTS.iter().find(|(l, _, _)| *l == local) {
            doc.unwrap(id);
            cx.remove(*what, part, *why);
        }
        let href = doc
            .attrs(id)
            .find(|a| a.local() == "href" && a.ns() == XLINK_NS)
            .map(|a| a.value());
        if let Some(href) = href {
            let link = local == "a";
            if link {
                if !(keep_links && link_allowed(&href)) {
                    doc.unwrap(id);
                    cx.remove(What::Hyperlink, part, short(&href));
                }
            } else if external(&href) {
                doc.remove(id);
                cx.remove(
                    What::ExternalReference,
                    part,
                    format!("{local} → {}", short(&href)),
                );
                continue;
            }
        }
        // Every formula attribute that reaches outside goes (all of them, so a second pass
        // finds none); an owner goes whole with the first.
        let reaching: Vec<(String, formula::Reach, String)> = doc
            .attrs(id)
            .filter(|a| FORMULA_ATTRS.contains(&a.local()) || is_formula_value(&local, a.local()))
            .filter_map(|a| {
                let value = a.value();
                formula::judge(&value, keep_links).map(|r| (a.qname().to_string(), r, value))
            })
            .collect();
        if !reaching.is_empty() {
            let owner = FORMULA_OWNERS.contains(&local.as_str());
            let name = doc
                .attrs(id)
                .find(|a| a.local() == "name")
                .map(|a| a.value());
            for (attr_name, reach, value) in &reaching {
                let label = match &name {
                    Some(name) if owner => format!("{local} {name}"),
                    _ => format!("{local} {attr_name}"),
                };
                cx.remove(
                    reach.what,
                    part,
                    format!("{label}: {} {}", reach.why, short(value)),
                );
                if owner {
                    break;
                }
            }
            if owner {
                doc.remove(id);
                continue;
            }
            for attr in doc.attrs_mut(id) {
                if reaching.iter().any(|(n, _, _)| *n == attr.qname()) {
                    attr.removed = true;
                }
            }
        }
        for attr in doc.attrs_mut(id) {
            if attr.removed {
                continue;
            }
            if attr.local().starts_with("on") && attr.ns() == SCRIPT_NS {
                attr.removed = true;
                cx.remove(What::AutoAction, part, format!("{} handler", attr.qname()));
            }
        }
        stack.extend(doc.child_elements(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_external_references_are_told_apart() {
        assert!(!external("Pictures/1.png"));
        assert!(!external("./Object 1"));
        assert!(external("http://tracker.example/p.png"));
        assert!(external("file:///C:/x.odt"));
        assert!(external("../secret.odt"));
        assert!(external("\\\\host\\share\\x.png"));
    }
}
