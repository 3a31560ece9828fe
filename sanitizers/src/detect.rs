//! True-type detection.
//!
//! Owns: deciding a file's [`FileKind`] from its bytes, and checking the declared name,
//! extension and MIME type against it.
//! Invariants: the content decides; the name can only make things stricter (a text file named
//! `.vbs` is a script because Windows will run it as one), never looser (an executable named
//! `.txt` is still an executable). ZIP-based Office kinds are told apart by
//! `[Content_Types].xml`, never by magic; CFB kinds by their streams. Markup is classified
//! by parsing all of it ([`crate::xmlsniff`]): Office XML, XHTML, SVG, shell XML and XML a
//! browser would style or script are decided by root, namespaces and PIs wherever they sit,
//! and XML is plain text only once the whole document parsed. Windows shell files are told
//! by name (desktop.ini, .url, .scf…) and by their INI sections.
//! Must never: allocate in proportion to a declared size, or fail: unreadable structure simply
//! yields the outer kind (`zip`, `ole-other`) or `unknown`, and the policy quarantines those.

use std::io::{Cursor, Read};

use serde::{Deserialize, Serialize};

use crate::kind::{FileKind, KindClass};
use crate::ooxml::content_types::ContentTypes;

/// What the sender says a file is: its name and declared MIME type, both optional.
#[derive(Debug, Clone, Default)]
pub struct Declared<'a> {
    /// The file name as given (mail filename parameter, import folder name).
    pub name: Option<&'a str>,
    /// The declared MIME type (mail Content-Type), lower-cased or not.
    pub mime: Option<&'a str>,
}

/// Something about a file's name or shape that does not add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum Finding {
    /// The extension says one kind, the content another.
    ExtensionMismatch {
        /// The declared extension, lower case.
        extension: String,
        /// The kind found in the content.
        detected: FileKind,
    },
    /// The declared MIME type says one kind, the content another.
    MimeMismatch {
        /// The declared MIME type.
        mime: String,
        /// The kind found in the content.
        detected: FileKind,
    },
    /// `report.pdf.exe`: a harmless-looking extension followed by a dangerous one.
    DoubleExtension {
        /// The full name.
        name: String,
    },
    /// A right-to-left override or other bidi control hides the real extension.
    BidiControlInName {
        /// The name with control characters shown as `<U+202E>`.
        name: String,
    },
    /// The content is valid as two formats at once (e.g. ZIP magic in front of a PDF).
    Polyglot {
        /// What the leading bytes look like.
        leading: String,
    },
}

/// The outcome of detection: the kind and any findings about the declared name and type.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The true type.
    pub kind: FileKind,
    /// Mismatches and name tricks, in the order found.
    pub findings: Vec<Finding>,
    /// The container holds encrypted members (a password-protected ZIP, PPAP), so its
    /// content — and often its true type — cannot be inspected.
    pub encrypted: bool,
    /// Why the content is of this kind, when that is not obvious from the kind alone (the
    /// `mso-application` PI that makes an `.xml` file a Word document, the `[Shell]` section
    /// that makes a text file an Explorer command file).
    pub detail: Option<String>,
}

/// How much of a `[Content_Types].xml` or ODF `mimetype` detection will inflate.
const MAX_SNIFF_MEMBER: u64 = 1 << 20;

