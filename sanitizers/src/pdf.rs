//! PDF rebuilder.
//!
//! Owns: turning a PDF into a new PDF built only from what the final revision's catalog reaches
//! through allowlisted keys, with every active or risky element dropped and reported.
//! Invariants:
//! - lopdf parses the file (object and xref streams included, never a byte scan); we then copy
//!   object by object into a fresh document, starting from the catalog. Earlier revisions,
//!   orphans and bytes outside `%PDF-` … `%%EOF` are simply never copied.
//! - Actions survive only as in-document `GoTo`; `/AA`, JavaScript, embedded files, `/AF`,
//!   rich media, XFA and signatures never do. URI links follow `Policy::keep_links`.
//! - A document lopdf cannot decrypt with the empty password is refused as encrypted; one it
//!   can is written unencrypted.
//! - The page count of the output equals the input's, and is at least one.
//!
//! Must never: copy the input bytes or any object the walk did not clean.

use std::collections::{HashMap, VecDeque};

use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId, Stream};

use crate::detect::find;
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// Rebuilds PDF files.
pub struct PdfSanitizer;

impl Sanitizer for PdfSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Pdf]
    }

    fn sanitize(&self, input: &[u8], _kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let start = find(&input[..input.len().min(1024)], b"%PDF-")
            .ok_or_else(|| Error::malformed("no %PDF- header in the first 1024 bytes"))?;
        if start > 0 {
            cx.remove(
                What::TrailingData,
                "before %PDF- header",
                format!("{start} bytes"),
            );
        }
        let body = &input[start..];
        let eofs = count(body, b"%%EOF");
        if let Some(last) = rfind(body, b"%%EOF") {
            let tail = &body[last + 5..];
            // PDF syntax after the last %%EOF is an incremental update that never finished:
            // the author's final revision is missing, so rebuilding an earlier one would be
            // a guess.
            let syntax: Vec<u8> = tail
                .split(|&b| b == b'\n' || b == b'\r')
                .filter(|line| !line.trim_ascii_start().starts_with(b"%"))
                .flat_map(|line| line.iter().copied().chain([b'\n']))
                .collect();
            if [&b" obj"[..], b"endobj", b"xref", b"trailer"]
                .iter()
                .any(|k| find(&syntax, k).is_some())
            {
                return Err(Error::malformed(
                    "an incremental update after the last %%EOF is incomplete (truncated file?)",
                ));
            }
            if tail.iter().any(|b| !b.is_ascii_whitespace() && *b != 0) {
                cx.remove(
                    What::TrailingData,
                    "after last %%EOF",
                    format!("{} bytes", tail.len()),
                );
            }
        }

        let limits = &cx.policy().limits;
        let options = LoadOptions {
            max_decompressed_size: Some(
                usize::try_from(limits.max_pdf_stream_bytes).unwrap_or(usize::MAX),
            ),
            ..LoadOptions::default()
        };
        let doc = Document::load_mem_with_options(body, options).map_err(|e| {
            let text = e.to_string();
            if text.contains("limit") {
                Error::limit_exceeded(format!("PDF stream over the size limit: {text}"))
            } else if text.to_ascii_lowercase().contains("password") || text.contains("ncrypt") {
                Error::encrypted(format!("PDF cannot be decrypted: {text}"))
            } else {
                Error::malformed(format!("PDF does not parse: {text}"))
            }
        })?;
        if doc.trailer.has(b"Encrypt") {
            return Err(Error::encrypted("PDF is encrypted with a user password"));
        }
        if doc.encryption_state.is_some() {
            cx.remove(
                What::Encryption,
                "trailer /Encrypt",
                "empty user password; written unencrypted",
            );
        }
        if doc.objects.len() as u64 > cx.policy().limits.max_pdf_objects {
            return Err(Error::limit_exceeded(format!(
                "{} objects in the PDF",
                doc.objects.len()
            )));
        }
        match doc.xref_recovery {
            Some(lopdf::xref::XrefRecovery::Reconstructed) => {
                // A scan finds every object of every revision; only the author's own trailer
                // dictionary and a startxref say which catalog is current. When the index was
                // a (now unreadable) cross-reference stream, lopdf can only pick the newest
                // catalog it happens to find — a guess, so refuse rather than rebuild it.
                if !doc.trailer.has(b"Size")
                    || find(body, b"trailer").is_none()
                    || find(body, b"startxref").is_none()
                {
                    return Err(Error::malformed(
                        "cross-reference data is unusable and no trailer says which objects are current",
                    ));
                }
                cx.warn("cross-reference table was damaged; objects were located by scanning");
            }
            Some(_) => cx.warn("a cross-reference offset was wrong and was corrected"),
            None => {}
        }
        let linearized = doc
            .objects
            .values()
            .next()
            .and_then(|o| o.as_dict().ok())
            .is_some_and(|d| d.has(b"Linearized"));
        if eofs > 1 && !linearized {
            cx.remove(
                What::RevisionHistory,
                "incremental updates",
                format!(
                    "{} earlier revision(s) dropped; rebuilt from the final one",
                    eofs - 1
                ),
            );
        }

        let pages_in = doc.page_iter().count();
        if pages_in == 0 {
            return Err(Error::malformed("the page tree has no pages"));
        }
        let out = Rebuild::new(&doc, cx).run()?;
        let pages_out = out.page_iter().count();
        if pages_out != pages_in {
            return Err(Error::malformed(format!(
                "page tree lost pages when rebuilt ({pages_in} in, {pages_out} out)"
            )));
        }
        let mut out = out;
        let mut bytes = Vec::with_capacity(body.len());
        out.save_to(&mut bytes)
            .map_err(|e| Error::internal(format!("writing the rebuilt PDF failed: {e}")))?;
        Ok(Sanitized::new(bytes, FileKind::Pdf))
    }
}

