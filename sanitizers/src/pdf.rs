//! PDF rebuilder.
//!
//! Owns: turning a PDF into a new PDF built only from what the final revision's catalog reaches
//! through allowlisted keys, with every active or risky element dropped and reported.
//! Invariants:
//! - lopdf parses the file (object and xref streams included); we then copy object by object
//!   into a fresh document, starting from the catalog. Earlier revisions, orphans and bytes
//!   outside `%PDF-` … `%%EOF` are simply never copied. Only when the cross-reference data is
//!   damaged (lopdf cannot read it, rebuilds it itself, or its entries do not point at their
//!   objects) are the objects found by a token-level scan instead (`pdf_repair.rs`), which
//!   never guesses between catalogs; the result is then rebuilt like any other file.
//! - Actions survive only as in-document `GoTo`; `/AA`, JavaScript, embedded files, `/AF`,
//!   rich media, XFA and signatures never do. URI links follow `Policy::keep_links`. A
//!   dictionary is an action when its `/S` names an action type (or it has `/JS` or
//!   `/Type /Action`), wherever it sits — `/PresSteps /NA`, arrays, name trees, `/Next` chains.
//! - A stream is copied only under a key where the PDF specification puts streams in that kind
//!   of dictionary (or under an author-chosen name inside resources, appearance and glyph
//!   dictionaries). The kind ([`Role`]) comes from where the dictionary was reached, never from
//!   the key name alone: a `/FontFile2`, `/ToUnicode` or `/Contents` stream on a catalog, an
//!   annotation or a made-up dictionary is dropped. Embedded font programs stay only when they
//!   parse as their format (`pdf_font.rs`).
//! - The page tree is rebuilt flat (one /Pages node, inherited attributes pushed down to each
//!   page); a tree that reaches an inner node twice (a loop) is refused, and a page listed
//!   twice is written as two page objects.
//! - The written file is re-read before it leaves: it must parse without repair and its page
//!   tree must hold every page; in the output re-check any repair is an error.
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

#[path = "pdf_font.rs"]
mod font;

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
        let stream_limit = usize::try_from(limits.max_pdf_stream_bytes).unwrap_or(usize::MAX);
        let bounds = crate::pdf_repair::Bounds {
            max_objects: limits.max_pdf_objects,
            max_stream_bytes: stream_limit,
        };
        let options = LoadOptions {
            max_decompressed_size: Some(stream_limit),
            ..LoadOptions::default()
        };
        let load = |bytes: &[u8]| {
            Document::load_mem_with_options(bytes, options.clone()).map_err(|e| {
                let text = e.to_string();
                if text.contains("limit") {
                    Error::limit_exceeded(format!("PDF stream over the size limit: {text}"))
                } else if text.to_ascii_lowercase().contains("password") || text.contains("ncrypt")
                {
                    Error::encrypted(format!("PDF cannot be decrypted: {text}"))
                } else {
                    Error::malformed(format!("PDF does not parse: {text}"))
                }
            })
        };
        let first = load(body);
        // Damaged cross-reference data: lopdf could not read it, had to rebuild it by its own
        // scan (which guesses the catalog when no trailer survives), or read a table whose
        // entries do not point at their objects (lopdf then silently loses those objects).
        let damaged = match &first {
            Ok(doc) => {
                matches!(
                    doc.xref_recovery,
                    Some(lopdf::xref::XrefRecovery::Reconstructed)
                ) || !xref_locates_objects(doc, body)
            }
            Err(e) => e.is_malformed(),
        };
        let doc = if damaged {
            if cx.is_recheck() {
                // Our own output must read without repair.
                return Err(Error::internal(
                    "the rebuilt PDF's cross-reference data needed repair",
                ));
            }
            // Every object is found by a scan and laid out anew with an intact table; what
            // was found then goes through the same rebuild as any other file.
            let repaired = {
                let cx = &*cx;
                crate::pdf_repair::rebuild(body, &bounds, &mut || cx.check_deadline())?
            };
            let doc = load(&repaired)?;
            if doc.xref_recovery.is_some() {
                return Err(Error::internal(
                    "the reconstructed PDF's cross-reference data still needed repair",
                ));
            }
            cx.warn("cross-reference table was damaged; objects were located by scanning");
            doc
        } else {
            let doc = first?;
            if doc.xref_recovery.is_some() {
                cx.warn("a cross-reference offset was wrong and was corrected");
            }
            doc
        };
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
        if doc.xref_recovery.is_some() && cx.is_recheck() {
            // Our own output must read without repair.
            return Err(Error::internal(
                "the rebuilt PDF's cross-reference data needed repair",
            ));
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

        if doc.encryption_state.is_some() {
            // lopdf keeps an object it could only partly decrypt and skips one it could not
            // parse after decrypting; either would leave a half-broken rebuild.
            let encrypt = doc
                .encryption_state
                .as_ref()
                .and_then(|s| s.encrypt_object_id());
            let lost = doc
                .reference_table
                .entries
                .iter()
                .filter_map(|(num, entry)| match entry {
                    lopdf::xref::XrefEntry::Normal { generation, .. } => Some((*num, *generation)),
                    lopdf::xref::XrefEntry::Compressed { .. } => Some((*num, 0)),
                    _ => None,
                })
                .filter(|id| Some(*id) != encrypt && !doc.objects.contains_key(id))
                .count();
            if lost > 0 {
                return Err(Error::encrypted(format!(
                    "{lost} object(s) could not be read after decrypting with the empty password"
                )));
            }
        }
        let (mut out, pages_in) = Rebuild::new(&doc, cx).run()?;
        let mut bytes = Vec::with_capacity(body.len());
        out.save_to(&mut bytes)
            .map_err(|e| Error::internal(format!("writing the rebuilt PDF failed: {e}")))?;
        let limit = usize::try_from(cx.policy().limits.max_pdf_stream_bytes).unwrap_or(usize::MAX);
        check_written(&bytes, pages_in, limit).map_err(|e| {
            if doc.encryption_state.is_some() {
                Error::encrypted(format!(
                    "decrypting with the empty password gave a broken file: {e}"
                ))
            } else {
                e
            }
        })?;
        Ok(Sanitized::new(bytes, FileKind::Pdf))
    }
}

