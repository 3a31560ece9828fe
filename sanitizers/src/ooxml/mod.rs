//! Office Open XML rebuilder (docx/docm/dotx/dotm, xlsx/xlsm/xltx/xltm, pptx/pptm/ppsx/ppsm/potx/potm).
//!
//! Owns: reading the ZIP package under hardening rules, walking relationships from the package
//! root, keeping only parts reached through allowlisted relationship types whose content type
//! is on the allowlist, re-serialising every kept XML part through our own tree with active
//! elements removed, and writing a new package with regenerated `[Content_Types].xml` and
//! `.rels` parts. A macro-enabled main content type becomes its macro-free twin.
//! Invariants: no part is copied without having been reached by an allowed relationship and
//! checked (XML re-serialised, binaries sniffed); a relationship removed from a part also
//! removes the elements that reference it, so the document stays valid; anything ambiguous in
//! the ZIP (duplicate or overlapping entries, escaping names, encryption, bombs) is an error.
//! The main part is filtered first and alone; the other XML parts of a large package are
//! filtered on two scoped threads, and their findings are joined in part-name order so the
//! report never depends on scheduling.
//! Must never: copy an unknown part, keep an external relationship other than a hyperlink
//! allowed by policy, or write a part the walk did not clean.

pub mod content_types;
mod fields;
mod filter;
mod package;
pub mod rels;
pub mod xml;

use crate::util::short;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Cursor, Write};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

use content_types::ContentTypes;
use rels::Relationship;

/// The relationships namespace (transitional and strict).
pub(crate) const NS_R: &[&str] = &[
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://purl.oclc.org/ooxml/officeDocument/relationships",
];
/// WordprocessingML.
pub(crate) const NS_W: &[&str] = &[
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "http://purl.oclc.org/ooxml/wordprocessingml/main",
];
/// SpreadsheetML.
pub(crate) const NS_S: &[&str] = &[
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",
];

/// Rebuilds Office Open XML packages.
pub struct OoxmlSanitizer;