/// Catalog keys copied (cleaned) into the new catalog. Everything else is dropped and reported.
const CATALOG_KEEP: &[&[u8]] = &[
    b"Type",
    b"Pages",
    b"PageLabels",
    b"Dests",
    b"ViewerPreferences",
    b"PageLayout",
    b"PageMode",
    b"Outlines",
    b"StructTreeRoot",
    b"MarkInfo",
    b"Lang",
    b"OCProperties",
    b"Version",
    b"Extensions",
    b"OutputIntents",
    b"Threads",
];

/// Annotation subtypes that carry media, files or 3D and are dropped whole.
const ANNOT_DROP: &[(&[u8], What)] = &[
    (b"FileAttachment", What::EmbeddedFile),
    (b"RichMedia", What::Multimedia),
    (b"Screen", What::Multimedia),
    (b"Sound", What::Multimedia),
    (b"Movie", What::Multimedia),
    (b"3D", What::Multimedia),
];

struct Rebuild<'d, 'c, 'p> {
    src: &'d Document,
    out: Document,
    map: HashMap<ObjectId, ObjectId>,
    queue: VecDeque<(ObjectId, ObjectId)>,
    next: u32,
    cx: &'c mut Context<'p>,
}

impl<'d, 'c, 'p> Rebuild<'d, 'c, 'p> {
    fn new(src: &'d Document, cx: &'c mut Context<'p>) -> Self {
        let mut out = Document::new();
        out.version = if src.version.len() <= 4
            && src.version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            src.version.clone()
        } else {
            "1.7".into()
        };
        Self {
            src,
            out,
            map: HashMap::new(),
            queue: VecDeque::new(),
            next: 1,
            cx,
        }
    }

    fn run(mut self) -> Result<Document> {
        let root_id = self
            .src
            .trailer
            .get(b"Root")
            .and_then(Object::as_reference)
            .map_err(|_| Error::malformed("trailer has no /Root reference"))?;
        let catalog = self
            .src
            .get_dictionary(root_id)
            .map_err(|_| Error::malformed("/Root is not a dictionary"))?;
        let new_root = self.alloc(root_id);
        let cleaned = self.clean_catalog(catalog)?;
        self.out
            .objects
            .insert(new_root, Object::Dictionary(cleaned));

        let mut steps = 0u32;
        while let Some((src_id, new_id)) = self.queue.pop_front() {
            steps += 1;
            if steps.is_multiple_of(1024) {
                self.cx.check_deadline()?;
            }
            let obj = match self.src.objects.get(&src_id) {
                Some(obj) => {
                    self.clean_object(obj, &format!("object {} {}", src_id.0, src_id.1), 0)?
                }
                None => Object::Null,
            };
            self.out.objects.insert(new_id, obj);
        }

        self.out.trailer.set("Root", Object::Reference(new_root));
        if let Ok(info) = self
            .src
            .trailer
            .get(b"Info")
            .and_then(|o| resolve(self.src, o).as_dict())
        {
            if self.cx.policy().strip_metadata {
                if !info.is_empty() {
                    let keys = key_list(info);
                    self.cx.remove(What::Metadata, "trailer /Info", keys);
                }
            } else {
                let mut kept = Dictionary::new();
                for (k, v) in info.iter() {
                    if let Object::String(..) = v {
                        kept.set(k.clone(), v.clone());
                    }
                }
                let id = self.fresh_id();
                self.out.objects.insert(id, Object::Dictionary(kept));
                self.out.trailer.set("Info", Object::Reference(id));
            }
        }
        self.out.max_id = self.next - 1;
        Ok(self.out)
    }

    fn fresh_id(&mut self) -> ObjectId {
        let id = (self.next, 0);
        self.next += 1;
        id
    }

    /// Maps a source object to its id in the output, queueing it for cleaning the first time.
    fn alloc(&mut self, src_id: ObjectId) -> ObjectId {
        if let Some(id) = self.map.get(&src_id) {
            return *id;
        }
        let id = self.fresh_id();
        self.map.insert(src_id, id);
        id
    }

    fn reference(&mut self, src_id: ObjectId) -> Object {
        if let Some(id) = self.map.get(&src_id) {
            return Object::Reference(*id);
        }
        let id = self.alloc(src_id);
        self.queue.push_back((src_id, id));
        Object::Reference(id)
    }

    fn clean_catalog(&mut self, catalog: &Dictionary) -> Result<Dictionary> {
        let mut out = Dictionary::new();
        for (key, value) in catalog.iter() {
            let loc = format!("catalog /{}", String::from_utf8_lossy(key));
            match key.as_slice() {
                b"Names" => {
                    let names = self.clean_names(value, &loc)?;
                    if !names.is_empty() {
                        out.set("Names", Object::Dictionary(names));
                    }
                }
                b"AcroForm" => {
                    let form = self.clean_acroform(value, &loc)?;
                    out.set("AcroForm", Object::Dictionary(form));
                }
                b"OpenAction" => {
                    if let Some(kept) = self.clean_action(value, &loc)? {
                        out.set("OpenAction", kept);
                    }
                }
                b"Metadata" if !self.cx.policy().strip_metadata => {
                    let v = self.clean(value, &loc, 0)?;
                    out.set("Metadata", v);
                }
                k if CATALOG_KEEP.contains(&k) => {
                    let v = self.clean(value, &loc, 0)?;
                    out.set(key.clone(), v);
                }
                other => {
                    let what = match other {
                        b"AA" => What::AutoAction,
                        b"AF" | b"Collection" => What::EmbeddedFile,
                        b"Metadata" | b"PieceInfo" | b"SpiderInfo" => What::Metadata,
                        b"Perms" | b"DSS" | b"Legal" => What::Signature,
                        b"URI" => What::Hyperlink,
                        _ => What::UnknownPart,
                    };
                    self.cx
                        .remove(what, loc, "catalog entry not on the allowlist");
                }
            }
        }
        if !out.has(b"Pages") {
            return Err(Error::malformed("catalog has no /Pages"));
        }
        out.set("Type", Object::Name(b"Catalog".to_vec()));
        Ok(out)
    }

    /// Keeps only the named-destinations tree of the /Names dictionary.
    fn clean_names(&mut self, value: &Object, loc: &str) -> Result<Dictionary> {
        let mut out = Dictionary::new();
        let Ok(names) = resolve(self.src, value).as_dict() else {
            return Ok(out);
        };
        for (key, v) in names.iter() {
            let here = format!("{loc} /{}", String::from_utf8_lossy(key));
            match key.as_slice() {
                b"Dests" => {
                    let v = self.clean(v, &here, 0)?;
                    out.set("Dests", v);
                }
                b"JavaScript" => self.cx.remove(
                    What::Javascript,
                    here,
                    "document-level JavaScript name tree",
                ),
                b"EmbeddedFiles" => {
                    self.cx
                        .remove(What::EmbeddedFile, here, "embedded files name tree")
                }
                b"Renditions" | b"AlternatePresentations" => {
                    self.cx.remove(What::Multimedia, here, "media name tree")
                }
                _ => self
                    .cx
                    .remove(What::UnknownPart, here, "name tree not on the allowlist"),
            }
        }
        Ok(out)
    }

    /// Keeps the AcroForm fields and their appearance; drops XFA.
    fn clean_acroform(&mut self, value: &Object, loc: &str) -> Result<Dictionary> {
        let mut out = Dictionary::new();
        let Ok(form) = resolve(self.src, value).as_dict() else {
            return Ok(out);
        };
        for (key, v) in form.iter() {
            let here = format!("{loc} /{}", String::from_utf8_lossy(key));
            match key.as_slice() {
                b"XFA" => self
                    .cx
                    .remove(What::Xfa, here, "XFA form (AcroForm appearance kept)"),
                b"Fields" | b"NeedAppearances" | b"CO" | b"DR" | b"DA" | b"Q" | b"SigFlags" => {
                    let v = self.clean(v, &here, 0)?;
                    out.set(key.clone(), v);
                }
                _ => self.cx.remove(
                    What::UnknownPart,
                    here,
                    "AcroForm entry not on the allowlist",
                ),
            }
        }
        if !out.has(b"Fields") {
            out.set("Fields", Object::Array(Vec::new()));
        }
        Ok(out)
    }

    /// Returns the cleaned action if it may stay (an in-document GoTo or a plain destination,
    /// or a URI under `keep_links`), recording the removal otherwise.
    fn clean_action(&mut self, value: &Object, loc: &str) -> Result<Option<Object>> {
        let resolved = resolve(self.src, value);
        match resolved {
            Object::Array(_) | Object::Name(_) | Object::String(..) => {
                // A destination, not an action: GoTo in all but name.
                Ok(Some(self.clean(value, loc, 0)?))
            }
            Object::Dictionary(d) => {
                let kind = d.get(b"S").and_then(Object::as_name).unwrap_or(b"");
                let keep = kind == b"GoTo" || (kind == b"URI" && self.uri_kept(d));
                if keep {
                    return Ok(Some(self.clean(value, loc, 0)?));
                }
                let detail = action_detail(self, d, kind);
                let what = match kind {
                    b"JavaScript" => What::Javascript,
                    b"URI" => What::Hyperlink,
                    b"Rendition" | b"Sound" | b"Movie" | b"RichMediaExecute" => What::Multimedia,
                    b"GoToE" => What::EmbeddedFile,
                    _ => What::Action,
                };
                self.cx.remove(what, loc.to_string(), detail);
                Ok(None)
            }
            Object::Null => Ok(None),
            _ => {
                self.cx
                    .remove(What::Action, loc.to_string(), "unrecognised action value");
                Ok(None)
            }
        }
    }

    /// A URI action stays only under `keep_links`, and only for web and mail addresses.
    fn uri_kept(&self, action: &Dictionary) -> bool {
        self.cx.policy().keep_links
            && action
                .get(b"URI")
                .map(|u| resolve(self.src, u))
                .and_then(Object::as_str)
                .is_ok_and(|u| crate::policy::link_allowed(&String::from_utf8_lossy(u)))
    }

    fn clean(&mut self, obj: &Object, loc: &str, depth: u32) -> Result<Object> {
        if depth > 64 {
            return Err(Error::malformed(format!(
                "objects nested too deeply at {loc}"
            )));
        }
        Ok(match obj {
            Object::Reference(id) => self.reference(*id),
            Object::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.clean(item, loc, depth + 1)?);
                }
                Object::Array(out)
            }
            Object::Dictionary(d) => match self.clean_dict(d, loc, depth)? {
                Some(d) => Object::Dictionary(d),
                None => Object::Null,
            },
            Object::Stream(s) => self.clean_stream(s, loc, depth)?,
            other => other.clone(),
        })
    }

    fn clean_object(&mut self, obj: &Object, loc: &str, depth: u32) -> Result<Object> {
        self.clean(obj, loc, depth)
    }

    fn clean_stream(&mut self, s: &Stream, loc: &str, depth: u32) -> Result<Object> {
        if s.dict.has_type(b"EmbeddedFile") {
            self.cx
                .remove(What::EmbeddedFile, loc.to_string(), "embedded file stream");
            return Ok(Object::Null);
        }
        if s.dict.has_type(b"Metadata") && self.cx.policy().strip_metadata {
            self.cx
                .remove(What::Metadata, loc.to_string(), "XMP metadata stream");
            return Ok(Object::Null);
        }
        let mut dict = match self.clean_dict(&s.dict, loc, depth)? {
            Some(d) => d,
            None => return Ok(Object::Null),
        };
        for key in [&b"F"[..], b"FFilter", b"FDecodeParms"] {
            if dict.remove(key).is_some() {
                self.cx.remove(
                    What::ExternalReference,
                    loc.to_string(),
                    "stream data in an external file",
                );
            }
        }
        let mut out = Stream::new(dict, s.content.clone());
        out.allows_compression = s.allows_compression;
        Ok(Object::Stream(out))
    }

    fn clean_dict(&mut self, d: &Dictionary, loc: &str, depth: u32) -> Result<Option<Dictionary>> {
        // An action dictionary reached by a path other than /A, /AA, /OpenAction or /Next is
        // dropped whole unless it is a GoTo.
        if let Ok(s) = d.get(b"S").and_then(Object::as_name) {
            if (d.has(b"JS") || d.has_type(b"Action"))
                && s != b"GoTo"
                && !(s == b"URI" && self.uri_kept(d))
            {
                let detail = action_detail(self, d, s);
                let what = if s == b"JavaScript" {
                    What::Javascript
                } else {
                    What::Action
                };
                self.cx.remove(what, loc.to_string(), detail);
                return Ok(None);
            }
        }
        let is_sig_field = d
            .get(b"FT")
            .and_then(Object::as_name)
            .is_ok_and(|n| n == b"Sig");
        let mut out = Dictionary::new();
        for (key, value) in d.iter() {
            let here = format!("{loc} /{}", String::from_utf8_lossy(key));
            match key.as_slice() {
                b"AA" => {
                    let triggers = match resolve(self.src, value) {
                        Object::Dictionary(aa) => key_list(aa),
                        _ => String::new(),
                    };
                    self.cx
                        .remove(What::AutoAction, here, format!("triggers: {triggers}"));
                }
                b"A" | b"PA" | b"Next" => {
                    if let Object::Array(items) = resolve(self.src, value) {
                        let items = items.clone();
                        let mut kept = Vec::new();
                        for item in &items {
                            if let Some(v) = self.clean_action(item, &here)? {
                                kept.push(v);
                            }
                        }
                        if !kept.is_empty() {
                            out.set(key.clone(), Object::Array(kept));
                        }
                    } else if let Some(v) = self.clean_action(value, &here)? {
                        out.set(key.clone(), v);
                    }
                }
                b"JS" => self.cx.remove(What::Javascript, here, "JavaScript entry"),
                b"AF" => self.cx.remove(What::EmbeddedFile, here, "associated files"),
                b"EF" => self.cx.remove(
                    What::EmbeddedFile,
                    here,
                    "embedded file in a file specification",
                ),
                b"RichMediaContent" | b"RichMediaSettings" => {
                    self.cx.remove(What::Multimedia, here, "rich media content")
                }
                b"Metadata" if self.cx.policy().strip_metadata => {
                    self.cx.remove(What::Metadata, here, "XMP metadata");
                }
                b"PieceInfo" => self
                    .cx
                    .remove(What::Metadata, here, "application private data"),
                b"V" if is_sig_field => self.cx.remove(What::Signature, here, "signature value"),
                b"Annots" => {
                    let annots = self.clean_annots(value, &here, depth)?;
                    out.set("Annots", annots);
                }
                _ => {
                    let v = self.clean(value, &here, depth + 1)?;
                    out.set(key.clone(), v);
                }
            }
        }
        Ok(Some(out))
    }

    /// Drops media, file and 3D annotations, and link annotations that lose their only target.
    fn clean_annots(&mut self, value: &Object, loc: &str, depth: u32) -> Result<Object> {
        let Object::Array(items) = resolve(self.src, value) else {
            return Ok(Object::Array(Vec::new()));
        };
        let items = items.clone();
        let mut kept = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{loc}[{i}]");
            let Object::Dictionary(annot) = resolve(self.src, item) else {
                continue;
            };
            let subtype = annot
                .get(b"Subtype")
                .and_then(Object::as_name)
                .unwrap_or(b"");
            if let Some((_, what)) = ANNOT_DROP.iter().find(|(name, _)| *name == subtype) {
                let what = *what;
                self.cx.remove(
                    what,
                    here,
                    format!("{} annotation", String::from_utf8_lossy(subtype)),
                );
                continue;
            }
            if subtype == b"Link" && !annot.has(b"Dest") {
                if let Ok(action) = annot.get(b"A") {
                    let action = action.clone();
                    if self.clean_action(&action, &format!("{here} /A"))?.is_none() {
                        // The link had nothing else to do: drop the annotation, keep the text.
                        continue;
                    }
                }
            }
            kept.push(self.clean(item, &here, depth + 1)?);
        }
        Ok(Object::Array(kept))
    }
}