/// Re-reads what we wrote: it must parse without any repair, its page tree must be sound and
/// hold every page. A file that fails this is never delivered.
///
/// # Errors
/// Internal, naming what is wrong with our own output.
fn check_written(bytes: &[u8], pages: usize, limit: usize) -> Result<()> {
    let doc = Document::load_mem(bytes)
        .map_err(|e| Error::internal(format!("the rebuilt PDF does not re-open: {e}")))?;
    if doc.xref_recovery.is_some() {
        return Err(Error::internal(
            "the rebuilt PDF's cross-reference table needed repair",
        ));
    }
    let root = doc
        .catalog()
        .and_then(|c| c.get(b"Pages"))
        .and_then(Object::as_reference)
        .map_err(|_| Error::internal("the rebuilt PDF has no page tree"))?;
    let tree = collect_pages(&doc, root)
        .map_err(|e| Error::internal(format!("the rebuilt PDF's page tree is unsound: {e}")))?;
    if tree.leaves.len() != pages || tree.nodes.len() != 1 {
        return Err(Error::internal(format!(
            "page tree lost pages when rebuilt ({pages} in, {} out)",
            tree.leaves.len()
        )));
    }
    // Every stream whose filters are general-purpose must decode, as qpdf --check requires; a
    // stream that does not (damaged, or left half-encrypted) makes the file refused.
    for (id, obj) in &doc.objects {
        let Object::Stream(s) = obj else { continue };
        let filters = match s.dict.get(b"Filter") {
            Ok(Object::Name(n)) => vec![n.as_slice()],
            Ok(Object::Array(a)) => a.iter().filter_map(|f| f.as_name().ok()).collect(),
            _ => continue,
        };
        let general = filters.iter().all(|f| {
            matches!(
                *f,
                b"FlateDecode"
                    | b"LZWDecode"
                    | b"ASCII85Decode"
                    | b"ASCIIHexDecode"
                    | b"RunLengthDecode"
            )
        });
        if general {
            let decoded = if filters.first() == Some(&&b"FlateDecode"[..]) {
                // lopdf forgives a broken zlib stream (it returns what it could read); qpdf
                // does not, and neither may we.
                strict_inflate(&s.content, limit).map(drop)
            } else {
                s.decompressed_content_with_limit(limit)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = decoded {
                return Err(Error::malformed(format!(
                    "stream {} {} does not decode: {e}",
                    id.0, id.1
                )));
            }
        }
    }
    Ok(())
}

/// Whether every in-use entry of the cross-reference data read points at the header of its
/// own object. A table that does not describes another file (bytes were added or removed), and
/// lopdf drops the objects it cannot find there.
fn xref_locates_objects(doc: &Document, body: &[u8]) -> bool {
    doc.reference_table
        .entries
        .iter()
        .all(|(number, entry)| match entry {
            lopdf::xref::XrefEntry::Normal { offset, generation } => usize::try_from(*offset)
                .is_ok_and(|at| crate::pdf_repair::defines_at(body, at, *number, *generation)),
            _ => true,
        })
}

/// Inflates a zlib stream, failing on any damage (a bad header, a bad checksum, a stream cut
/// short) and at `limit` bytes of output.
fn strict_inflate(data: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!("decodes to more than {limit} bytes"));
    }
    Ok(out)
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

/// Action types (`/S`): a dictionary naming one is an action wherever it sits.
const ACTION_TYPES: &[&[u8]] = &[
    b"GoTo",
    b"GoToR",
    b"GoToE",
    b"GoToDp",
    b"Launch",
    b"Thread",
    b"URI",
    b"Sound",
    b"Movie",
    b"Hide",
    b"Named",
    b"SubmitForm",
    b"ResetForm",
    b"ImportData",
    b"JavaScript",
    b"SetOCGState",
    b"Rendition",
    b"Trans",
    b"GoTo3DView",
    b"RichMediaExecute",
    b"SetState",
    b"NOP",
];

/// Page attributes a page inherits from its ancestors in the page tree.
const INHERITABLE: &[&[u8]] = &[b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// What a dictionary (or a stream's dictionary) is, as far as the streams it may hold go. The
/// role comes from where the dictionary was reached (the key and the role of its parent), never
/// from what the dictionary says about itself: a stream is kept only under a key the PDF
/// specification gives a stream in that kind of dictionary, so a `/FontFile2`, `/ToUnicode` or
/// `/Contents` hung on a catalog, an annotation or a made-up dictionary is dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Any other dictionary: it holds no streams (outlines, actions, destinations, name and
    /// number trees, viewer preferences, optional content, threads, field values, …).
    Other,
    Catalog,
    Page,
    Resources,
    /// A content stream (page contents, glyph procedures, marked-content references).
    Content,
    /// An XObject (form or image): also thumbnails, masks, appearance streams, icons.
    XObject,
    /// A font or CIDFont dictionary.
    Font,
    FontDescriptor,
    /// An embedded font program's stream.
    FontProgram,
    /// A CMap (`/ToUnicode`, a composite font's `/Encoding`).
    CMap,
    /// A colour space array's parts: ICC profiles, lookup tables, tint transforms.
    ColorSpace,
    Function,
    Shading,
    Pattern,
    ExtGState,
    SoftMask,
    Halftone,
    /// A transparency group attribute dictionary.
    Group,
    DecodeParms,
    Annotation,
    /// An annotation's `/AP`.
    Appearance,
    /// A widget's `/MK` (its icons).
    AppearanceChars,
    AcroForm,
    OutputIntent,
    /// The structure tree: its elements, marked-content and object references.
    Struct,
    /// An entry of an image's `/Alternates`.
    AltImage,
    /// Dictionaries keyed by author-chosen names; every value is of one kind.
    NamedXObjects,
    NamedFonts,
    NamedColorSpaces,
    NamedPatterns,
    NamedShadings,
    NamedExtGStates,
    NamedProperties,
    /// A Type 3 font's glyph procedures.
    CharProcs,
    /// An appearance's states (`/N`, `/R`, `/D` as a dictionary of states).
    AppearanceStates,
    /// A CIDFont descriptor's `/FD`: font descriptors by class name.
    FontDescriptors,
}

