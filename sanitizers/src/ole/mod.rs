//! Legacy Office (Word 97–2003 `.doc`, Excel `.xls`, PowerPoint `.ppt`) in OLE2 compound files.
//!
//! Owns: rebuilding every legacy Office document into a new compound file that holds only the
//! streams its application needs, and removing what those streams refer to but must not keep:
//! VBA projects (Word's `Macros`, Excel's `_VBA_PROJECT_CUR` with its OBPROJ record, PowerPoint's
//! VBAInfoContainer and project storage), Word's `ObjectPool` and Excel's `MBD…` object storages,
//! and PowerPoint's embedded OLE objects (each document keeps the object's picture). An embedded
//! OLE package whose file is a program, script or shortcut blocks the document. What cannot be
//! removed verifiably holds the file with that exact finding: Excel 4.0 macro sheets and VB
//! module sheets, encryption, DDE and remote-include fields, external workbook and DDE links,
//! PowerPoint links and controls, and any structure the rebuild does not understand.
//! Word lives in [`word`], Excel's record stream in [`excel`], PowerPoint's in [`powerpoint`].
//! Invariants: a stream is copied only if its name is on the allowlist for the kind; a stream
//! that must lose something is rebuilt record by record from its parsed structure (Excel's
//! Workbook, PowerPoint's document and `Current User`), every offset into it recomputed;
//! summary information goes when policy strips metadata; reading is bounded by the policy's
//! expanded size and member count; the output re-opened by this sanitizer removes nothing.
//! Must never: patch bytes of a stream it does not parse (kept streams are copied whole), keep a
//! VBA storage, or deliver a stream whose offsets it could not recompute (that holds the file).

use std::io::{Cursor, Read, Write};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::{Verdict, What};

mod excel;
mod powerpoint;
mod word;

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

/// Root storage names that hold a VBA project (one deeper goes with the storage holding it).
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
        // The file is its header and whole sectors; one that ends inside a sector was cut
        // short, even when the cut only takes padding the rebuild would not read.
        let sector = match file.version() {
            cfb::Version::V3 => 512,
            cfb::Version::V4 => 4096,
        };
        if !input.len().is_multiple_of(sector) {
            return Err(Error::malformed(format!(
                "compound file of {} bytes ends inside a {sector}-byte sector",
                input.len()
            )));
        }
        let inventory = inventory(&file, &limits)?;
        // Every stream must be whole, kept or not: a compound file cut short is not one, even
        // where the cut falls in a stream the rebuild leaves behind.
        for (path, is_stream, _) in &inventory.entries {
            if *is_stream {
                cx.check_deadline()?;
                read_stream(&mut file, path, &limits)?;
            }
        }
        // Streams a kind's module rebuilt: written instead of the stored bytes.
        let mut rebuilt: Vec<(&'static str, Vec<u8>)> = Vec::new();
        let mut read = |path: &str| -> Result<Vec<u8>> { read_stream(&mut file, path, &limits) };
        match kind {
            FileKind::Doc => {
                let word = read("WordDocument")?;
                word::check_word(&word)?;
            }
            FileKind::Xls => {
                let (name, book) = match read("Workbook") {
                    Ok(book) => ("Workbook", book),
                    Err(_) => ("Book", read("Book")?),
                };
                excel::check_workbook(&book)?;
                if let Some(book) = excel::without_vba_records(&book, name, cx)? {
                    rebuilt.push((name, book));
                }
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
                let user = read("Current User")?;
                powerpoint::check_powerpoint(&stream, cx)?;
                let rebuilt_ppt = powerpoint::rebuild(&stream, &user, cx)?;
                rebuilt.push(("PowerPoint Document", rebuilt_ppt.document));
                rebuilt.push(("Current User", rebuilt_ppt.current_user));
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
            if VBA_STORAGES.contains(&path.as_str()) {
                cx.remove(What::Macro, show(path), "VBA project storage");
                continue;
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
            let bytes = match rebuilt.iter().position(|(name, _)| name == path) {
                Some(i) => rebuilt.swap_remove(i).1,
                None => read_stream(&mut file, path, &limits)?,
            };
            let mut stream = out
                .create_stream(format!("/{path}"))
                .map_err(|e| Error::internal(format!("creating stream {}: {e}", show(path))))?;
            stream
                .write_all(&bytes)
                .map_err(|e| Error::internal(format!("writing stream {}: {e}", show(path))))?;
        }
        if let Some((name, _)) = rebuilt.first() {
            return Err(Error::internal(format!(
                "rebuilt stream {name} has no place in the output"
            )));
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

/// ExOleObjStgCompressedAtom: a 4-byte decompressed size, then zlib.
pub(super) fn inflate_object(data: &[u8], limits: &crate::policy::Limits) -> Result<Vec<u8>> {
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
pub(super) fn judge_embedded_storage(
    storage: &[u8],
    location: &str,
    cx: &mut Context<'_>,
) -> Result<()> {
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