impl Sanitizer for OoxmlSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[
            FileKind::Docx,
            FileKind::Docm,
            FileKind::Dotx,
            FileKind::Dotm,
            FileKind::Xlsx,
            FileKind::Xlsm,
            FileKind::Xltx,
            FileKind::Xltm,
            FileKind::Xlam,
            FileKind::Pptx,
            FileKind::Pptm,
            FileKind::Ppsx,
            FileKind::Ppsm,
            FileKind::Potx,
            FileKind::Potm,
        ]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let pkg = package::read(input, &cx.policy().limits)?;
        let types = ContentTypes::parse(
            pkg.get("[Content_Types].xml")
                .ok_or_else(|| Error::malformed("no [Content_Types].xml"))?,
        )?;
        let root_rels = rels::parse(
            pkg.get("_rels/.rels")
                .ok_or_else(|| Error::malformed("no _rels/.rels"))?,
        )?;
        let main: Vec<&Relationship> = root_rels
            .iter()
            .filter(|r| r.type_name() == "officeDocument" && !r.external)
            .collect();
        let [main] = main.as_slice() else {
            return Err(Error::malformed(
                "package must have exactly one officeDocument relationship",
            ));
        };
        let main_part = rels::resolve("", &main.target)?;
        let main_type = types
            .of(&main_part)
            .ok_or_else(|| Error::malformed("main part has no content type"))?;
        let main_kind = content_types::kind_of_main_type(main_type).ok_or_else(|| {
            Error::unsupported(format!("main part type {main_type} is not rebuilt"))
        })?;
        if main_kind != kind {
            return Err(Error::malformed(format!(
                "main part says {main_kind}, detection said {kind}"
            )));
        }
        let out_kind = kind.macro_free();
        let out_main_type = content_types::main_type_of(out_kind)
            .unwrap_or(main_type)
            .to_string();

        let walk = Walk::run(&pkg, &types, root_rels, &main_part, cx)?;
        let mut written: Vec<(String, Cow<'_, [u8]>)> = Vec::new();
        let mut listed: Vec<(String, String)> = Vec::new();

        // The main part first and alone: a workbook names the macro sheets that other
        // sheets must not use. The other XML parts are independent of each other and are
        // rewritten on up to `PART_THREADS` threads; their findings are joined in name
        // order, so the report does not depend on scheduling.
        let mut state = filter::PackageState::default();
        let rewrite = |name: &str, state: &mut filter::PackageState, cx: &mut Context<'_>| {
            let removed = walk.removed_ids.get(name).cloned().unwrap_or_default();
            filter::rewrite_part(name, walk.kept[name].bytes, &removed, state, cx)
        };
        let mut rewritten: HashMap<&str, Vec<u8>> = HashMap::new();
        if walk.kept.get(&main_part).map(|p| p.format) == Some(PartFormat::Xml) {
            cx.check_deadline()?;
            rewritten.insert(&main_part, rewrite(&main_part, &mut state, cx)?);
        }
        let others: Vec<(&str, usize)> = walk
            .kept
            .iter()
            .filter(|(name, part)| **name != main_part && part.format == PartFormat::Xml)
            .map(|(name, part)| (name.as_str(), part.bytes.len()))
            .collect();
        for (name, bytes) in rewrite_all(&others, &rewrite, &mut state, cx)? {
            rewritten.insert(name, bytes);
        }
        state.check_consistent()?;

        let mut order: Vec<&String> = walk.kept.keys().collect();
        order.sort_by_key(|name| (*name != &main_part, (*name).clone()));
        for name in order {
            let part = &walk.kept[name];
            let content_type = if *name == main_part {
                out_main_type.clone()
            } else {
                part.content_type.clone()
            };
            let bytes = match rewritten.remove(name.as_str()) {
                Some(bytes) => Cow::Owned(bytes),
                None if part.format == PartFormat::Binary => Cow::Borrowed(part.bytes),
                None => return Err(Error::internal(format!("{name} was not rewritten"))),
            };
            if let Some(rels) = walk.kept_rels.get(name.as_str()) {
                written.push((rels::rels_name_for(name), Cow::Owned(rels::write(rels))));
            }
            written.push((name.clone(), bytes));
            listed.push((name.clone(), content_type));
        }
        if cx.is_recheck() {
            // Every part was parsed and filtered again; the package itself is not needed.
            return Ok(Sanitized::new(Vec::new(), out_kind));
        }

        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(input.len())));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            // Level 1: Office XML still shrinks about tenfold, at a fraction of the default's cost.
            .compression_level(Some(1));
        // Pictures and media are compressed already: storing them saves the time of a
        // deflate that would not shrink them.
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
            let media = [&b"\x89PNG"[..], b"\xFF\xD8\xFF", b"GIF8"]
                .iter()
                .any(|m| bytes.starts_with(m));
            zip.start_file(name, if media { stored } else { options })
                .and_then(|()| zip.write_all(bytes).map_err(zip::result::ZipError::from))
                .map_err(|e| Error::internal(format!("writing {name}: {e}")))
        };
        put("[Content_Types].xml", &ContentTypes::write(&listed))?;
        put("_rels/.rels", &rels::write(&walk.root_rels))?;
        for (name, bytes) in &written {
            put(name, bytes)?;
        }
        let bytes = zip
            .finish()
            .map_err(|e| Error::internal(format!("finishing the package: {e}")))?
            .into_inner();
        Ok(Sanitized::new(bytes, out_kind))
    }
}

/// Lanes used at most to rewrite one package's XML parts (the caller's thread and helpers
/// from the registry's thread budget). Two nearly halves the time of a document dominated by
/// two large parts (styles.xml and stylesWithEffects.xml in a typical Word file).
const PART_THREADS: usize = 2;

/// Below this much XML a second thread costs more than it saves.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// One part's result on a worker thread: its bytes and what it recorded.
type PartDone<'p> = (usize, Vec<u8>, filter::PackageState, Context<'p>);