impl Role {
    /// The role of the value under `key` in a dictionary of this role (`dict`), and whether a
    /// stream may sit there.
    fn child(self, key: &[u8], dict: &Dictionary) -> (Role, bool) {
        use Role::*;
        match self {
            NamedXObjects | AppearanceStates => return (XObject, true),
            NamedFonts => return (Font, false),
            NamedColorSpaces => return (ColorSpace, true),
            NamedPatterns => return (Pattern, true),
            NamedShadings => return (Shading, true),
            NamedExtGStates => return (ExtGState, false),
            NamedProperties => return (Other, false),
            CharProcs => return (Content, true),
            FontDescriptors => return (FontDescriptor, false),
            _ => {}
        }
        match (self, key) {
            (_, b"DecodeParms") => (DecodeParms, false),
            (
                Catalog | Page | XObject | FontDescriptor | FontProgram | ColorSpace | Struct,
                b"Metadata",
            ) => (Other, true),
            (Catalog, b"OutputIntents") => (OutputIntent, false),
            (Catalog, b"StructTreeRoot") => (Struct, false),
            (Catalog, b"AcroForm") => (AcroForm, false),
            (Page, b"Contents") => (Content, true),
            (Page, b"Thumb") => (XObject, true),
            (Page | XObject | Font | Pattern, b"Resources") => (Resources, false),
            (AcroForm | Annotation, b"DR") => (Resources, false),
            (Page | XObject, b"Group") => (Group, false),
            (Resources, b"XObject") => (NamedXObjects, false),
            (Resources, b"Font") => (NamedFonts, false),
            (Resources, b"ColorSpace") => (NamedColorSpaces, false),
            (Resources, b"Pattern") => (NamedPatterns, false),
            (Resources, b"Shading") => (NamedShadings, false),
            (Resources, b"ExtGState") => (NamedExtGStates, false),
            (Resources, b"Properties") => (NamedProperties, false),
            (XObject, b"SMask" | b"Mask") => (XObject, true),
            (XObject | Shading | ColorSpace, b"ColorSpace") | (Group, b"CS") => (ColorSpace, true),
            (XObject, b"Alternates") => (AltImage, false),
            (AltImage, b"Image") => (XObject, true),
            (Font, b"FontDescriptor") => (FontDescriptor, false),
            (Font, b"DescendantFonts") => (Font, false),
            (Font, b"ToUnicode" | b"Encoding") | (CMap, b"UseCMap") => (CMap, true),
            (Font, b"CIDToGIDMap") | (FontDescriptor, b"CIDSet") => (Other, true),
            (Font, b"CharProcs") => (CharProcs, false),
            (FontDescriptor, b"FontFile" | b"FontFile2" | b"FontFile3") => (FontProgram, true),
            (FontDescriptor, b"FD") => (FontDescriptors, false),
            (ColorSpace, b"Alternate") => (ColorSpace, true),
            (ColorSpace, b"Colorants") => (NamedColorSpaces, false),
            (ColorSpace, b"Process") => (ColorSpace, false),
            (ColorSpace | Function | Shading, b"Function" | b"Functions") => (Function, true),
            (Pattern, b"Shading") => (Shading, true),
            (Pattern, b"ExtGState") => (ExtGState, false),
            (ExtGState, b"SMask") => (SoftMask, false),
            (ExtGState | SoftMask, b"TR" | b"TR2" | b"BG" | b"BG2" | b"UCR" | b"UCR2") => {
                (Function, true)
            }
            (ExtGState, b"HT") => (Halftone, true),
            (ExtGState, b"Font") => (Font, false),
            (SoftMask, b"G") => (XObject, true),
            (Halftone, b"TransferFunction") => (Function, true),
            // A type 5 halftone holds one halftone per colorant, under the colorant's name.
            (Halftone, _)
                if dict
                    .get(b"HalftoneType")
                    .and_then(Object::as_i64)
                    .is_ok_and(|t| t == 5) =>
            {
                (Halftone, true)
            }
            (Annotation, b"AP") => (Appearance, false),
            (Annotation, b"MK") => (AppearanceChars, false),
            (Annotation, b"RC" | b"RV") => (Other, true),
            (Annotation, b"Parent" | b"Kids" | b"Popup" | b"IRT") => (Annotation, false),
            (Appearance, b"N" | b"R" | b"D") => (AppearanceStates, true),
            (AppearanceChars, b"I" | b"RI" | b"IX") => (XObject, true),
            (AcroForm, b"Fields" | b"CO") => (Annotation, false),
            (OutputIntent, b"DestOutputProfile") => (ColorSpace, true),
            (Struct, b"K" | b"P" | b"ParentTree" | b"Nums" | b"Kids" | b"IDTree" | b"Names") => {
                (Struct, false)
            }
            (Struct, b"Stm") => (Content, true),
            (Struct, b"Obj") => (XObject, true),
            (DecodeParms, b"JBIG2Globals") => (Other, true),
            _ => (Other, false),
        }
    }

    /// The role of a stream's own dictionary reached in this role.
    fn of_stream(self) -> Role {
        match self {
            Role::AppearanceStates => Role::XObject,
            other => other,
        }
    }
}

/// Where a value sits, as far as streams are concerned: stream data is copied only where the
/// specification puts streams in the parent's kind of dictionary, so one hung under a made-up
/// key, or under a real key of another kind of dictionary (a PE, a second document), is never
/// copied.
#[derive(Clone, Copy)]
struct Slot {
    /// A stream may sit here.
    stream_ok: bool,
    /// What the value here is (a dictionary's, an array's items', a stream's dictionary's).
    role: Role,
    /// A stream here is a font program of this format and must parse as one.
    font: Option<font::Format>,
}

impl Slot {
    const NONE: Slot = Slot {
        stream_ok: false,
        role: Role::Other,
        font: None,
    };

    /// A value of `role` where no stream may sit (annotations listed in `/Annots`).
    fn of(role: Role) -> Slot {
        Slot { role, ..Slot::NONE }
    }