/// Detects the true type of `bytes` and checks `declared` against it.
pub fn detect(bytes: &[u8], declared: &Declared<'_>) -> Detection {
    let mut findings = Vec::new();
    let mut encrypted = false;
    let mut detail = None;
    let mut kind = sniff(bytes, &mut findings, &mut encrypted, &mut detail);
    let ext = declared.name.and_then(extension);

    // Text carries no magic: a text file named like a script *is* a script to the desktop that
    // opens it, a text file named .html is a page a browser renders (whatever tags it has, and
    // wherever), and a text file named .csv is a CSV.
    if matches!(kind, FileKind::Text | FileKind::Html) {
        if let Some(named) = ext.as_deref().and_then(text_kind_by_extension) {
            if kind == FileKind::Text || named.class() == KindClass::Script {
                kind = named;
            }
        }
    }

    if let Some(name) = declared.name {
        if name.chars().any(is_bidi_control) {
            findings.push(Finding::BidiControlInName {
                name: name.chars().map(show_control).collect(),
            });
        }
        if has_double_extension(name) {
            findings.push(Finding::DoubleExtension {
                name: name.to_string(),
            });
        }
    }
    if let Some(ext) = ext {
        if extension_mismatch(&ext, kind) {
            findings.push(Finding::ExtensionMismatch {
                extension: ext,
                detected: kind,
            });
        }
    }
    if let Some(mime) = declared.mime {
        let mime = mime.trim().to_ascii_lowercase();
        if let Some(expected) = kinds_for_mime(&mime) {
            if !expected.contains(&kind) && !matches!(kind, FileKind::Empty | FileKind::Unknown) {
                findings.push(Finding::MimeMismatch {
                    mime,
                    detected: kind,
                });
            }
        }
    }
    Detection {
        kind,
        findings,
        encrypted,
        detail,
    }
}

/// Base names Windows' shell reads by themselves (compared case-insensitively). The one list:
/// the archive sanitizer drops these as folder litter, everything else blocks them.
pub const SHELL_FILE_NAMES: &[&str] = &["desktop.ini"];

/// True for a name Windows' shell acts on when it shows the file or its folder: a
/// [`SHELL_FILE_NAMES`] base name, or an extension of [`FileKind::ShellFile`].
pub fn is_shell_file_name(name: &str) -> bool {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim_end();
    // Not `extension()`: it ignores extensions over 16 characters, and `searchConnector-ms`
    // has 18.
    let ext = base.rsplit_once('.').map(|(_, ext)| ext);
    SHELL_FILE_NAMES
        .iter()
        .any(|n| base.eq_ignore_ascii_case(n))
        || ext.is_some_and(|ext| {
            FileKind::ShellFile
                .extensions()
                .iter()
                .any(|e| e.eq_ignore_ascii_case(ext))
        })
}

/// The lower-case extension of a file name, without the dot.
pub fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 16 {
        return None;
    }
    Some(ext.trim_end().to_lowercase())
}

fn sniff(
    bytes: &[u8],
    findings: &mut Vec<Finding>,
    encrypted: &mut bool,
    detail: &mut Option<String>,
) -> FileKind {
    if bytes.is_empty() {
        return FileKind::Empty;
    }
    // TNEF carries attachments verbatim, so a small PDF attachment puts `%PDF-` in the first
    // kilobyte; its signature and per-attribute checksums make it unambiguous.
    if crate::tnef::is_tnef(bytes) {
        return FileKind::Tnef;
    }
    if let Some(at) = find(&bytes[..bytes.len().min(1024)], b"%PDF-") {
        if at > 0 {
            if let Some(leading) = magic_name(&bytes[..at]) {
                findings.push(Finding::Polyglot {
                    leading: leading.to_string(),
                });
            }
        }
        return FileKind::Pdf;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return sniff_zip(bytes, encrypted);
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return sniff_cfb(bytes);
    }
    if bytes.starts_with(b"{\\rt") {
        return FileKind::Rtf;
    }
    if let Some(kind) = sniff_magic(bytes) {
        return kind;
    }
    sniff_text(bytes, detail)
}