/// Rewrites the parts named in `jobs` (name, input size) with `rewrite`, on several threads
/// when there is enough XML, and returns the results in the order of `jobs`. Every part gets
/// its own forked state and context, joined back in that order, so the report is the same
/// however the threads were scheduled. A panic on a worker is resumed here and caught by the
/// registry like any other.
fn rewrite_all<'n, F>(
    jobs: &[(&'n str, usize)],
    rewrite: &F,
    state: &mut filter::PackageState,
    cx: &mut Context<'_>,
) -> Result<Vec<(&'n str, Vec<u8>)>>
where
    F: Fn(&str, &mut filter::PackageState, &mut Context<'_>) -> Result<Vec<u8>> + Sync,
{
    let total: usize = jobs.iter().map(|(_, size)| size).sum();
    // Helpers come from the registry's budget, shared by every conversion running now: under
    // load there may be none, and the parts are rewritten on this thread alone.
    let helpers = if jobs.len() < 2 || total < PARALLEL_MIN_BYTES {
        None
    } else {
        Some(cx.helper_threads(PART_THREADS - 1)).filter(|p| p.count() > 0)
    };
    let Some(helpers) = helpers else {
        let mut out = Vec::with_capacity(jobs.len());
        for (name, _) in jobs {
            cx.check_deadline()?;
            out.push((*name, rewrite(name, state, cx)?));
        }
        return Ok(out);
    };

    // Largest part first, each to the least-loaded lane: close to an even split.
    let mut by_size: Vec<usize> = (0..jobs.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(jobs[i].1));
    let mut lanes: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); 1 + helpers.count()];
    for i in by_size {
        if let Some(lane) = lanes.iter_mut().min_by_key(|(load, _)| *load) {
            lane.0 += jobs[i].1;
            lane.1.push(i);
        }
    }

    let base_state: &filter::PackageState = state;
    let base_cx: &Context<'_> = cx;
    let run_lane = |parts: Vec<usize>| -> std::result::Result<Vec<PartDone<'_>>, (usize, Error)> {
        let mut done = Vec::with_capacity(parts.len());
        for i in parts {
            let mut part_state = base_state.fork();
            let mut part_cx = base_cx.fork();
            part_cx.check_deadline().map_err(|e| (i, e))?;
            let bytes =
                rewrite(jobs[i].0, &mut part_state, &mut part_cx).map_err(|e| (i, e))?;
            done.push((i, bytes, part_state, part_cx));
        }
        Ok(done)
    };
    let mut lanes = lanes.into_iter().map(|(_, parts)| parts);
    let own = lanes.next().unwrap_or_default();
    // The first lane runs on this thread; the others on the helpers the permit allows.
    let lane_results = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .map(|parts| scope.spawn(move || run_lane(parts)))
            .collect();
        let mut results = vec![run_lane(own)];
        results.extend(handles.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        results
    });
    drop(helpers);

    let mut slots: Vec<Option<(Vec<u8>, filter::PackageState, Context<'_>)>> =
        (0..jobs.len()).map(|_| None).collect();
    let mut first_error: Option<(usize, Error)> = None;
    for lane in lane_results {
        match lane {
            Ok(done) => {
                for (i, bytes, part_state, part_cx) in done {
                    slots[i] = Some((bytes, part_state, part_cx));
                }
            }
            // The error of the earliest part, as a serial run would have reported it.
            Err((i, e)) if first_error.as_ref().is_none_or(|(j, _)| i < *j) => {
                first_error = Some((i, e));
            }
            Err(_) => {}
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let mut out = Vec::with_capacity(jobs.len());
    for ((name, _), slot) in jobs.iter().zip(slots) {
        let (bytes, part_state, part_cx) =
            slot.ok_or_else(|| Error::internal(format!("{name} was not rewritten")))?;
        state.join(part_state);
        cx.join(part_cx);
        out.push((*name, bytes));
    }
    Ok(out)
}

/// How a kept part is re-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartFormat {
    /// Parsed and re-serialised through our XML tree.
    Xml,
    /// Copied after its magic bytes match its declared media type.
    Binary,
}

struct KeptPart<'a> {
    bytes: &'a [u8],
    content_type: String,
    format: PartFormat,
}

/// The relationship walk: which parts stay, which relationships each keeps and which Ids it lost.
struct Walk<'a> {
    kept: BTreeMap<String, KeptPart<'a>>,
    root_rels: Vec<Relationship>,
    kept_rels: HashMap<String, Vec<Relationship>>,
    removed_ids: HashMap<String, HashMap<String, What>>,
}

