//! Archives: unpack, send every member through the registry, repack what came back as a new ZIP.
//!
//! Owns: ZIP, tar, and gzip / bzip2 / xz streams (a compressed tar is one archive; any other
//! compressed file is an archive of one member). Member names are decoded (UTF-8, else CP932,
//! else CP437) and re-emitted as UTF-8; paths are relative, `/`-separated and free of `..`.
//! Invariants: every member is processed one level deeper with the registry's full rules, so
//! depth, time and the block list apply inside archives as outside. A blocked member blocks the
//! whole archive; a held member holds it — unless policy `archive_deliver_rest` is on, when the
//! rebuilt rest is delivered with a report file naming what was left out. Encrypted members,
//! links, special files, unsafe paths, duplicate names, bombs (size, ratio, member count,
//! overlapping entries) and unsupported methods hold the archive.
//! Must never: copy an input member into the output; only registry outputs are written.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Cursor, Read, Write};

use crate::detect::{detect, Declared};
use crate::error::{Error, Result};
use crate::kind::{FileKind, KindClass};
use crate::policy::Limits;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::{Verdict, What};

/// The name of the report file added when policy delivers the rest of an archive.
pub const REST_REPORT_NAME: &str = "無害化レポート.txt";

/// Unpacks and repacks archives.
pub struct ArchiveSanitizer;

/// One file inside an archive.
pub(crate) struct Member<'a> {
    path: String,
    bytes: Cow<'a, [u8]>,
    modified: Option<zip::DateTime>,
}

impl<'a> Member<'a> {
    /// A member at a relative path the caller has already made safe.
    pub(crate) fn new(path: String, bytes: Cow<'a, [u8]>) -> Self {
        Self {
            path,
            bytes,
            modified: None,
        }
    }
}

impl Sanitizer for ArchiveSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[
            FileKind::Zip,
            FileKind::Tar,
            FileKind::Gzip,
            FileKind::Bzip2,
            FileKind::Xz,
            FileKind::SevenZip,
        ]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let limits = cx.policy().limits.clone();
        let members = match kind {
            FileKind::Zip => zip_members(input, &limits)?,
            FileKind::Tar => tar_members(input, &limits)?,
            FileKind::SevenZip => seven_zip_members(input, &limits)?,
            FileKind::Gzip | FileKind::Bzip2 | FileKind::Xz => {
                let inner = decompress(input, kind, &limits)?;
                if detect(&inner, &Declared::default()).kind == FileKind::Tar {
                    tar_members(&inner, &limits)?
                        .into_iter()
                        .map(|m| Member {
                            bytes: Cow::Owned(m.bytes.into_owned()),
                            ..m
                        })
                        .collect()
                } else {
                    vec![Member {
                        path: inner_name(cx.name()),
                        bytes: Cow::Owned(inner),
                        modified: None,
                    }]
                }
            }
            other => return Err(Error::unsupported(format!("{other} is not an archive"))),
        };
        let bytes = repack(members, cx)?;
        Ok(Sanitized::new(bytes, FileKind::Zip))
    }
}

/// The member name of a compressed single file: the outer name without its compression
/// extension (`集計.csv.gz` → `集計.csv`, `a.tgz` → `a.tar`).
fn inner_name(outer: Option<&str>) -> String {
    let Some(outer) = outer.filter(|n| !n.is_empty()) else {
        return "data".into();
    };
    let lower = outer.to_ascii_lowercase();
    for (ext, replacement) in [
        (".tgz", ".tar"),
        (".tbz2", ".tar"),
        (".tbz", ".tar"),
        (".txz", ".tar"),
        (".gz", ""),
        (".bz2", ""),
        (".xz", ""),
    ] {
        if lower.ends_with(ext) && outer.is_char_boundary(outer.len() - ext.len()) {
            return format!("{}{replacement}", &outer[..outer.len() - ext.len()]);
        }
    }
    outer.to_string()
}