fn sniff_magic(bytes: &[u8]) -> Option<FileKind> {
    use FileKind::*;
    let starts = |m: &[u8]| bytes.starts_with(m);
    let kind = if starts(b"MZ") {
        Pe
    } else if starts(b"\x7fELF") {
        Elf
    } else if starts(&[0xFE, 0xED, 0xFA, 0xCE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCF])
        || starts(&[0xCE, 0xFA, 0xED, 0xFE])
        || starts(&[0xCF, 0xFA, 0xED, 0xFE])
    {
        MachO
    } else if starts(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        // Java class files and fat Mach-O share this magic; a class file's major version
        // (bytes 6..8) is at least 45, a fat binary's architecture count is small.
        let major = bytes.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if major.is_some_and(|m| m >= 45) {
            JavaClass
        } else {
            MachO
        }
    } else if crate::tnef::is_tnef(bytes) {
        Tnef
    } else if starts(b"\0asm") {
        Wasm
    } else if starts(&[0x4C, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00]) {
        Lnk
    } else if starts(&[
        0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D, 0xAE, 0xB1, 0x53, 0x78, 0xD0, 0x29, 0x96,
        0xD3,
    ]) {
        // OneNote section: embedded files run with a double click (2023 campaigns).
        OneNote
    } else if starts(b"ITSF") {
        Chm
    } else if starts(b"vhdxfile")
        || starts(b"conectix")
        || trailer(bytes, 512).is_some_and(|t| t.starts_with(b"conectix"))
    {
        Vhd
    } else if trailer(bytes, 512).is_some_and(|t| t.starts_with(b"koly")) {
        Dmg
    } else if starts(b"7z\xBC\xAF\x27\x1C") {
        SevenZip
    } else if starts(b"Rar!\x1A\x07") {
        Rar
    } else if starts(&[0x1F, 0x8B]) {
        Gzip
    } else if starts(b"BZh") && bytes.len() > 3 && bytes[3].is_ascii_digit() {
        Bzip2
    } else if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        Xz
    } else if starts(b"MSCF\0\0\0\0") {
        Cab
    } else if bytes.len() > 7 && bytes[2] == b'-' && bytes[3] == b'l' && bytes[6] == b'-' {
        // LHA: "-lh5-", "-lhd-", "-lzs-" at offset 2.
        Lzh
    } else if bytes.get(257..262) == Some(b"ustar") {
        Tar
    } else if [0x8001usize, 0x8801, 0x9001]
        .iter()
        .any(|&o| bytes.get(o..o + 5) == Some(b"CD001"))
    {
        Iso
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Png
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        Jpeg
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Gif
    } else if starts(b"BM") && bytes.len() > 14 {
        Bmp
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Tiff
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Webp
    } else if looks_like_mp3(bytes) {
        Mp3
    } else {
        return infer::get(bytes).and_then(|t| match t.mime_type() {
            "application/x-msdownload" | "application/vnd.microsoft.portable-executable" => {
                Some(Pe)
            }
            _ => None,
        });
    };
    Some(kind)
}

/// The last `n` bytes, when the file is at least that long.
fn trailer(bytes: &[u8], n: usize) -> Option<&[u8]> {
    bytes.len().checked_sub(n).map(|at| &bytes[at..])
}

/// An ID3v2 tag followed by an MPEG audio frame, or two MPEG audio frames in a row. One frame
/// alone, even one exactly as long as the file, is too weak a signal: a UTF-16LE text starts
/// with `FF FE`, which is also an MPEG-1 Layer I sync word, and a 68-byte CSV beginning with `'`
/// was read as one such frame.
fn looks_like_mp3(bytes: &[u8]) -> bool {
    use crate::mp3::frame_len;
    let start = if bytes.starts_with(b"ID3") && bytes.len() >= 10 {
        let size = bytes[6..10].iter().try_fold(0usize, |acc, &b| {
            (b < 0x80).then(|| (acc << 7) | usize::from(b))
        });
        match size {
            Some(size) => 10 + size + if bytes[5] & 0x10 != 0 { 10 } else { 0 },
            None => return false,
        }
    } else {
        0
    };
    let Some(first) = bytes.get(start..).and_then(frame_len) else {
        return false;
    };
    let next = start + first;
    start > 0 || bytes.get(next..).and_then(frame_len).is_some()
}