impl<'a> Walk<'a> {
    fn run(
        pkg: &'a package::Package<'_>,
        types: &ContentTypes,
        root_rels: Vec<Relationship>,
        main_part: &str,
        cx: &mut Context<'_>,
    ) -> Result<Self> {
        let mut walk = Walk {
            kept: BTreeMap::new(),
            root_rels: Vec::new(),
            kept_rels: HashMap::new(),
            removed_ids: HashMap::new(),
        };
        let mut queue: VecDeque<(String, Vec<Relationship>)> = VecDeque::new();
        queue.push_back((String::new(), root_rels));
        while let Some((source, rels)) = queue.pop_front() {
            cx.check_deadline()?;
            let mut kept_here = Vec::new();
            for rel in rels {
                let location = if source.is_empty() {
                    "/_rels/.rels".to_string()
                } else {
                    format!("/{source}")
                };
                match walk.judge(pkg, types, &source, &rel, main_part, cx, &location)? {
                    Judgement::Keep(target) => {
                        if let Some(target) = target {
                            if !walk.kept.contains_key(&target) {
                                let part = walk.admit(pkg, types, &target)?;
                                match part {
                                    Some(part) => {
                                        walk.kept.insert(target.clone(), part);
                                        let rels_name = rels::rels_name_for(&target);
                                        let child_rels = match pkg.get(&rels_name) {
                                            Some(bytes) => rels::parse(bytes)?,
                                            None => Vec::new(),
                                        };
                                        queue.push_back((target.clone(), child_rels));
                                    }
                                    None => {
                                        cx.remove(What::UnknownPart, format!("/{target}"), format!(
                                            "content type {} is not on the allowlist, or the bytes do not match it",
                                            types.of(&target).unwrap_or("(none)")
                                        ));
                                        walk.removed_ids
                                            .entry(source.clone())
                                            .or_default()
                                            .insert(rel.id.clone(), What::UnknownPart);
                                        continue;
                                    }
                                }
                            }
                        }
                        kept_here.push(rel);
                    }
                    Judgement::Remove(what) => {
                        walk.removed_ids
                            .entry(source.clone())
                            .or_default()
                            .insert(rel.id.clone(), what);
                    }
                }
            }
            if source.is_empty() {
                walk.root_rels = kept_here;
            } else if !kept_here.is_empty() {
                walk.kept_rels.insert(source, kept_here);
            }
        }
        Ok(walk)
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        pkg: &package::Package<'_>,
        types: &ContentTypes,
        source: &str,
        rel: &Relationship,
        main_part: &str,
        cx: &mut Context<'_>,
        location: &str,
    ) -> Result<Judgement> {
        let type_name = rel.type_name();
        let detail = format!("{type_name} → {}", short(&rel.target));
        if rel.external {
            if type_name == "hyperlink" {
                if cx.policy().keep_links && crate::policy::link_allowed(&rel.target) {
                    return Ok(Judgement::Keep(None));
                }
                cx.remove(What::Hyperlink, location, short(&rel.target));
                return Ok(Judgement::Remove(What::Hyperlink));
            }
            let what = match type_name {
                "oleObject" | "package" => What::OleObject,
                "mailMergeSource" | "recipientData" | "dataSource" => What::DataConnection,
                _ => What::ExternalReference,
            };
            cx.remove(what, location, format!("external {detail}"));
            return Ok(Judgement::Remove(what));
        }
        let target = rels::resolve(source, &rel.target)?;
        if type_name == "officeDocument" && target != main_part {
            cx.remove(
                What::UnknownPart,
                location,
                format!("second main document {detail}"),
            );
            return Ok(Judgement::Remove(What::UnknownPart));
        }
        let what = match classify(type_name) {
            RelClass::Keep => {
                if pkg.get(&target).is_none() {
                    cx.warn(format!(
                        "{location}: relationship {} points to a missing part /{target}; dropped",
                        rel.id
                    ));
                    return Ok(Judgement::Remove(What::UnknownPart));
                }
                let _ = types;
                return Ok(Judgement::Keep(Some(target)));
            }
            RelClass::Metadata if !cx.policy().strip_metadata => {
                return Ok(Judgement::Keep(Some(target)));
            }
            RelClass::Metadata => What::Metadata,
            RelClass::Drop(what) => what,
        };
        cx.remove(
            what,
            format!("/{target}"),
            format!("{detail} (from {location})"),
        );
        Ok(Judgement::Remove(what))
    }

    /// Checks a part reached by an allowed relationship against the content-type allowlist.
    fn admit(
        &self,
        pkg: &'a package::Package<'_>,
        types: &ContentTypes,
        name: &str,
    ) -> Result<Option<KeptPart<'a>>> {
        let Some(bytes) = pkg.get(name) else {
            return Ok(None);
        };
        let Some(ct) = types.of(name) else {
            return Ok(None);
        };
        let Some(format) = part_format(ct) else {
            return Ok(None);
        };
        if format == PartFormat::Binary && !binary_matches(ct, bytes) {
            return Ok(None);
        }
        Ok(Some(KeptPart {
            bytes,
            content_type: ct.to_string(),
            format,
        }))
    }
}