/// Decodes a stored name: UTF-8 when it is valid UTF-8, else CP932 (Japanese Windows
/// archivers write it without the UTF-8 flag), else the fallback reading.
fn decode_name(raw: &[u8], fallback: &str) -> String {
    if let Ok(name) = std::str::from_utf8(raw) {
        return name.to_string();
    }
    encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(raw)
        .map(Cow::into_owned)
        .unwrap_or_else(|| fallback.to_string())
}

/// A safe relative path: `/`-separated (a `\` separator from old Windows tools is read as
/// one), no empty, `.` or `..` segment, no drive letter, no control characters.
fn safe_path(name: &str) -> Result<String> {
    let unified = name.replace('\\', "/");
    let bad = unified.starts_with('/')
        || unified.as_bytes().get(1) == Some(&b':')
        || unified.chars().any(char::is_control)
        || unified
            .trim_end_matches('/')
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad || unified.trim().is_empty() {
        return Err(Error::malformed(format!(
            "archive member {name:?} is not a safe relative path"
        )));
    }
    Ok(unified)
}

fn zip_members<'a>(input: &'a [u8], limits: &Limits) -> Result<Vec<Member<'a>>> {
    let mut out = Vec::new();
    for entry in crate::zipread::entries(input, limits)? {
        let name = decode_name(&entry.raw_name, &entry.name);
        let path = safe_path(&name)?;
        if entry.is_symlink {
            return Err(Error::malformed(format!(
                "archive member {path} is a symbolic link"
            )));
        }
        if entry.is_dir || path.ends_with('/') {
            continue;
        }
        out.push(Member {
            path,
            bytes: entry.bytes,
            modified: entry.modified,
        });
    }
    Ok(out)
}

fn tar_members<'a>(input: &'a [u8], limits: &Limits) -> Result<Vec<Member<'a>>> {
    let mut archive = tar::Archive::new(Cursor::new(input));
    let entries = archive
        .entries()
        .map_err(|e| Error::malformed(format!("not a readable tar archive: {e}")))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::malformed(format!("tar entry: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = decode_name(&raw, &String::from_utf8_lossy(&raw));
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            safe_path(&name)?;
            continue;
        }
        let path = safe_path(&name)?;
        if !(kind.is_file() || kind.is_contiguous()) {
            return Err(Error::malformed(format!(
                "tar member {path} is a link or special file ({kind:?})"
            )));
        }
        if out.len() as u64 >= limits.max_members {
            return Err(Error::limit_exceeded(format!(
                "more than {} members in the tar archive",
                limits.max_members
            )));
        }
        let size = entry.size();
        total = total.saturating_add(size);
        if total > limits.max_expanded_bytes {
            return Err(Error::limit_exceeded("tar archive past the size limit"));
        }
        let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::malformed(format!("tar member {path}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(Error::malformed(format!("tar member {path} is cut off")));
        }
        out.push(Member {
            path,
            bytes: Cow::Owned(bytes),
            modified: None,
        });
    }
    Ok(out)
}