/// Names the format whose magic `bytes` start with, for polyglot findings.
fn magic_name(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"PK") {
        Some("zip")
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        Some("ole")
    } else {
        sniff_magic(bytes).map(FileKind::name)
    }
}

fn sniff_zip(bytes: &[u8], encrypted: &mut bool) -> FileKind {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return FileKind::Zip;
    };
    *encrypted = (0..archive.len()).any(|i| archive.by_index_raw(i).is_ok_and(|e| e.encrypted()));
    if let Some(mimetype) = read_small_member(&mut archive, "mimetype") {
        let mimetype = String::from_utf8_lossy(&mimetype);
        let mimetype = mimetype.trim();
        if let Some(odf) = mimetype.strip_prefix("application/vnd.oasis.opendocument.") {
            return match odf {
                "text" | "text-template" => FileKind::Odt,
                "spreadsheet" | "spreadsheet-template" => FileKind::Ods,
                "presentation" | "presentation-template" => FileKind::Odp,
                _ => FileKind::OdfOther,
            };
        }
    }
    let Some(xml) = read_small_member(&mut archive, "[Content_Types].xml") else {
        return FileKind::Zip;
    };
    match ContentTypes::parse(&xml) {
        Ok(types) => types.main_kind().unwrap_or(FileKind::OoxmlOther),
        Err(_) => FileKind::OoxmlOther,
    }
}

fn read_small_member<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
) -> Option<Vec<u8>> {
    let member = archive.by_name(name).ok()?;
    let mut out = Vec::new();
    member.take(MAX_SNIFF_MEMBER).read_to_end(&mut out).ok()?;
    Some(out)
}

fn sniff_cfb(bytes: &[u8]) -> FileKind {
    let Ok(file) = cfb::CompoundFile::open(Cursor::new(bytes)) else {
        return FileKind::OleOther;
    };
    let has = |name: &str| file.exists(name);
    if has("/EncryptedPackage") || has("/EncryptionInfo") {
        return FileKind::EncryptedOoxml;
    }
    if has("/WordDocument") {
        return FileKind::Doc;
    }
    if has("/Workbook") || has("/Book") {
        return FileKind::Xls;
    }
    if has("/PowerPoint Document") {
        return FileKind::Ppt;
    }
    // MSI databases carry this root CLSID (installer package / patch / transform).
    let clsid = file.root_entry().clsid().to_string().to_ascii_uppercase();
    if clsid.starts_with("000C108") && clsid.ends_with("-0000-0000-C000-000000000046") {
        return FileKind::Msi;
    }
    FileKind::OleOther
}

