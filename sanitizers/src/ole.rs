//! Legacy Office (Word 97–2003 `.doc`, Excel `.xls`, PowerPoint `.ppt`) in OLE2 compound files.
//!
//! Owns: finding what no open-source cleaner removes verifiably — VBA projects, Excel 4.0 macro
//! sheets and VB module sheets, encryption, DDE and remote-include fields, external workbook
//! and DDE links, embedded objects inside PowerPoint's record stream — and holding the file with
//! that exact finding; rebuilding every other document into a new compound file that holds only
//! the streams its application needs. Word's `ObjectPool` and Excel's `MBD…` object storages
//! are removed (the document keeps the object's picture); an embedded OLE package whose file is
//! a program, script or shortcut blocks the document instead.
//! Invariants: a stream is copied only if its name is on the allowlist for the kind; summary
//! information goes when policy strips metadata; reading is bounded by the policy's expanded
//! size and member count.
//! Must never: patch bytes inside a stream (the streams it keeps are copied whole, and anything
//! that would need patching is a reason to hold the file).

use std::io::{Cursor, Read, Write};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::{Verdict, What};

/// Rebuilds legacy Office compound files.
pub struct OleSanitizer;

/// Streams (root level) each kind may keep; everything else is dropped and reported.
fn allowed(kind: FileKind, name: &str) -> bool {
    let common = ["\u{1}CompObj"];
    let own: &[&str] = match kind {
        FileKind::Doc => &["WordDocument", "0Table", "1Table", "Data"],
        FileKind::Xls => &["Workbook", "Book"],
        FileKind::Ppt => &["PowerPoint Document", "Current User", "Pictures"],
        _ => &[],
    };
    common.contains(&name) || own.contains(&name)
}

const SUMMARY: [&str; 2] = ["\u{5}SummaryInformation", "\u{5}DocumentSummaryInformation"];

/// Storage names that hold a VBA project, at any depth.
const VBA_STORAGES: [&str; 4] = ["Macros", "_VBA_PROJECT_CUR", "VBA", "_VBA_PROJECT"];

struct Inventory {
    /// (path without leading slash, is stream, length)
    entries: Vec<(String, bool, u64)>,
}

impl Sanitizer for OleSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Doc, FileKind::Xls, FileKind::Ppt]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let limits = cx.policy().limits.clone();
        let mut file = cfb::CompoundFile::open(Cursor::new(input))
            .map_err(|e| Error::malformed(format!("not a readable compound file: {e}")))?;
        let inventory = inventory(&file, &limits)?;
        for (path, _, _) in &inventory.entries {
            if path
                .split('/')
                .any(|segment| VBA_STORAGES.contains(&segment))
            {
                return Err(Error::unsupported(format!(
                    "VBA macro project ({path}): macros in legacy Office files are held, not removed"
                )));
            }
        }
        let mut read = |path: &str| -> Result<Vec<u8>> { read_stream(&mut file, path, &limits) };
        match kind {
            FileKind::Doc => {
                let word = read("WordDocument")?;
                check_word(&word)?;
            }
            FileKind::Xls => {
                let book = read("Workbook").or_else(|_| read("Book"))?;
                check_workbook(&book)?;
            }
            FileKind::Ppt => {
                if inventory
                    .entries
                    .iter()
                    .any(|(p, _, _)| p == "EncryptedSummary")
                {
                    return Err(Error::encrypted("PowerPoint file is encrypted"));
                }
                let stream = read("PowerPoint Document")?;
                check_powerpoint(&stream, cx)?;
            }
            other => return Err(Error::unsupported(format!("{other} is not legacy Office"))),
        }

        // Embedded objects in Word's ObjectPool and Excel's MBD storages: look inside each
        // package (an executable or shortcut blocks the document), then leave them behind.
        let object_roots: Vec<String> = inventory
            .entries
            .iter()
            .filter(|(p, stream, _)| !stream && !p.contains('/'))
            .map(|(p, _, _)| p.clone())
            .filter(|p| p == "ObjectPool" || p.starts_with("MBD"))
            .collect();
        for root in &object_roots {
            let natives: Vec<String> = inventory
                .entries
                .iter()
                .filter(|(p, stream, _)| {
                    *stream && p.starts_with(&format!("{root}/")) && p.ends_with("\u{1}Ole10Native")
                })
                .map(|(p, _, _)| p.clone())
                .collect();
            for native in natives {
                let bytes = read_stream(&mut file, &native, &limits)?;
                judge_package(&bytes, &native, cx)?;
            }
        }

        let root_clsid = *file.root_entry().clsid();
        let mut out = cfb::CompoundFile::create_with_version(
            cfb::Version::V3,
            Cursor::new(Vec::with_capacity(input.len())),
        )
        .map_err(|e| Error::internal(format!("creating the compound file: {e}")))?;
        out.set_storage_clsid("/", root_clsid)
            .map_err(|e| Error::internal(format!("compound file CLSID: {e}")))?;
        let strip_metadata = cx.policy().strip_metadata;
        for (path, is_stream, len) in &inventory.entries {
            cx.check_deadline()?;
            let top = !path.contains('/');
            if top && object_roots.contains(path) {
                cx.remove(What::OleObject, path.clone(), "embedded object storage");
                continue;
            }
            if !top {
                continue; // children of a storage that is not kept
            }
            if SUMMARY.contains(&path.as_str()) {
                if strip_metadata {
                    cx.remove(What::Metadata, show(path), "summary information");
                    continue;
                }
            } else if !*is_stream || !allowed(kind, path) {
                let what = if path == "MsoDataStore" {
                    What::CustomXml
                } else {
                    What::UnknownPart
                };
                cx.remove(what, show(path), format!("{len} bytes"));
                continue;
            }
            let bytes = read_stream(&mut file, path, &limits)?;
            let mut stream = out
                .create_stream(format!("/{path}"))
                .map_err(|e| Error::internal(format!("creating stream {}: {e}", show(path))))?;
            stream
                .write_all(&bytes)
                .map_err(|e| Error::internal(format!("writing stream {}: {e}", show(path))))?;
        }
        out.flush()
            .map_err(|e| Error::internal(format!("finishing the compound file: {e}")))?;
        Ok(Sanitized::new(out.into_inner().into_inner(), kind))
    }
}