/// 7z: names as stored (UTF-16 in the format, so no code page guessing), links and special
/// files refused, every member read under the expanded-size budget; encryption of headers or
/// content is `encrypted`.
fn seven_zip_members(input: &[u8], limits: &Limits) -> Result<Vec<Member<'static>>> {
    use sevenz_rust2::{ArchiveReader, Error as SevenZipError, Password};
    let classify = |e: SevenZipError| match e {
        SevenZipError::PasswordRequired | SevenZipError::MaybeBadPassword(_) => {
            Error::encrypted("7z archive is encrypted")
        }
        SevenZipError::UnsupportedCompressionMethod(m)
            if m.to_ascii_uppercase().contains("AES") =>
        {
            Error::encrypted("7z archive is encrypted")
        }
        SevenZipError::UnsupportedCompressionMethod(m) => {
            Error::unsupported(format!("7z compression method {m}"))
        }
        other => Error::malformed(format!("7z archive: {other}")),
    };
    // Decoder dictionaries and header buffers are bounded too (in KiB).
    let memory_kb =
        usize::try_from((limits.max_expanded_bytes / 1024).min(512 * 1024)).unwrap_or(512 * 1024);
    let mut reader =
        ArchiveReader::new_with_memory_limit(Cursor::new(input), Password::empty(), memory_kb)
            .map_err(classify)?;
    reader.set_thread_count(1);
    let entries = reader.archive().files.len() as u64;
    if entries > limits.max_members {
        return Err(Error::limit_exceeded(format!(
            "{entries} members in the 7z archive (limit {})",
            limits.max_members
        )));
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut failure: Option<Error> = None;
    reader
        .for_each_entries(|entry, data| {
            let special = is_special_7z_entry(entry);
            let path = match safe_path(&entry.name) {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    return Ok(false);
                }
            };
            if special {
                failure = Some(Error::malformed(format!(
                    "7z member {path} is a link or special file"
                )));
                return Ok(false);
            }
            if entry.is_directory || entry.is_anti_item {
                return Ok(true);
            }
            let room = limits.max_expanded_bytes.saturating_sub(total);
            let mut bytes = Vec::new();
            data.take(room + 1).read_to_end(&mut bytes)?;
            total += bytes.len() as u64;
            if total > limits.max_expanded_bytes {
                failure = Some(Error::limit_exceeded(
                    "7z archive expands past the size limit",
                ));
                return Ok(false);
            }
            out.push(Member {
                path,
                bytes: Cow::Owned(bytes),
                modified: None,
            });
            Ok(true)
        })
        .map_err(classify)?;
    if let Some(e) = failure {
        return Err(e);
    }
    let ratio = total / (input.len() as u64).max(1);
    if total > limits.ratio_floor_bytes && ratio > limits.max_compression_ratio {
        return Err(Error::limit_exceeded(format!(
            "7z archive compresses {ratio}:1 (limit {}:1)",
            limits.max_compression_ratio
        )));
    }
    Ok(out)
}

/// A writer that refuses to grow past a budget (xz has no reader-side limit).
struct Budget {
    out: Vec<u8>,
    limit: u64,
    exceeded: bool,
}