fn sniff_text(bytes: &[u8], detail: &mut Option<String>) -> FileKind {
    // A trailing DOS EOF (0x1A) ends old CP932 exports; the text validator accepts it there.
    let bytes = bytes.strip_suffix(b"\x1A").unwrap_or(bytes);
    let head = &bytes[..bytes.len().min(8192)];
    let utf16 = head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]);
    if !utf16 && !looks_like_text(head) {
        return FileKind::Unknown;
    }
    let lower: Vec<u8> = head
        .iter()
        .filter(|&&b| b != 0)
        .map(u8::to_ascii_lowercase)
        .collect();
    let trimmed = trim_start(&lower);
    if trimmed.starts_with(b"#!") {
        let line = trimmed.split(|&b| b == b'\n').next().unwrap_or_default();
        return if find(line, b"python").is_some() {
            FileKind::ScriptPython
        } else if find(line, b"php").is_some() {
            FileKind::ScriptPhp
        } else {
            FileKind::ScriptSh
        };
    }
    // SYLK: a text spreadsheet Excel opens with its formulas (XLM EXEC included) live.
    if lower.starts_with(b"id;p") || lower.starts_with(b"id;") && find(&lower, b"\nc;").is_some() {
        return FileKind::Sylk;
    }
    if let Some(section) = shell_section(bytes, utf16) {
        *detail = Some(format!("a {section} section, which Windows' shell acts on"));
        return FileKind::ShellFile;
    }
    if trimmed.starts_with(b"<?php") {
        return FileKind::ScriptPhp;
    }
    if find(&lower, b"<hta:application").is_some() {
        return FileKind::Hta;
    }
    if trimmed.starts_with(b"<job")
        || trimmed.starts_with(b"<package")
        || trimmed.starts_with(b"<scriptlet")
    {
        return FileKind::ScriptWsf;
    }
    // Markup is parsed whole, never judged by a window of leading bytes: Office, browsers and
    // Explorer read every comment, PI and element, and so do we.
    use crate::xmlsniff::XmlClass;
    let mut malformed = None;
    match crate::xmlsniff::sniff(bytes) {
        Some(XmlClass::Office(why)) => {
            *detail = Some(why);
            return FileKind::OfficeXml;
        }
        Some(XmlClass::Xhtml) => return FileKind::Html,
        Some(XmlClass::Svg) => return FileKind::Svg,
        Some(XmlClass::Shell(why)) => {
            *detail = Some(why);
            return FileKind::ShellFile;
        }
        Some(XmlClass::Active(why)) => {
            *detail = Some(why);
            return FileKind::XmlActive;
        }
        Some(XmlClass::Malformed(why)) => malformed = Some(why),
        Some(XmlClass::Data) | None => {}
    }
    if find(&lower[..lower.len().min(4096)], b"<svg").is_some()
        && (trimmed.starts_with(b"<?xml")
            || trimmed.starts_with(b"<svg")
            || trimmed.starts_with(b"<!--")
            || trimmed.starts_with(b"<!doctype svg"))
    {
        return FileKind::Svg;
    }
    if trimmed.starts_with(b"<!doctype html")
        || trimmed.starts_with(b"<html")
        || ["<head", "<body", "<script", "<iframe"]
            .iter()
            .any(|tag| find(&lower[..lower.len().min(1024)], tag.as_bytes()).is_some())
    {
        return FileKind::Html;
    }
    // Markup that says it is XML (a declaration, namespaces, Office or stylesheet PIs) but does
    // not parse can be neither proven plain data nor handed to a sanitizer that would parse it.
    if let Some(why) = malformed {
        // One case-folded copy (without UTF-16's zero bytes), searched once per marker.
        let folded: Vec<u8> = bytes
            .iter()
            .filter(|&&b| !utf16 || b != 0)
            .map(u8::to_ascii_lowercase)
            .collect();
        let anywhere = |needle: &[u8]| memchr::memmem::find(&folded, needle).is_some();
        if [
            b"mso-application".as_slice(),
            b"urn:schemas-microsoft-com:office:",
            b"schemas.microsoft.com/office/",
            b"<pkg:package",
        ]
        .iter()
        .any(|m| anywhere(m))
        {
            *detail = Some(format!(
                "Office XML markers in markup that does not parse ({why})"
            ));
            return FileKind::OfficeXml;
        }
        if utf16
            || trimmed.starts_with(b"<?xml")
            || [b"xmlns".as_slice(), b"<?xml", b"<!doctype", b"<!entity"]
                .iter()
                .any(|m| anywhere(m))
        {
            *detail = Some(format!("XML that does not parse: {why}"));
            return FileKind::XmlActive;
        }
    }
    FileKind::Text
}

/// INI sections Windows' shell acts on, as written in the file (matched case-insensitively at
/// the start of a line): folder settings (desktop.ini), Internet shortcuts (.url, .website),
/// Explorer command files (.scf).
const SHELL_SECTIONS: &[&str] = &[
    "[.ShellClassInfo]",
    "[InternetShortcut]",
    "[{000214A0-0000-0000-C000-000000000046}]",
    "[Shell]",
];