enum Judgement {
    /// Keep the relationship (and, for an internal one, its target part).
    Keep(Option<String>),
    /// Drop it; elements referencing its Id go too.
    Remove(What),
}

enum RelClass {
    Keep,
    Metadata,
    Drop(What),
}

/// Relationship types (last URI segment) and what happens to their targets.
fn classify(type_name: &str) -> RelClass {
    match type_name {
        "officeDocument"
        | "styles"
        | "stylesWithEffects"
        | "settings"
        | "webSettings"
        | "fontTable"
        | "numbering"
        | "footnotes"
        | "endnotes"
        | "comments"
        | "commentsExtended"
        | "commentsIds"
        | "commentsExtensible"
        | "people"
        | "header"
        | "footer"
        | "theme"
        | "themeOverride"
        | "image"
        | "glossaryDocument"
        | "worksheet"
        | "chartsheet"
        | "sharedStrings"
        | "calcChain"
        | "table"
        | "tableSingleCells"
        | "pivotTable"
        | "pivotCacheDefinition"
        | "pivotCacheRecords"
        | "drawing"
        | "vmlDrawing"
        | "chart"
        | "chartUserShapes"
        | "chartStyle"
        | "chartColorStyle"
        | "diagramData"
        | "diagramLayout"
        | "diagramQuickStyle"
        | "diagramColors"
        | "diagramDrawing"
        | "slide"
        | "slideLayout"
        | "slideMaster"
        | "notesSlide"
        | "notesMaster"
        | "handoutMaster"
        | "presProps"
        | "viewProps"
        | "tableStyles"
        | "commentAuthors"
        | "tags"
        | "font"
        | "audio"
        | "video"
        | "media"
        | "sheetMetadata"
        | "person"
        | "threadedComment"
        | "slicer"
        | "slicerCache"
        | "timeline"
        | "timelineCache" => RelClass::Keep,
        "core-properties"
        | "metadata"
        | "extended-properties"
        | "custom-properties"
        | "thumbnail" => RelClass::Metadata,
        "vbaProject"
        | "wordVbaData"
        | "vbaProjectSignature"
        | "keyMapCustomizations"
        | "attachedToolbars" => RelClass::Drop(What::Macro),
        "control" | "activeXControl" | "activeXControlBinary" | "ctrlProp" => {
            RelClass::Drop(What::Activex)
        }
        "oleObject" | "package" | "embeddedObject" => RelClass::Drop(What::OleObject),
        "aFChunk" => RelClass::Drop(What::EmbeddedFile),
        "attachedTemplate" | "externalLink" | "externalLinkPath" | "frame" | "subDocument" => {
            RelClass::Drop(What::ExternalReference)
        }
        "connections" | "queryTable" | "xmlMaps" | "volatileDependencies" | "customData" => {
            RelClass::Drop(What::DataConnection)
        }
        "extensibility" | "ui" | "customUI" => RelClass::Drop(What::CustomUi),
        "origin" | "signature" => RelClass::Drop(What::Signature),
        "printerSettings" => RelClass::Drop(What::PrinterSettings),
        "customXml"
        | "customXmlProps"
        | "webextension"
        | "webextensiontaskpanes"
        | "taskpanes"
        | "customProperty" => RelClass::Drop(What::CustomXml),
        "xlMacrosheet" | "xlIntlMacrosheet" | "dialogsheet" => RelClass::Drop(What::XlmMacroSheet),
        _ => RelClass::Drop(What::UnknownPart),
    }
}