impl Write for Budget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("expanded size limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Expands a gzip, bzip2 or xz stream (all members of a multi-member stream) under the limits.
fn decompress(input: &[u8], kind: FileKind, limits: &Limits) -> Result<Vec<u8>> {
    let budget = limits.max_expanded_bytes;
    let over = || Error::limit_exceeded(format!("{kind} stream expands past {budget} bytes"));
    let mut out = Vec::new();
    let read = match kind {
        FileKind::Gzip => flate2::read::MultiGzDecoder::new(input)
            .take(budget + 1)
            .read_to_end(&mut out),
        FileKind::Bzip2 => bzip2::read::MultiBzDecoder::new(input)
            .take(budget + 1)
            .read_to_end(&mut out),
        FileKind::Xz => {
            let mut sink = Budget {
                out: Vec::new(),
                limit: budget,
                exceeded: false,
            };
            let result = lzma_rs::xz_decompress(&mut Cursor::new(input), &mut sink);
            if let Err(e) = result {
                return Err(if sink.exceeded {
                    over()
                } else {
                    Error::malformed(format!("xz stream does not decode: {e}"))
                });
            }
            out = sink.out;
            Ok(out.len())
        }
        other => {
            return Err(Error::unsupported(format!(
                "{other} is not a compressed stream"
            )))
        }
    };
    read.map_err(|e| Error::malformed(format!("{kind} stream does not decode: {e}")))?;
    if out.len() as u64 > budget {
        return Err(over());
    }
    let ratio = out.len() as u64 / (input.len() as u64).max(1);
    if out.len() as u64 > limits.ratio_floor_bytes && ratio > limits.max_compression_ratio {
        return Err(Error::limit_exceeded(format!(
            "{kind} stream compresses {ratio}:1 (limit {}:1)",
            limits.max_compression_ratio
        )));
    }
    Ok(out)
}

/// Kinds already compressed: stored, not deflated again.
fn already_compressed(kind: FileKind) -> bool {
    kind.is_ooxml()
        || matches!(kind.class(), KindClass::Image | KindClass::Archive)
        || matches!(kind, FileKind::Odt | FileKind::Ods | FileKind::Odp)
}

/// Sends every member through the registry and writes the rebuilt ones into a new ZIP.
pub(crate) fn repack(members: Vec<Member<'_>>, cx: &mut Context<'_>) -> Result<Vec<u8>> {
    let recheck = cx.is_recheck();
    let deliver_rest = cx.policy().archive_deliver_rest;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let stored = deflated.compression_method(zip::CompressionMethod::Stored);
    let mut seen_inputs = HashSet::new();
    let mut used = HashSet::new();
    // Path, verdict, the technical reason (report, errors) and the staff's sentence (the note).
    let mut refused: Vec<(String, Verdict, String, String)> = Vec::new();
    for member in members {
        cx.check_deadline()?;
        if !seen_inputs.insert(member.path.to_lowercase()) {
            return Err(Error::malformed(format!(
                "archive member {} appears twice",
                member.path
            )));
        }
        let (dir, base) = match member.path.rsplit_once('/') {
            Some((dir, base)) => (format!("{dir}/"), base),
            None => (String::new(), member.path.as_str()),
        };
        if let Some(what) = os_litter(&member.path, base) {
            cx.remove(What::Metadata, member.path.clone(), what);
            continue;
        }
        let outcome = cx.process_member(&member.bytes, Some(base));
        let (mut report, output) = outcome.into_parts();
        report.input = Some(member.path.clone());
        match output {
            Some(clean) => {
                if recheck && !report.removed.is_empty() {
                    cx.remove(
                        What::ArchiveMember,
                        member.path.clone(),
                        "a second pass still changes this member",
                    );
                }
                if !recheck {
                    let path = unique(&mut used, &dir, clean.name());
                    let mut options = if already_compressed(clean.kind()) {
                        stored
                    } else {
                        deflated
                    };
                    if let Some(time) = member.modified {
                        options = options.last_modified_time(time);
                    }
                    zip.start_file(path, options)
                        .and_then(|()| zip.write_all(clean.bytes()).map_err(Into::into))
                        .map_err(|e| Error::internal(format!("writing the ZIP: {e}")))?;
                }
            }
            None => {
                if recheck {
                    return Err(Error::internal(format!(
                        "a rebuilt member ({}) is refused on the second pass",
                        member.path
                    )));
                }
                let reason = report
                    .reason
                    .as_ref()
                    .map(|r| format!("{}: {}", r.code, r.detail))
                    .unwrap_or_default();
                let why = report.explain_ja().unwrap_or_default();
                refused.push((member.path.clone(), report.verdict, reason, why));
            }
        }
        cx.add_child(report);
    }
    if let Some((first_path, _, first_reason, _)) = refused.first() {
        if !deliver_rest {
            let blocked = refused.iter().find(|(_, v, _, _)| *v == Verdict::Blocked);
            return Err(match blocked {
                Some((path, _, reason, _)) => {
                    Error::blocked(format!("archive member {path} is blocked ({reason})"))
                }
                None => Error::held_member(format!(
                    "archive member {first_path} cannot be made safe ({first_reason}); {} member(s) held",
                    refused.len()
                )),
            });
        }
        let mut note = String::from(
            "この書庫の次のファイルは、無害化できないため取り除かれました。\r\n\
             The following members were removed because they could not be made safe.\r\n\r\n",
        );
        for (path, verdict, reason, why) in &refused {
            cx.remove(
                What::ArchiveMember,
                path.clone(),
                format!("{verdict:?}: {reason}"),
            );
            // Staff open this note: the verdict word and the plain sentence, no codes.
            note.push_str(&format!("・{path} — {}: {why}\r\n", verdict.label_ja()));
        }
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(note.as_bytes());
        let name = unique(&mut used, "", REST_REPORT_NAME);
        zip.start_file(name, deflated)
            .and_then(|()| zip.write_all(&bytes).map_err(Into::into))
            .map_err(|e| Error::internal(format!("writing the ZIP: {e}")))?;
    }
    let out = zip
        .finish()
        .map_err(|e| Error::internal(format!("finishing the ZIP: {e}")))?;
    Ok(out.into_inner())
}

/// Files an operating system leaves in folders it archives, which carry no content of the
/// sender's: macOS resource forks and Finder state, Windows thumbnail caches and folder
/// settings (a `desktop.ini` can point a folder icon at a remote share and leak credentials).
fn os_litter(path: &str, base: &str) -> Option<&'static str> {
    let lower = base.to_ascii_lowercase();
    if path.starts_with("__MACOSX/") || base.starts_with("._") {
        Some("macOS resource fork (AppleDouble)")
    } else if lower == ".ds_store" {
        Some("macOS Finder state (.DS_Store)")
    } else if lower == "thumbs.db" {
        Some("Windows thumbnail cache (Thumbs.db)")
    } else if crate::detect::SHELL_FILE_NAMES.contains(&lower.as_str()) {
        Some("Windows folder settings (desktop.ini)")
    } else {
        None
    }
}