/// The first shell section header anywhere in a text file.
fn shell_section(bytes: &[u8], utf16: bool) -> Option<&'static str> {
    let decoded;
    let text: &[u8] = if utf16 {
        let enc = if bytes.starts_with(&[0xFF, 0xFE]) {
            encoding_rs::UTF_16LE
        } else {
            encoding_rs::UTF_16BE
        };
        decoded = enc.decode_without_bom_handling(&bytes[2..]).0;
        decoded.as_bytes()
    } else {
        bytes
    };
    text.split(|&b| b == b'\n' || b == b'\r').find_map(|line| {
        let line = line.trim_ascii_start();
        SHELL_SECTIONS.iter().copied().find(|s| {
            line.get(..s.len())
                .is_some_and(|l| l.eq_ignore_ascii_case(s.as_bytes()))
        })
    })
}

/// Text: no NUL or stray C0 controls (ESC, used by ISO-2022-JP, and FF are fine). High bytes
/// are allowed so CP932 and EUC-JP count as text; their validity is the text sanitizer's job.
fn looks_like_text(head: &[u8]) -> bool {
    let bad = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C | 0x1B))
        .count();
    bad == 0 || (bad * 100 / head.len().max(1) < 1 && !head.contains(&0))
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn text_kind_by_extension(ext: &str) -> Option<FileKind> {
    use FileKind::*;
    [
        ScriptJs,
        ScriptVbs,
        ScriptPs1,
        ScriptBat,
        ScriptSh,
        ScriptPython,
        ScriptPhp,
        ScriptWsf,
        Hta,
        Html,
        Svg,
        Csv,
    ]
    .into_iter()
    .find(|k| k.extensions().contains(&ext))
}

fn extension_mismatch(ext: &str, kind: FileKind) -> bool {
    if matches!(kind, FileKind::Unknown | FileKind::Empty) {
        return false;
    }
    let known = FileKind::ALL.iter().any(|k| k.extensions().contains(&ext));
    if !known || kind.extensions().contains(&ext) {
        return false;
    }
    // A spreadsheet opens a .csv as cells whatever is inside: markup under that name would
    // come out as text (HTML rendered) whose cells the CSV rules never saw, so it is held.
    if FileKind::Csv.extensions().contains(&ext) && kind.class() == KindClass::Markup {
        return true;
    }
    // Text kinds are named freely (.txt, .log, .xml, .csv): only a text extension on a
    // non-text kind is a mismatch, not one text extension for another.
    let text_ext = [FileKind::Text, FileKind::Csv, FileKind::Html]
        .iter()
        .any(|k| k.extensions().contains(&ext));
    !(text_ext && matches!(kind.class(), KindClass::Text | KindClass::Markup))
}

fn kinds_for_mime(mime: &str) -> Option<&'static [FileKind]> {
    use FileKind::*;
    let base = mime.split(';').next().unwrap_or(mime).trim();
    Some(match base {
        "application/pdf" => &[Pdf],
        "application/msword" => &[Doc, Rtf],
        "application/vnd.ms-excel" => &[Xls, Csv],
        "application/vnd.ms-powerpoint" => &[Ppt],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => &[Docx],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => &[Xlsx],
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => &[Pptx],
        "application/rtf" | "text/rtf" => &[Rtf],
        "image/png" => &[Png],
        "image/jpeg" | "image/jpg" => &[Jpeg],
        "image/gif" => &[Gif],
        "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => &[Bmp],
        "image/tiff" => &[Tiff],
        "image/webp" => &[Webp],
        "audio/mpeg" | "audio/mp3" | "audio/x-mpeg" => &[Mp3],
        "text/plain" => &[Text, Csv],
        "text/csv" => &[Csv, Text],
        "application/zip" | "application/x-zip-compressed" => &[Zip],
        _ => return None,
    })
}