/// The allowlist of part content types.
fn part_format(ct: &str) -> Option<PartFormat> {
    let ct = ct.trim();
    const XML_PREFIXES: &[(&str, &[&str])] = &[
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.",
            &[
                "document.main",
                "template.main",
                "styles",
                "settings",
                "webSettings",
                "fontTable",
                "numbering",
                "footnotes",
                "endnotes",
                "comments",
                "header",
                "footer",
                "document.glossary",
            ],
        ),
        (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.",
            &[
                "sheet.main",
                "template.main",
                "worksheet",
                "chartsheet",
                "sharedStrings",
                "styles",
                "calcChain",
                "table",
                "tableSingleCells",
                "pivotTable",
                "pivotCacheDefinition",
                "pivotCacheRecords",
                "comments",
                "sheetMetadata",
            ],
        ),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.",
            &[
                "presentation.main",
                "slideshow.main",
                "template.main",
                "slide",
                "slideLayout",
                "slideMaster",
                "notesSlide",
                "notesMaster",
                "handoutMaster",
                "presProps",
                "viewProps",
                "tableStyles",
                "commentAuthors",
                "comments",
                "tags",
            ],
        ),
        (
            "application/vnd.openxmlformats-officedocument.drawingml.",
            &[
                "chart",
                "chartshapes",
                "diagramData",
                "diagramLayout",
                "diagramStyle",
                "diagramColors",
                "drawing",
            ],
        ),
        (
            "application/vnd.openxmlformats-officedocument.",
            &["theme", "themeOverride", "drawing"],
        ),
        (
            "application/vnd.ms-word.",
            &[
                "stylesWithEffects",
                "commentsExtended",
                "commentsIds",
                "commentsExtensible",
                "people",
                "document.macroEnabled.main",
                "template.macroEnabledTemplate.main",
            ],
        ),
        (
            "application/vnd.ms-excel.",
            &[
                "person",
                "threadedcomments",
                "slicer",
                "slicerCache",
                "timeline",
                "timelineCache",
                "sheet.macroEnabled.main",
                "template.macroEnabled.main",
                "addin.macroEnabled.main",
            ],
        ),
        (
            "application/vnd.ms-powerpoint.",
            &[
                "presentation.macroEnabled.main",
                "slideshow.macroEnabled.main",
                "template.macroEnabled.main",
            ],
        ),
        (
            "application/vnd.ms-office.",
            &["chartstyle", "chartcolorstyle", "drawingml.diagramDrawing"],
        ),
        (
            "application/vnd.openxmlformats-package.",
            &["core-properties"],
        ),
        (
            "application/vnd.openxmlformats-officedocument.",
            &["extended-properties", "custom-properties"],
        ),
    ];
    if ct == "application/vnd.openxmlformats-officedocument.vmlDrawing" {
        return Some(PartFormat::Xml);
    }
    if let Some(base) = ct.strip_suffix("+xml") {
        for (prefix, names) in XML_PREFIXES {
            if let Some(rest) = base.strip_prefix(prefix) {
                if names.iter().any(|n| n.eq_ignore_ascii_case(rest)) {
                    return Some(PartFormat::Xml);
                }
            }
        }
        return None;
    }
    let binary = matches!(
        ct.to_ascii_lowercase().as_str(),
        "image/png"
            | "image/jpeg"
            | "image/jpg"
            | "image/gif"
            | "image/bmp"
            | "image/tiff"
            | "image/x-emf"
            | "image/x-wmf"
            | "image/emf"
            | "image/wmf"
            | "application/vnd.openxmlformats-officedocument.obfuscatedfont"
            | "application/x-fontdata"
            | "application/x-font-ttf"
    ) || ct.starts_with("audio/")
        || ct.starts_with("video/");
    binary.then_some(PartFormat::Binary)
}

/// A binary part must look like what its content type says, and never like a container or a
/// program (a renamed vbaProject.bin or an embedded executable).
fn binary_matches(ct: &str, bytes: &[u8]) -> bool {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(&[0xD0, 0xCF, 0x11, 0xE0])
        || starts(b"PK\x03\x04")
        || starts(b"MZ")
        || starts(b"\x7fELF")
        || starts(b"%PDF")
    {
        return false;
    }
    match ct.to_ascii_lowercase().as_str() {
        "image/png" => starts(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" | "image/jpg" => starts(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => starts(b"GIF8"),
        "image/bmp" => starts(b"BM"),
        "image/tiff" => starts(b"II*\0") || starts(b"MM\0*"),
        "image/x-emf" | "image/emf" => bytes.get(40..44) == Some(b" EMF"),
        "image/x-wmf" | "image/wmf" => {
            starts(&[0xD7, 0xCD, 0xC6, 0x9A])
                || starts(&[0x01, 0x00, 0x09, 0x00])
                || starts(&[0x02, 0x00, 0x09, 0x00])
        }
        _ => true,
    }
}