/// `dir/name`, with ` (2)`, ` (3)`… before the extension when the name is taken (a.docm and
/// a.docx both become a.docx).
pub(crate) fn unique(used: &mut HashSet<String>, dir: &str, name: &str) -> String {
    let mut candidate = format!("{dir}{name}");
    let mut n = 2;
    while !used.insert(candidate.to_lowercase()) {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
            _ => (name, String::new()),
        };
        candidate = format!("{dir}{stem} ({n}){ext}");
        n += 1;
    }
    candidate
}

/// Whether a 7z entry is a link, device or other special file (a Windows reparse point, or a
/// Unix mode that is neither a regular file nor a folder): never extracted as data.
pub(crate) fn is_special_7z_entry(entry: &sevenz_rust2::ArchiveEntry) -> bool {
    const UNIX_EXTENSION: u32 = 0x8000;
    const REPARSE_POINT: u32 = 0x0400;
    let attrs = entry.windows_attributes;
    let unix_type = (attrs >> 16) & 0o170000;
    entry.has_windows_attributes
        && (attrs & REPARSE_POINT != 0
            || (attrs & UNIX_EXTENSION != 0
                && unix_type != 0
                && unix_type != 0o100000
                && unix_type != 0o040000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "/etc/passwd",
            "a/../../b",
            "C:/Windows/x",
            "\\\\host\\share",
            "a//b",
            "./a",
        ] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
        assert_eq!(safe_path("資料\\別紙.pdf").unwrap(), "資料/別紙.pdf");
    }

    #[test]
    fn cp932_names_are_decoded() {
        let raw = encoding_rs::SHIFT_JIS.encode("見積書.pdf").0;
        assert_eq!(decode_name(&raw, "x"), "見積書.pdf");
        assert_eq!(decode_name(b"\xFF\xFF", "fallback"), "fallback");
    }

    #[test]
    fn compressed_single_files_keep_their_inner_name() {
        assert_eq!(inner_name(Some("集計.csv.gz")), "集計.csv");
        assert_eq!(inner_name(Some("a.TGZ")), "a.tar");
        assert_eq!(inner_name(None), "data");
    }

    #[test]
    fn taken_names_get_a_number() {
        let mut used = HashSet::new();
        assert_eq!(unique(&mut used, "d/", "a.docx"), "d/a.docx");
        assert_eq!(unique(&mut used, "d/", "a.docx"), "d/a (2).docx");
        assert_eq!(unique(&mut used, "d/", "A.DOCX"), "d/A (3).DOCX");
    }
}