fn has_double_extension(name: &str) -> bool {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let parts: Vec<&str> = base.split('.').collect();
    if parts.len() < 3 {
        return false;
    }
    let last = parts[parts.len() - 1].trim().to_lowercase();
    let before = parts[parts.len() - 2].trim().to_lowercase();
    let dangerous = FileKind::ALL.iter().any(|k| {
        matches!(
            k.class(),
            KindClass::Executable | KindClass::Script | KindClass::Shortcut | KindClass::DiskImage
        ) && k.extensions().contains(&last.as_str())
    }) || [
        "scr", "pif", "com", "cpl", "jar", "url", "chm", "reg", "inf",
    ]
    .contains(&last.as_str());
    let decoy = FileKind::ALL.iter().any(|k| {
        matches!(
            k.class(),
            KindClass::Document | KindClass::Image | KindClass::Text | KindClass::Archive
        ) && k.extensions().contains(&before.as_str())
    });
    dangerous && decoy
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn show_control(c: char) -> String {
    if is_bidi_control(c) || c.is_control() {
        format!("<U+{:04X}>", c as u32)
    } else {
        c.to_string()
    }
}

/// Finds `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utf16_text_as_long_as_one_mpeg_frame_is_not_mp3() {
        // FF FE (the UTF-16LE BOM) then `'` (0x27): an MPEG-1 Layer I header of 64 kbit/s,
        // 48 kHz, padded — a 68-byte frame. Found by the CSV property test.
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "'=,1,,1,,1,,1,1,1,,1,sep=;\n,1,2,3,4,5".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        bytes.truncate(68);
        assert_eq!(bytes.len(), 68);
        assert!(!super::looks_like_mp3(&bytes));
    }

    use super::*;

    fn named(bytes: &[u8], name: &str) -> Detection {
        detect(
            bytes,
            &Declared {
                name: Some(name),
                mime: None,
            },
        )
    }

    #[test]
    fn executable_named_txt_is_still_an_executable() {
        let d = named(b"MZ\x90\0\x03\0\0\0", "readme.txt");
        assert_eq!(d.kind, FileKind::Pe);
        assert!(matches!(d.findings[0], Finding::ExtensionMismatch { .. }));
    }

    #[test]
    fn text_named_vbs_is_a_script() {
        assert_eq!(
            named(b"MsgBox \"hi\"\r\n", "a.vbs").kind,
            FileKind::ScriptVbs
        );
    }

    #[test]
    fn rtf_named_doc_is_a_mismatch() {
        let d = named(b"{\\rtf1\\ansi hello}", "letter.doc");
        assert_eq!(d.kind, FileKind::Rtf);
        assert_eq!(
            d.findings,
            vec![Finding::ExtensionMismatch {
                extension: "doc".into(),
                detected: FileKind::Rtf
            }]
        );
    }

    #[test]
    fn rtlo_and_double_extensions_are_findings() {
        let d = named(b"MZ", "invoice\u{202E}fdp.exe");
        assert!(d
            .findings
            .iter()
            .any(|f| matches!(f, Finding::BidiControlInName { .. })));
        let d = named(b"MZ", "請求書.pdf.exe");
        assert!(d
            .findings
            .iter()
            .any(|f| matches!(f, Finding::DoubleExtension { .. })));
        assert!(!has_double_extension("report.2024.pdf"));
    }

    #[test]
    fn zip_magic_before_pdf_header_is_a_polyglot() {
        let mut bytes = b"PK\x03\x04junk".to_vec();
        bytes.extend_from_slice(b"%PDF-1.4\n");
        let d = named(&bytes, "a.pdf");
        assert_eq!(d.kind, FileKind::Pdf);
        assert!(matches!(d.findings[0], Finding::Polyglot { .. }));
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(named(b"", "x.bin").kind, FileKind::Empty);
        assert_eq!(
            named(&[0u8, 1, 2, 3, 0, 0xff], "x.bin").kind,
            FileKind::Unknown
        );
    }
}