fn action_detail(rb: &Rebuild<'_, '_, '_>, d: &Dictionary, kind: &[u8]) -> String {
    let kind_s = String::from_utf8_lossy(kind).into_owned();
    let target = match kind {
        b"URI" => d.get(b"URI").ok(),
        b"Launch" | b"GoToR" | b"ImportData" | b"SubmitForm" => d.get(b"F").ok(),
        _ => None,
    };
    let target = target
        .map(|t| describe(resolve(rb.src, t)))
        .filter(|t| !t.is_empty());
    match target {
        Some(t) => format!("{kind_s}: {t}"),
        None if kind.is_empty() => "action without /S".into(),
        None => kind_s,
    }
}

/// Follows references (bounded) to the object they name.
fn resolve<'a>(src: &'a Document, mut obj: &'a Object) -> &'a Object {
    for _ in 0..32 {
        match obj {
            Object::Reference(id) => match src.objects.get(id) {
                Some(next) => obj = next,
                None => return &Object::Null,
            },
            _ => return obj,
        }
    }
    &Object::Null
}

fn describe(obj: &Object) -> String {
    let text = match obj {
        Object::String(bytes, _) => String::from_utf8_lossy(bytes).into_owned(),
        Object::Dictionary(d) => d
            .get(b"UF")
            .or_else(|_| d.get(b"F"))
            .ok()
            .and_then(|o| o.as_str().ok())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn key_list(d: &Dictionary) -> String {
    d.iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}