    /// The value under `key` in `parent`, a dictionary of role `role`.
    fn under(role: Role, key: &[u8], parent: &Dictionary) -> Slot {
        let (child, stream_ok) = role.child(key, parent);
        Slot {
            stream_ok,
            role: child,
            font: match (child, key) {
                (Role::FontProgram, b"FontFile") => Some(font::Format::Type1),
                (Role::FontProgram, b"FontFile2") => Some(font::Format::TrueType),
                (Role::FontProgram, b"FontFile3") => Some(font::Format::FontFile3),
                _ => None,
            },
        }
    }
}

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
    /// The font format each copied stream was checked as (None: not a font program).
    stream_fonts: HashMap<ObjectId, Option<font::Format>>,
    queue: VecDeque<(ObjectId, ObjectId, Slot)>,
    next: u32,
    /// Leaf pages written by [`Self::page_tree`].
    pages: usize,
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
            stream_fonts: HashMap::new(),
            queue: VecDeque::new(),
            next: 1,
            pages: 0,
            cx,
        }
    }

    /// Builds the new document; returns it with its page count.
    fn run(mut self) -> Result<(Document, usize)> {
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
        while let Some((src_id, new_id, slot)) = self.queue.pop_front() {
            steps += 1;
            if steps.is_multiple_of(1024) {
                self.cx.check_deadline()?;
            }
            let obj = match self.src.objects.get(&src_id) {
                Some(obj) => {
                    self.clean_object(obj, &format!("object {} {}", src_id.0, src_id.1), 0, slot)?
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
        let pages = self.pages;
        Ok((self.out, pages))
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

    fn reference(&mut self, src_id: ObjectId, loc: &str, slot: Slot) -> Result<Object> {
        let is_stream = matches!(self.src.objects.get(&src_id), Some(Object::Stream(_)));
        if let Some(id) = self.map.get(&src_id) {
            // A stream is checked (and a font program rebuilt) as what it was first reached as;
            // the same object reached again as another kind of font — or as a font after being
            // taken as an image — would be copied without that kind's check.
            let admitted = self.stream_fonts.get(&src_id).copied().flatten();
            if is_stream && admitted != slot.font {
                return Err(Error::malformed(format!(
                    "{loc}: one stream is used as two kinds of object"
                )));
            }
            return Ok(Object::Reference(*id));
        }
        if let Some(Object::Stream(s)) = self.src.objects.get(&src_id) {
            if !self.stream_allowed(s, loc, slot)? {
                return Ok(Object::Null);
            }
            self.stream_fonts.insert(src_id, slot.font);
        }
        let id = self.alloc(src_id);
        self.queue.push_back((src_id, id, slot));
        Ok(Object::Reference(id))
    }

    /// Whether a stream may be copied where it sits; reports it when not. Font programs must
    /// also parse as the font format their key names.
    fn stream_allowed(&mut self, s: &Stream, loc: &str, slot: Slot) -> Result<bool> {
        if !slot.stream_ok {
            self.cx.remove(
                What::UnknownPart,
                loc.to_string(),
                format!(
                    "stream under a key not on the allowlist for this kind of dictionary ({} bytes)",
                    s.content.len()
                ),
            );
            return Ok(false);
        }
        if s.dict
            .get(b"Subtype")
            .and_then(Object::as_name)
            .is_ok_and(|n| n == b"PS")
        {
            self.cx
                .remove(What::UnknownPart, loc.to_string(), "PostScript XObject");
            return Ok(false);
        }
        if let Some(format) = slot.font {
            let limit =
                usize::try_from(self.cx.policy().limits.max_pdf_stream_bytes).unwrap_or(usize::MAX);
            let data = match s.decompressed_content_with_limit(limit) {
                Ok(data) => Some(data),
                Err(_) if !s.dict.has(b"Filter") => Some(s.content.clone()),
                Err(_) => None,
            };
            let verdict = match data {
                Some(data) => font::check(format, &s.dict, &data, self.src),
                None => Err("its data does not decode".to_string()),
            };
            if let Err(why) = verdict {
                self.cx.remove(
                    What::EmbeddedFont,
                    loc.to_string(),
                    format!("embedded font program dropped: {why}"),
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn clean_catalog(&mut self, catalog: &Dictionary) -> Result<Dictionary> {
        let mut out = Dictionary::new();
        // The page tree first, so that every page is claimed (and rebuilt with its inherited
        // attributes) before a destination elsewhere can queue it as a plain object.
        let pages = catalog
            .get(b"Pages")
            .map_err(|_| Error::malformed("catalog has no /Pages"))?;
        let pages = self.page_tree(pages)?;
        out.set("Pages", pages);
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
                    let v = self.clean(value, &loc, 0, Slot::under(Role::Catalog, key, catalog))?;
                    out.set("Metadata", v);
                }
                // Built first, above.
                b"Pages" => {}
                k if CATALOG_KEEP.contains(&k) => {
                    let v = self.clean(value, &loc, 0, Slot::under(Role::Catalog, key, catalog))?;
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
        out.set("Type", Object::Name(b"Catalog".to_vec()));
        Ok(out)
    }

    /// Rebuilds the page tree flat: one /Pages node whose kids are the leaf pages in order,
    /// each carrying what it inherited. A tree that reaches an inner node twice (a loop) is
    /// refused: copying it would give a file viewers and qpdf read differently. A page listed
    /// twice becomes two page objects.
    fn page_tree(&mut self, value: &Object) -> Result<Object> {
        let Object::Reference(root) = value else {
            return Err(Error::malformed("catalog /Pages is not a reference"));
        };
        let tree = collect_pages(self.src, *root)?;
        let pages_id = self.fresh_id();
        // Anything else pointing at an inner node (a /Parent, a structure element) now points
        // at the one node there is.
        for node in &tree.nodes {
            self.map.insert(*node, pages_id);
        }
        let mut kids = Vec::with_capacity(tree.leaves.len());
        // A page listed many times has its contents inflated and read once.
        let mut contents_checked = std::collections::HashSet::new();
        for (n, (leaf, inherited)) in tree.leaves.iter().enumerate() {
            // A page listed again gets an object of its own.
            let new_id = if self.map.contains_key(leaf) {
                self.fresh_id()
            } else {
                self.alloc(*leaf)
            };
            let mut page = self
                .src
                .get_dictionary(*leaf)
                .map_err(|_| Error::malformed("a page is not a dictionary"))?
                .clone();
            page.remove(b"Parent");
            for (key, v) in inherited {
                if !page.has(key) {
                    page.set(key.clone(), v.clone());
                }
            }
            page.set("Type", Object::Name(b"Page".to_vec()));
            // A /Contents that is neither a stream nor an array of streams (a damaged content
            // object that lopdf read as something else) would be copied through as it is, and
            // qpdf, like a viewer, would have to guess what the page shows.
            let first_time = contents_checked.insert(*leaf);
            if let (Ok(contents), true) = (page.get(b"Contents"), first_time) {
                let is_stream = |o: &Object| matches!(resolve(self.src, o), Object::Stream(_));
                let ok = match resolve(self.src, contents) {
                    Object::Null | Object::Stream(_) => true,
                    Object::Array(items) => items.iter().all(is_stream),
                    _ => false,
                };
                if !ok {
                    return Err(Error::malformed(format!(
                        "page {} /Contents is not a stream or an array of streams",
                        n + 1
                    )));
                }
                // The page's content streams together must read as PDF tokens (strings and
                // hex strings closed, inline images ended): a damaged one would be copied
                // through and every reader would have to guess where its tokens end.
                let streams: Vec<&lopdf::Stream> = match resolve(self.src, contents) {
                    Object::Stream(st) => vec![st],
                    Object::Array(items) => items
                        .iter()
                        .filter_map(|o| match resolve(self.src, o) {
                            Object::Stream(st) => Some(st),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let limit = usize::try_from(self.cx.policy().limits.max_pdf_stream_bytes)
                    .unwrap_or(usize::MAX);
                let verdict = match streams.as_slice() {
                    // One unfiltered stream (the common case) is read where it lies: the white
                    // space a join would append changes no verdict.
                    [only] if !only.dict.has(b"Filter") => content_tokens_ok(&only.content),
                    _ => {
                        let mut joined = Vec::new();
                        for st in streams {
                            if st.dict.has(b"Filter") {
                                let data =
                                    st.decompressed_content_with_limit(limit).map_err(|e| {
                                        Error::malformed(format!(
                                            "page {} contents do not decode: {e}",
                                            n + 1
                                        ))
                                    })?;
                                joined.extend_from_slice(&data);
                            } else {
                                joined.extend_from_slice(&st.content);
                            }
                            // Streams of one page are read as if joined by white space.
                            joined.push(b'\n');
                        }
                        content_tokens_ok(&joined)
                    }
                };
                if let Err(why) = verdict {
                    return Err(Error::malformed(format!(
                        "page {} contents are not well-formed: {why}",
                        n + 1
                    )));
                }
            }
            let mut cleaned = self
                .clean_dict(&page, &format!("page {}", n + 1), 0, Role::Page)?
                .ok_or_else(|| Error::malformed("a page is an action dictionary"))?;
            cleaned.set("Parent", Object::Reference(pages_id));
            self.out.objects.insert(new_id, Object::Dictionary(cleaned));
            kids.push(Object::Reference(new_id));
        }
        self.pages = kids.len();
        let count = i64::try_from(kids.len()).unwrap_or(i64::MAX);
        let mut pages = Dictionary::new();
        pages.set("Type", Object::Name(b"Pages".to_vec()));
        pages.set("Kids", Object::Array(kids));
        pages.set("Count", Object::Integer(count));
        self.out.objects.insert(pages_id, Object::Dictionary(pages));
        Ok(Object::Reference(pages_id))
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
                    let v = self.clean(v, &here, 0, Slot::NONE)?;
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
                    let v = self.clean(v, &here, 0, Slot::under(Role::AcroForm, key, form))?;
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
                Ok(Some(self.clean(value, loc, 0, Slot::NONE)?))
            }
            Object::Dictionary(d) => {
                let kind = d.get(b"S").and_then(Object::as_name).unwrap_or(b"");
                let keep = kind == b"GoTo" || (kind == b"URI" && self.uri_kept(d));
                if keep {
                    return Ok(Some(self.clean(value, loc, 0, Slot::NONE)?));
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

    fn clean(&mut self, obj: &Object, loc: &str, depth: u32, slot: Slot) -> Result<Object> {
        if depth > 64 {
            return Err(Error::malformed(format!(
                "objects nested too deeply at {loc}"
            )));
        }
        Ok(match obj {
            Object::Reference(id) => self.reference(*id, loc, slot)?,
            Object::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.clean(item, loc, depth + 1, slot)?);
                }
                Object::Array(out)
            }
            Object::Dictionary(d) => match self.clean_dict(d, loc, depth, slot.role)? {
                Some(d) => Object::Dictionary(d),
                None => Object::Null,
            },
            Object::Stream(s) => {
                if self.stream_allowed(s, loc, slot)? {
                    self.clean_stream(s, loc, depth, slot)?
                } else {
                    Object::Null
                }
            }
            other => other.clone(),
        })
    }

    fn clean_object(&mut self, obj: &Object, loc: &str, depth: u32, slot: Slot) -> Result<Object> {
        self.clean(obj, loc, depth, slot)
    }

    fn clean_stream(&mut self, s: &Stream, loc: &str, depth: u32, slot: Slot) -> Result<Object> {
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
        let mut dict = match self.clean_dict(&s.dict, loc, depth, slot.role.of_stream())? {
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
        let sfnt = match slot.font {
            Some(font::Format::TrueType) => true,
            Some(font::Format::FontFile3) => s
                .dict
                .get(b"Subtype")
                .and_then(Object::as_name)
                .is_ok_and(|n| n == b"OpenType"),
            _ => false,
        };
        if sfnt {
            // A TrueType/OpenType program is written anew from its known tables (it was
            // checked when it was reached, so it decodes and parses).
            let limit =
                usize::try_from(self.cx.policy().limits.max_pdf_stream_bytes).unwrap_or(usize::MAX);
            let data = s
                .decompressed_content_with_limit(limit)
                .or_else(|e| {
                    if s.dict.has(b"Filter") {
                        Err(e)
                    } else {
                        Ok(s.content.clone())
                    }
                })
                .map_err(|e| Error::malformed(format!("font program at {loc}: {e}")))?;
            let (font, dropped) = font::rebuild_sfnt(&data)
                .map_err(|e| Error::malformed(format!("font program at {loc}: {e}")))?;
            for tag in dropped {
                self.cx.remove(
                    What::EmbeddedFont,
                    loc.to_string(),
                    format!("font table '{tag}' is not a font table"),
                );
            }
            for key in [
                &b"Filter"[..],
                b"DecodeParms",
                b"Length",
                b"Length2",
                b"Length3",
            ] {
                dict.remove(key);
            }
            if slot.font == Some(font::Format::TrueType) {
                dict.set("Length1", i64::try_from(font.len()).unwrap_or(i64::MAX));
            }
            let mut out = Stream::new(dict, font);
            out.compress()
                .map_err(|e| Error::internal(format!("compressing a font program: {e}")))?;
            return Ok(Object::Stream(out));
        }
        let mut out = Stream::new(dict, s.content.clone());
        out.allows_compression = s.allows_compression;
        Ok(Object::Stream(out))
    }

    /// Cleans a dictionary of role `role` (which says where its values may be streams).
    /// appearance states, glyphs) whose values may be streams.
    fn clean_dict(
        &mut self,
        d: &Dictionary,
        loc: &str,
        depth: u32,
        role: Role,
    ) -> Result<Option<Dictionary>> {
        // An action is known by its /S, wherever the dictionary sits and whatever its /Type
        // says (viewers run a /Launch under /PresSteps /NA that has no /Type /Action): only
        // an in-document GoTo, or a URI the link policy keeps, stays.
        let s = d
            .get(b"S")
            .map(|o| resolve(self.src, o))
            .and_then(Object::as_name)
            .ok();
        let is_action =
            d.has_type(b"Action") || d.has(b"JS") || s.is_some_and(|s| ACTION_TYPES.contains(&s));
        if is_action {
            let kind = s.unwrap_or(b"");
            if kind != b"GoTo" && !(kind == b"URI" && self.uri_kept(d)) {
                let detail = action_detail(self, d, kind);
                let what = match kind {
                    b"JavaScript" => What::Javascript,
                    _ if d.has(b"JS") => What::Javascript,
                    b"URI" => What::Hyperlink,
                    b"Rendition" | b"Sound" | b"Movie" | b"RichMediaExecute" => What::Multimedia,
                    b"GoToE" => What::EmbeddedFile,
                    _ => What::Action,
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
                // A navigation node's /Next is the next node, not an action: it is cleaned like
                // any dictionary (and the actions in it are still judged by their /S).
                b"Next"
                    if resolve(self.src, value)
                        .as_dict()
                        .is_ok_and(|n| !n.has(b"S")) =>
                {
                    let v = self.clean(value, &here, depth + 1, Slot::NONE)?;
                    if !matches!(v, Object::Null) {
                        out.set(key.clone(), v);
                    }
                }
                b"A" | b"PA" | b"NA" | b"Next" => {
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
                    let v = self.clean(value, &here, depth + 1, Slot::under(role, key, d))?;
                    // A dropped action or stream takes its key with it.
                    if !matches!(v, Object::Null) || matches!(value, Object::Null) {
                        out.set(key.clone(), v);
                    }
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
            kept.push(self.clean(item, &here, depth + 1, Slot::of(Role::Annotation))?);
        }
        Ok(Object::Array(kept))
    }
}

/// Attributes a page inherits from the page tree (key, value), nearest ancestor last.
type Inherited = Vec<(Vec<u8>, Object)>;

/// A page tree read from the catalog: the leaf pages in order with their inherited attributes,
/// and the inner nodes.
struct PageTree {
    leaves: Vec<(ObjectId, Inherited)>,
    nodes: Vec<ObjectId>,
}

/// Walks the page tree depth-first in document order.
///
/// # Errors
/// Malformed when an inner node is reached twice (a loop), a node is not a
/// dictionary, a kid is not a reference, an inner node has no /Kids array, the tree is deeper
/// than 64 levels or holds no page.
fn collect_pages(src: &Document, root: ObjectId) -> Result<PageTree> {
    let mut tree = PageTree {
        leaves: Vec::new(),
        nodes: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(ObjectId, Inherited, u32)> = vec![(root, Vec::new(), 0)];
    while let Some((id, inherited, depth)) = stack.pop() {
        if depth > 64 {
            return Err(Error::malformed("the page tree is deeper than 64 levels"));
        }
        let Ok(dict) = src.get_dictionary(id) else {
            return Err(Error::malformed(format!(
                "page tree node {} {} is not a dictionary",
                id.0, id.1
            )));
        };
        let inner = dict.has_type(b"Pages") || (dict.has(b"Kids") && !dict.has_type(b"Page"));
        if !inner && dict.has(b"Kids") {
            // Typed a page but with kids: qpdf and some viewers read it as an inner node,
            // others as a page; which pages the document has cannot be told.
            return Err(Error::malformed(format!(
                "page tree node {} {} is typed /Page but has /Kids",
                id.0, id.1
            )));
        }
        if !inner {
            // A page listed twice is shown twice; the rebuild writes it as two pages (what
            // qpdf does too), so it is no loop.
            tree.leaves.push((id, inherited));
            continue;
        }
        if !seen.insert(id) {
            return Err(Error::malformed(format!(
                "the page tree reaches node {} {} twice (a loop)",
                id.0, id.1
            )));
        }
        let mut inherited = inherited;
        for key in INHERITABLE {
            if let Ok(v) = dict.get(key) {
                inherited.retain(|(k, _)| k.as_slice() != *key);
                inherited.push((key.to_vec(), v.clone()));
            }
        }
        let Ok(kids) = dict
            .get(b"Kids")
            .map(|k| resolve(src, k))
            .and_then(Object::as_array)
        else {
            return Err(Error::malformed(format!(
                "page tree node {} {} has no /Kids array",
                id.0, id.1
            )));
        };
        tree.nodes.push(id);
        for kid in kids.iter().rev() {
            let Object::Reference(kid) = kid else {
                return Err(Error::malformed("a page tree kid is not a reference"));
            };
            stack.push((*kid, inherited.clone(), depth + 1));
        }
    }
    if tree.leaves.is_empty() {
        return Err(Error::malformed("the page tree has no pages"));
    }
    Ok(tree)
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

/// Byte classes of the content-stream tokenizer (ISO 32000-1 §7.2.2): white space, delimiters,
/// regular characters. A table, not a chain of comparisons per byte: this runs over every
/// byte of every page's content, twice per file (the rebuild and its re-check).
const CLASS_REGULAR: u8 = 0;
const CLASS_WS: u8 = 1;
const CLASS_DELIM: u8 = 2;
const CLASSES: [u8; 256] = {
    let mut t = [CLASS_REGULAR; 256];
    let ws: &[u8] = &[0, b'\t', b'\n', 0x0C, b'\r', b' '];
    let mut i = 0;
    while i < ws.len() {
        t[ws[i] as usize] = CLASS_WS;
        i += 1;
    }
    let delim: &[u8] = b"()<>[]{}/%";
    let mut i = 0;
    while i < delim.len() {
        t[delim[i] as usize] = CLASS_DELIM;
        i += 1;
    }
    t
};

/// Checks that a content stream reads as PDF tokens (ISO 32000-1 §7.2, §8.9.7): literal strings
/// closed (nested parentheses, backslash escapes), hex strings closed and made of hex digits, no
/// stray `)` or `>`, no `{` or `}`, and every inline image's data ended by `EI`. It judges only
/// where tokens end, not what the operators mean. White space at the end changes nothing, so a
/// page's one stream is read where it lies, not copied out first.
fn content_tokens_ok(data: &[u8]) -> std::result::Result<(), &'static str> {
    let class = |b: u8| CLASSES[usize::from(b)];
    // White space or a delimiter: where a regular token ends.
    let ends_token = |b: u8| class(b) != CLASS_REGULAR;
    // Open arrays (`[`) and dictionaries (`<`, for `<<`), innermost last.
    let mut open: Vec<u8> = Vec::new();
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        match b {
            _ if class(b) == CLASS_WS => i += 1,
            b'%' => {
                // To the end of the line.
                i = memchr::memchr2(b'\n', b'\r', data.get(i..).unwrap_or_default())
                    .map_or(data.len(), |at| i + at);
            }
            b'(' => {
                // Balanced parentheses; a backslash escapes the byte after it.
                let mut depth = 0usize;
                loop {
                    let Some(at) = data
                        .get(i..)
                        .and_then(|rest| memchr::memchr3(b'\\', b'(', b')', rest))
                    else {
                        return Err("a string is not closed");
                    };
                    i += at;
                    match data.get(i) {
                        Some(b'\\') => i += 2,
                        Some(b'(') => {
                            depth += 1;
                            i += 1;
                        }
                        _ => {
                            i += 1;
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                    }
                }
            }
            b')' => return Err("a ) closes no string"),
            b'<' if data.get(i + 1) == Some(&b'<') => {
                open.push(b'<');
                i += 2;
            }
            b'>' if data.get(i + 1) == Some(&b'>') => {
                if open.pop() != Some(b'<') {
                    return Err("a >> closes no dictionary");
                }
                i += 2;
            }
            b'<' => {
                i += 1;
                loop {
                    match data.get(i) {
                        None => return Err("a hex string is not closed"),
                        Some(b'>') => {
                            i += 1;
                            break;
                        }
                        Some(&c) if c.is_ascii_hexdigit() || class(c) == CLASS_WS => i += 1,
                        Some(_) => return Err("a hex string holds a character that is not hex"),
                    }
                }
            }
            b'>' => return Err("a > closes nothing"),
            b'[' => {
                open.push(b'[');
                i += 1;
            }
            b']' => {
                if open.pop() != Some(b'[') {
                    return Err("a ] closes no array");
                }
                i += 1;
            }
            // Braces belong to PostScript calculator functions, never to a content stream:
            // qpdf reads one as null with a warning, and another reader may do otherwise.
            b'{' | b'}' => return Err("a brace, which no content stream may hold"),
            _ => {
                // A name, number or operator: regular characters up to a delimiter (a name's
                // leading `/` is its first byte).
                let start = i;
                let rest = data.get(i + 1..).unwrap_or_default();
                i += 1 + rest
                    .iter()
                    .position(|&c| ends_token(c))
                    .unwrap_or(rest.len());
                let token = data.get(start..i).unwrap_or_default();
                // Inside an array or dictionary only operands may stand (decided only there:
                // most tokens are outside one).
                if !open.is_empty() {
                    let operand = token.starts_with(b"/")
                        || matches!(token, b"true" | b"false" | b"null")
                        || (token.iter().any(u8::is_ascii_digit)
                            && token
                                .iter()
                                .all(|c| matches!(c, b'+' | b'-' | b'.' | b'0'..=b'9')));
                    if !operand {
                        return Err("an operator inside an array or dictionary");
                    }
                }
                if token == b"ID" {
                    // Inline image data: one white-space byte, then anything up to an `EI`
                    // followed by white space, a delimiter or the end.
                    i += 1;
                    let image = data.get(i..).unwrap_or_default();
                    let end = memchr::memmem::find_iter(image, b"EI")
                        .find(|&at| image.get(at + 2).is_none_or(|&c| ends_token(c)));
                    match end {
                        Some(at) => i += at + 2,
                        None => return Err("an inline image has no EI"),
                    }
                }
            }
        }
    }
    if !open.is_empty() {
        return Err("an array or dictionary is not closed");
    }
    Ok(())
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

// memchr's searchers, not a window at a time: these run over the whole file before any
// deadline check, and a window loop over tens of megabytes is seconds in a debug build.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(hay, needle).count()
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(hay, needle)
}

#[cfg(test)]
mod content_token_tests {
    use super::content_tokens_ok;

    /// The first, byte-at-a-time reading of the tokenizer, kept as the oracle for the table and
    /// memchr one: both must give the same verdict on every input.
    fn byte_at_a_time(data: &[u8]) -> std::result::Result<(), &'static str> {
        let ws = |b: u8| matches!(b, 0 | b'\t' | b'\n' | 0x0C | b'\r' | b' ');
        let delim = |b: u8| {
            matches!(
                b,
                b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
            )
        };
        // Open arrays (`[`) and dictionaries (`<`, for `<<`), innermost last.
        let mut open: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match b {
                _ if ws(b) => i += 1,
                b'%' => {
                    while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                        i += 1;
                    }
                }
                b'(' => {
                    let mut depth = 0usize;
                    loop {
                        let Some(&c) = data.get(i) else {
                            return Err("a string is not closed");
                        };
                        i += 1;
                        match c {
                            b'\\' => i += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                b')' => return Err("a ) closes no string"),
                b'<' if data.get(i + 1) == Some(&b'<') => {
                    open.push(b'<');
                    i += 2;
                }
                b'>' if data.get(i + 1) == Some(&b'>') => {
                    if open.pop() != Some(b'<') {
                        return Err("a >> closes no dictionary");
                    }
                    i += 2;
                }
                b'<' => {
                    i += 1;
                    loop {
                        match data.get(i) {
                            None => return Err("a hex string is not closed"),
                            Some(b'>') => {
                                i += 1;
                                break;
                            }
                            Some(&c) if c.is_ascii_hexdigit() || ws(c) => i += 1,
                            Some(_) => {
                                return Err("a hex string holds a character that is not hex")
                            }
                        }
                    }
                }
                b'>' => return Err("a > closes nothing"),
                b'[' => {
                    open.push(b'[');
                    i += 1;
                }
                b']' => {
                    if open.pop() != Some(b'[') {
                        return Err("a ] closes no array");
                    }
                    i += 1;
                }
                // Braces belong to PostScript calculator functions, never to a content stream:
                // qpdf reads one as null with a warning, and another reader may do otherwise.
                b'{' | b'}' => return Err("a brace, which no content stream may hold"),
                _ => {
                    // A name, number or operator: regular characters up to a delimiter.
                    let start = i;
                    i += 1;
                    while i < data.len() && !ws(data[i]) && !delim(data[i]) {
                        i += 1;
                    }
                    let token = &data[start..i];
                    let operand = token.starts_with(b"/")
                        || matches!(token, b"true" | b"false" | b"null")
                        || (token.iter().any(u8::is_ascii_digit)
                            && token.iter().all(|c| b"+-.0123456789".contains(c)));
                    if !open.is_empty() && !operand {
                        return Err("an operator inside an array or dictionary");
                    }
                    if token == b"ID" {
                        // Inline image data: one white-space byte, then anything up to an `EI`
                        // followed by white space, a delimiter or the end.
                        i += 1;
                        let mut found = false;
                        while i + 1 < data.len() {
                            if data[i] == b'E'
                                && data[i + 1] == b'I'
                                && data.get(i + 2).is_none_or(|&c| ws(c) || delim(c))
                            {
                                i += 2;
                                found = true;
                                break;
                            }
                            i += 1;
                        }
                        if !found {
                            return Err("an inline image has no EI");
                        }
                    }
                }
            }
        }
        if !open.is_empty() {
            return Err("an array or dictionary is not closed");
        }
        Ok(())
    }

    /// Inputs made of the bytes the tokenizer cares about, so that strings, escapes, hex
    /// strings, arrays, dictionaries, comments, names, numbers and inline images meet often.
    fn content_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(&b"("[..]),
            Just(&b")"[..]),
            Just(&b"\\"[..]),
            Just(&b"<"[..]),
            Just(&b">"[..]),
            Just(&b"<<"[..]),
            Just(&b">>"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b"{"[..]),
            Just(&b"%"[..]),
            Just(&b"/"[..]),
            Just(&b" "[..]),
            Just(&b"\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"\x00"[..]),
            Just(&b"ID"[..]),
            Just(&b"EI"[..]),
            Just(&b"E"[..]),
            Just(&b"I"[..]),
            Just(&b"Tj"[..]),
            Just(&b"12"[..]),
            Just(&b"-.5"[..]),
            Just(&b"+"[..]),
            Just(&b"true"[..]),
            Just(&b"null"[..]),
            Just(&b"4a"[..]),
            Just(&b"zz"[..]),
            Just(&b"\xff"[..]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|ps| ps.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn the_fast_tokenizer_judges_every_content_as_the_byte_at_a_time_one_did(
            data in content_like()
        ) {
            proptest::prop_assert_eq!(content_tokens_ok(&data), byte_at_a_time(&data));
            // A page's one stream is read without the newline a join appends.
            let mut joined = data.clone();
            joined.push(b'\n');
            proptest::prop_assert_eq!(content_tokens_ok(&data), byte_at_a_time(&joined));
        }

        #[test]
        fn the_fast_tokenizer_agrees_on_arbitrary_bytes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
        ) {
            proptest::prop_assert_eq!(content_tokens_ok(&data), byte_at_a_time(&data));
        }
    }

    #[test]
    fn well_formed_content_reads_and_damaged_content_does_not() {
        let good = b"BT /F1 12 Tf (a (nested) \\) string) Tj <48656c6c6f> Tj ET\n<< /A 1 >> BDC EMC\n% c\nBI /W 1 /H 1 ID \x00\xffEI Q";
        assert_eq!(content_tokens_ok(good), Ok(()));
        for bad in [
            &b"BT (never closed Tj ET"[..],
            b"BT <48656c Tj ET",
            b"BT <48zz> Tj ET",
            b"q ) Q",
            b"BI /W 1 ID \x01\x02\x03",
            b"[(a) 10 (b) TJ",
            b"(a) ] TJ",
            b"[(a) Tj] TJ",
            b"/P << /MCID 0 BDC",
            b"BT /F1 12 Tf } (a) Tj ET",
            b"q { 1 0 0 1 0 0 cm } Q",
        ] {
            assert!(
                content_tokens_ok(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