/// A stream name for reports, control characters shown as `\x01`.
fn show(path: &str) -> String {
    path.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn inventory<F: Read + std::io::Seek>(
    file: &cfb::CompoundFile<F>,
    limits: &crate::policy::Limits,
) -> Result<Inventory> {
    let mut entries = Vec::new();
    let mut total = 0u64;
    for entry in file.walk() {
        let path = entry.path().to_string_lossy();
        let path = path.trim_start_matches('/').to_string();
        if path.is_empty() {
            continue;
        }
        total = total.saturating_add(entry.len());
        if entries.len() as u64 >= limits.max_members || total > limits.max_expanded_bytes {
            return Err(Error::limit_exceeded(
                "compound file has too many entries or too much data",
            ));
        }
        entries.push((path, entry.is_stream(), entry.len()));
    }
    Ok(Inventory { entries })
}

fn read_stream<F: Read + std::io::Seek>(
    file: &mut cfb::CompoundFile<F>,
    path: &str,
    limits: &crate::policy::Limits,
) -> Result<Vec<u8>> {
    let stream = file
        .open_stream(format!("/{path}"))
        .map_err(|e| Error::malformed(format!("stream {}: {e}", show(path))))?;
    let len = stream.len();
    if len > limits.max_expanded_bytes {
        return Err(Error::limit_exceeded(format!(
            "stream {} is {len} bytes",
            show(path)
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    stream
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::malformed(format!("stream {}: {e}", show(path))))?;
    if bytes.len() as u64 != len {
        return Err(Error::malformed(format!(
            "stream {} is cut off",
            show(path)
        )));
    }
    Ok(bytes)
}

/// Fields that run something, fetch something or pull in another file when Word updates them.
const DANGEROUS_FIELDS: [&str; 7] = [
    "DDEAUTO",
    "DDE",
    "INCLUDETEXT",
    "INCLUDEPICTURE",
    "IMPORT",
    "LINK",
    "DATABASE",
];

/// Word: encryption flag in the FIB, and dangerous field instructions in the text (field begin
/// mark 0x13 followed by the instruction, in 8-bit or UTF-16 text pieces).
fn check_word(word: &[u8]) -> Result<()> {
    let flags = word
        .get(0x0A..0x0C)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| Error::malformed("WordDocument stream is too short for its FIB"))?;
    if word.get(..2) != Some(&[0xEC, 0xA5]) {
        return Err(Error::malformed("WordDocument stream has no Word 97 FIB"));
    }
    if flags & 0x0100 != 0 {
        return Err(Error::encrypted("Word document is encrypted or obfuscated"));
    }
    for (i, _) in word.iter().enumerate().filter(|(_, &b)| b == 0x13) {
        for wide in [false, true] {
            let step = if wide { 2 } else { 1 };
            let mut j = i + step;
            let mut name = String::new();
            while let Some(&b) = word.get(j) {
                if wide && word.get(j + 1) != Some(&0) {
                    break;
                }
                if b == b' ' && name.is_empty() {
                    j += step;
                    continue;
                }
                if !b.is_ascii_alphabetic() || name.len() > 16 {
                    break;
                }
                name.push(b.to_ascii_uppercase() as char);
                j += step;
            }
            if DANGEROUS_FIELDS.contains(&name.as_str()) {
                return Err(Error::unsupported(format!(
                    "{name} field in a Word 97–2003 document (its text cannot be rewritten safely)"
                )));
            }
        }
    }
    Ok(())
}

/// One BIFF record: type and data.
fn biff_records(stream: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = stream.get(at..at + 4)?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let data = stream.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        Some((kind, data))
    })
}

/// Excel: FILEPASS (encryption), BOUNDSHEET of a macro or VB module sheet, and SUPBOOK links to
/// other workbooks or DDE servers.
fn check_workbook(book: &[u8]) -> Result<()> {
    for (kind, data) in biff_records(book) {
        match kind {
            0x002F => return Err(Error::encrypted("Excel workbook is encrypted (FILEPASS)")),
            0x0085 => match data.get(5) {
                Some(0x01) => {
                    return Err(Error::unsupported(
                        "Excel 4.0 (XLM) macro sheet: held, not removed",
                    ))
                }
                Some(0x06) => {
                    return Err(Error::unsupported(
                        "Excel VB module sheet: held, not removed",
                    ))
                }
                _ => {}
            },
            0x01AE => {
                // SUPBOOK: 0x0401 marks this workbook, 0x3A01 add-in functions; anything else
                // names an external workbook or a DDE/OLE server.
                let marker = data.get(2..4).map(|b| u16::from_le_bytes([b[0], b[1]]));
                if !matches!(marker, Some(0x0401) | Some(0x3A01)) {
                    return Err(Error::unsupported(
                        "Excel link to an external workbook or DDE server (SUPBOOK)",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// PowerPoint: walks the record tree for VBA (VBAInfoContainer), encryption
/// (CryptSession10Container) and embedded objects (ExOleObjStg), which live inside the stream
/// and cannot be cut out without rewriting its offsets.
fn check_powerpoint(stream: &[u8], cx: &mut Context<'_>) -> Result<()> {
    let mut stack = vec![(0usize, stream.len())];
    let mut objects = 0usize;
    while let Some((mut at, end)) = stack.pop() {
        while at + 8 <= end {
            cx.check_deadline()?;
            let ver_instance = u16::from_le_bytes([stream[at], stream[at + 1]]);
            let kind = u16::from_le_bytes([stream[at + 2], stream[at + 3]]);
            let len = u32::from_le_bytes([
                stream[at + 4],
                stream[at + 5],
                stream[at + 6],
                stream[at + 7],
            ]) as usize;
            let body = at + 8;
            let Some(next) = body.checked_add(len).filter(|&n| n <= end) else {
                return Err(Error::malformed(format!(
                    "PowerPoint record {kind:#06x} at {at} runs past its container"
                )));
            };
            match kind {
                0x03FF => {
                    return Err(Error::unsupported(
                        "VBA macro project in a PowerPoint 97–2003 file: held, not removed",
                    ))
                }
                0x2F14 => return Err(Error::encrypted("PowerPoint file is encrypted")),
                0x1011 => {
                    objects += 1;
                    let data = &stream[body..next];
                    let storage = if ver_instance >> 4 == 1 {
                        inflate_object(data, &cx.policy().limits)?
                    } else {
                        data.to_vec()
                    };
                    judge_embedded_storage(&storage, &format!("ExOleObjStg at {at}"), cx)?;
                }
                _ => {}
            }
            if ver_instance & 0x000F == 0x000F {
                stack.push((body, next));
            }
            at = next;
        }
    }
    if objects > 0 {
        return Err(Error::unsupported(format!(
            "{objects} embedded OLE object(s) inside a PowerPoint 97–2003 file: held, not removed"
        )));
    }
    Ok(())
}

/// ExOleObjStgCompressedAtom: a 4-byte decompressed size, then zlib.
fn inflate_object(data: &[u8], limits: &crate::policy::Limits) -> Result<Vec<u8>> {
    let size = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
        .ok_or_else(|| Error::malformed("embedded object header cut off"))?;
    if size > limits.max_expanded_bytes {
        return Err(Error::limit_exceeded(
            "embedded object expands past the limit",
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    flate2::read::ZlibDecoder::new(&data[4..])
        .take(size + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::malformed(format!("embedded object does not inflate: {e}")))?;
    Ok(out)
}

/// An embedded object's own compound file: if it is an OLE package, judge the file inside.
fn judge_embedded_storage(storage: &[u8], location: &str, cx: &mut Context<'_>) -> Result<()> {
    let Ok(mut inner) = cfb::CompoundFile::open(Cursor::new(storage)) else {
        return Ok(());
    };
    let limits = cx.policy().limits.clone();
    if inner.is_stream("/\u{1}Ole10Native") {
        let bytes = read_stream(&mut inner, "\u{1}Ole10Native", &limits)?;
        judge_package(&bytes, location, cx)?;
    }
    Ok(())
}

/// An OLE package (`\x01Ole10Native`): its file name and bytes go through the registry; a
/// blocked file (a program, script or shortcut) blocks the document.
fn judge_package(native: &[u8], location: &str, cx: &mut Context<'_>) -> Result<()> {
    let Some((name, data)) = parse_package(native) else {
        return Ok(());
    };
    let outcome = cx.process_member(data, Some(&name));
    let (mut report, _) = outcome.into_parts();
    report.input = Some(format!("{} ({name})", show(location)));
    let blocked = report.verdict == Verdict::Blocked;
    let detail = report
        .reason
        .as_ref()
        .map(|r| r.detail.clone())
        .unwrap_or_default();
    cx.add_child(report);
    if blocked {
        return Err(Error::blocked(format!(
            "embedded package {name} is blocked ({detail})"
        )));
    }
    Ok(())
}

/// Parses an OLE package stream: size, flags, label, source path, two words, temp path, data.
fn parse_package(native: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 6; // total size (4) and an unknown word (2)
    let zstring = |at: &mut usize| -> Option<String> {
        let rest = native.get(*at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        let s = encoding_rs::SHIFT_JIS
            .decode_without_bom_handling(&rest[..end])
            .0
            .into_owned();
        *at += end + 1;
        Some(s)
    };
    let label = zstring(&mut at)?;
    let source = zstring(&mut at)?;
    at += 8;
    let _temp = zstring(&mut at)?;
    let size = native
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
    let data = native.get(at + 4..at + 4 + size)?;
    let name = if label.trim().is_empty() {
        source
    } else {
        label
    };
    let base = name.rsplit(['\\', '/']).next().unwrap_or(&name).to_string();
    Some((base, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biff_macro_sheets_and_external_links_are_found() {
        let mut book = Vec::new();
        let record = |kind: u16, data: &[u8]| {
            let mut r = kind.to_le_bytes().to_vec();
            r.extend_from_slice(&(data.len() as u16).to_le_bytes());
            r.extend_from_slice(data);
            r
        };
        book.extend(record(0x0809, &[0; 16]));
        book.extend(record(0x0085, &[0, 0, 0, 0, 0, 0x00, 1, 0, b'A']));
        assert!(check_workbook(&book).is_ok());
        let mut xlm = book.clone();
        xlm.extend(record(0x0085, &[0, 0, 0, 0, 0, 0x01, 1, 0, b'M']));
        assert!(check_workbook(&xlm).unwrap_err().message().contains("XLM"));
        let mut linked = book.clone();
        linked.extend(record(0x01AE, &[1, 0, 3, 0, 0, b'c', b'm', b'd']));
        assert!(check_workbook(&linked).is_err());
        let mut locked = book;
        locked.extend(record(0x002F, &[0; 6]));
        assert!(check_workbook(&locked).unwrap_err().is_encrypted());
    }

    #[test]
    fn packages_name_their_file() {
        let mut native = vec![0u8; 6];
        native.extend_from_slice(b"evil.lnk\0C:\\tmp\\evil.lnk\0");
        native.extend_from_slice(&[0; 8]);
        native.extend_from_slice(b"C:\\temp\\evil.lnk\0");
        native.extend_from_slice(&4u32.to_le_bytes());
        native.extend_from_slice(b"L\0\0\0");
        let (name, data) = parse_package(&native).unwrap();
        assert_eq!(name, "evil.lnk");
        assert_eq!(data, b"L\0\0\0");
    }
}
