//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper around a message body and
//! its attachments.
//!
//! Owns: a sans-IO reader ([`parse`]) that yields the message body as text (plain body, else
//! HTML converted, else compressed RTF decompressed and read) and each attachment's name and
//! bytes; and the registry sanitizer, which sends those attachments through the registry and
//! repacks them with the body as `本文.txt` in a new ZIP (the mail converter instead unpacks
//! TNEF in place, see `mail`).
//! Invariants: every attribute's length is bounded by the input and its checksum verified; an
//! attribute that runs past the end, a bad checksum, or a MAPI property that does not parse is
//! an error (the file is held), never skipped. Attachment names are reduced to a base name.
//! Must never: deliver the TNEF stream itself or any of its bytes except through the registry.

use std::borrow::Cow;

use crate::archive::Member;
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;

// Attribute ids (low 16 bits of the attribute tag).
const ATT_BODY: u16 = 0x800C;
const ATT_ATTACH_DATA: u16 = 0x800F;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_REND_DATA: u16 = 0x9002;
const ATT_MAPI_PROPS: u16 = 0x9003;
const ATT_ATTACHMENT: u16 = 0x9005;
const ATT_OEM_CODEPAGE: u16 = 0x9007;

// MAPI property ids.
const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_BODY_HTML: u16 = 0x1013;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;

/// True when `bytes` start with the TNEF signature (and so detect as TNEF).
pub fn is_tnef(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE.to_le_bytes())
}

/// The name of the body text member in a repacked TNEF.
pub const BODY_NAME: &str = "本文.txt";

/// What a TNEF stream holds.
#[derive(Debug, Default)]
pub struct Tnef {
    /// The message body as text, when it had one.
    pub body: Option<String>,
    /// Attachments in order: base name and bytes.
    pub attachments: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Attachment {
    title: Option<String>,
    long_name: Option<String>,
    short_name: Option<String>,
    data: Option<Vec<u8>>,
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| Error::malformed(format!("TNEF: {n} bytes needed at {}", self.at)))?;
        let out = &self.input[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn done(&self) -> bool {
        self.at >= self.input.len()
    }
    /// Skips the padding that aligns MAPI values to 4 bytes.
    fn pad(&mut self, len: usize) -> Result<()> {
        let pad = (4 - len % 4) % 4;
        self.take(pad).map(|_| ())
    }
}

/// Reads a TNEF stream.
///
/// # Errors
/// Malformed when any structure is cut off, a checksum fails, or a property does not parse.
pub fn parse(input: &[u8]) -> Result<Tnef> {
    let mut r = Reader { input, at: 0 };
    if r.u32()? != SIGNATURE {
        return Err(Error::malformed("not a TNEF stream (signature)"));
    }
    let _legacy_key = r.u16()?;
    let mut codepage: &'static encoding_rs::Encoding = encoding_rs::SHIFT_JIS;
    let mut out = Tnef::default();
    let (mut plain, mut html, mut rtf): (Option<String>, Option<String>, Option<Vec<u8>>) =
        (None, None, None);
    let mut current: Option<Attachment> = None;
    let mut attachments = Vec::new();
    while !r.done() {
        let level = r.u8()?;
        let tag = r.u32()?;
        let len = r.u32()? as usize;
        let data = r.take(len)?;
        let checksum = r.u16()?;
        let sum = data
            .iter()
            .fold(0u16, |acc, &b| acc.wrapping_add(u16::from(b)));
        let id = (tag & 0xFFFF) as u16;
        if sum != checksum {
            return Err(Error::malformed(format!(
                "TNEF attribute {id:#06x} fails its checksum"
            )));
        }
        match (level, id) {
            (LEVEL_MESSAGE, ATT_OEM_CODEPAGE) if data.len() >= 4 => {
                let cp = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                if let Some(enc) = i32::try_from(cp)
                    .ok()
                    .and_then(crate::rtf::text::encoding_for_codepage)
                {
                    codepage = enc;
                }
            }
            (LEVEL_MESSAGE, ATT_BODY) => plain = Some(string8(data, codepage)),
            (LEVEL_MESSAGE, ATT_MAPI_PROPS) => {
                for prop in mapi_props(data, codepage)? {
                    match (prop.id, prop.value) {
                        (PR_BODY, Value::Text(t)) => plain = Some(t),
                        (PR_BODY_HTML, Value::Text(t)) => html = Some(t),
                        (PR_BODY_HTML, Value::Binary(b)) => {
                            html = Some(string8(&b, codepage));
                        }
                        (PR_RTF_COMPRESSED, Value::Binary(b)) => rtf = Some(b),
                        _ => {}
                    }
                }
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA) => {
                if let Some(done) = current.take() {
                    attachments.push(done);
                }
                current = Some(Attachment::default());
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_TITLE) => {
                current.get_or_insert_with(Attachment::default).title =
                    Some(string8(data, codepage));
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_DATA) => {
                current.get_or_insert_with(Attachment::default).data = Some(data.to_vec());
            }
            (LEVEL_ATTACHMENT, ATT_ATTACHMENT) => {
                let attachment = current.get_or_insert_with(Attachment::default);
                for prop in mapi_props(data, codepage)? {
                    match (prop.id, prop.value) {
                        (PR_ATTACH_LONG_FILENAME, Value::Text(t)) => attachment.long_name = Some(t),
                        (PR_ATTACH_FILENAME, Value::Text(t)) => attachment.short_name = Some(t),
                        (PR_ATTACH_DATA, Value::Binary(b)) if attachment.data.is_none() => {
                            attachment.data = Some(b)
                        }
                        _ => {}
                    }
                }
            }
            (LEVEL_MESSAGE | LEVEL_ATTACHMENT, _) => {}
            (other, _) => {
                return Err(Error::malformed(format!(
                    "TNEF attribute level {other} is not defined"
                )))
            }
        }
    }
    if let Some(done) = current.take() {
        attachments.push(done);
    }
    out.body = match (plain, html, rtf) {
        (Some(t), _, _) if !t.trim().is_empty() => Some(t),
        // No policy reaches this parser; the default depth bound still keeps a deeply
        // nested HTML body from tying up the renderer (the stream is held instead).
        (_, Some(h), _) => {
            let limits = crate::policy::Limits::default();
            let time = std::time::Duration::from_millis(limits.max_millis);
            Some(crate::mail::html::to_text(&h, limits.max_html_depth, time)?)
        }
        (_, _, Some(compressed)) => Some(crate::rtf::text::to_text(&decompress_rtf(&compressed)?)),
        (t, _, _) => t,
    };
    for (n, a) in attachments.into_iter().enumerate() {
        let Some(data) = a.data else { continue };
        let name = a
            .long_name
            .or(a.title)
            .or(a.short_name)
            .map(|n| base_name(&n))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("attachment-{}", n + 1));
        out.attachments.push((name, data));
    }
    Ok(out)
}

/// The last path segment, without control characters or a trailing NUL.
fn base_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean == "." || clean == ".." {
        String::new()
    } else {
        clean.to_string()
    }
}

/// An 8-bit string in the message code page, without its terminating NUL.
fn string8(data: &[u8], codepage: &'static encoding_rs::Encoding) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let bytes = &data[..end];
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => codepage.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

enum Value {
    Text(String),
    Binary(Vec<u8>),
    Other,
}

struct Prop {
    id: u16,
    value: Value,
}

/// Parses a MAPI property list (MS-OXTNEF 2.1.3.4), keeping single strings and binaries.
fn mapi_props(data: &[u8], codepage: &'static encoding_rs::Encoding) -> Result<Vec<Prop>> {
    let mut r = Reader { input: data, at: 0 };
    let count = r.u32()?;
    let mut props = Vec::new();
    for _ in 0..count {
        let ptype = r.u16()?;
        let id = r.u16()?;
        if id >= 0x8000 {
            // Named property: GUID, kind, then an id or a UTF-16 name.
            r.take(16)?;
            match r.u32()? {
                0 => {
                    r.u32()?;
                }
                1 => {
                    let len = r.u32()? as usize;
                    r.take(len)?;
                    r.pad(len)?;
                }
                other => {
                    return Err(Error::malformed(format!(
                        "TNEF named property kind {other}"
                    )))
                }
            }
        }
        let multi = ptype & 0x1000 != 0;
        let base = ptype & 0x0FFF;
        let variable = matches!(base, 0x001E | 0x001F | 0x0102 | 0x000D);
        let values = if multi || variable { r.u32()? } else { 1 };
        if values as usize > data.len() {
            return Err(Error::malformed("TNEF property value count past the data"));
        }
        let mut value = Value::Other;
        for _ in 0..values {
            let v = match base {
                0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => {
                    r.take(4)?;
                    Value::Other
                }
                0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => {
                    r.take(8)?;
                    Value::Other
                }
                0x0048 => {
                    r.take(16)?;
                    Value::Other
                }
                0x001E | 0x001F | 0x0102 | 0x000D => {
                    let len = r.u32()? as usize;
                    let bytes = r.take(len)?;
                    r.pad(len)?;
                    match base {
                        0x001E => Value::Text(string8(bytes, codepage)),
                        0x001F => Value::Text(utf16(bytes)),
                        // An embedded object starts with its interface GUID.
                        0x000D => Value::Binary(bytes.get(16..).unwrap_or_default().to_vec()),
                        _ => Value::Binary(bytes.to_vec()),
                    }
                }
                other => {
                    return Err(Error::malformed(format!(
                        "TNEF property type {other:#06x} is not defined"
                    )))
                }
            };
            if !multi {
                value = v;
            }
        }
        props.push(Prop { id, value });
    }
    Ok(props)
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The dictionary every compressed RTF stream starts from (MS-OXRTFCP 2.1.3.1.1).
const RTF_PREBUF: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";

/// Decompresses PR_RTF_COMPRESSED (MS-OXRTFCP), bounded by the header's raw size.
///
/// # Errors
/// Malformed when the header or a back-reference does not add up.
pub fn decompress_rtf(input: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader { input, at: 0 };
    let comp_size = r.u32()? as usize;
    let raw_size = r.u32()? as usize;
    let kind = r.u32()?;
    let _crc = r.u32()?;
    if comp_size < 12
        || comp_size.saturating_add(4) > input.len()
        || raw_size > input.len().saturating_mul(64) + 4096
    {
        return Err(Error::malformed("compressed RTF sizes do not add up"));
    }
    let body = &input[16..comp_size + 4];
    match kind {
        0x414C_454D => return Ok(body.iter().copied().take(raw_size).collect()), // "MELA"
        0x7546_5A4C => {}                                                        // "LZFu"
        other => return Err(Error::malformed(format!("compressed RTF type {other:#x}"))),
    }
    let mut dict = [0u8; 4096];
    dict[..RTF_PREBUF.len()].copy_from_slice(RTF_PREBUF);
    let mut write = RTF_PREBUF.len();
    let mut out = Vec::with_capacity(raw_size);
    let mut i = 0;
    'outer: while i < body.len() {
        let control = body[i];
        i += 1;
        for bit in 0..8 {
            if i >= body.len() {
                break 'outer;
            }
            if control & (1 << bit) == 0 {
                let b = body[i];
                i += 1;
                out.push(b);
                dict[write] = b;
                write = (write + 1) % 4096;
            } else {
                let Some(pair) = body.get(i..i + 2) else {
                    return Err(Error::malformed("compressed RTF reference cut off"));
                };
                i += 2;
                let word = u16::from_be_bytes([pair[0], pair[1]]);
                let offset = usize::from(word >> 4);
                let len = usize::from(word & 0xF) + 2;
                if offset == write {
                    break 'outer;
                }
                for k in 0..len {
                    let b = dict[(offset + k) % 4096];
                    out.push(b);
                    dict[write] = b;
                    write = (write + 1) % 4096;
                }
            }
            if out.len() > raw_size {
                return Err(Error::malformed(
                    "compressed RTF expands past its declared size",
                ));
            }
        }
    }
    Ok(out)
}

/// Unpacks TNEF into a ZIP of its body text and rebuilt attachments.
pub struct TnefSanitizer;

impl Sanitizer for TnefSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Tnef]
    }

    fn sanitize(&self, input: &[u8], _kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let tnef = parse(input)?;
        let mut members = Vec::new();
        if let Some(body) = tnef.body.filter(|b| !b.trim().is_empty()) {
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            for line in body.lines() {
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            if !cx.is_recheck() {
                cx.remove(
                    What::UnknownPart,
                    "TNEF",
                    "the Outlook wrapper; its body is delivered as 本文.txt",
                );
            }
            members.push(Member::new(BODY_NAME.to_string(), Cow::Owned(bytes)));
        }
        // Outlook happily attaches two image001.png; an archive cannot hold both.
        let mut used = std::collections::HashSet::new();
        used.insert(BODY_NAME.to_lowercase());
        for (name, data) in tnef.attachments {
            let name = crate::archive::unique(&mut used, "", &name);
            members.push(Member::new(name, Cow::Owned(data)));
        }
        let bytes = crate::archive::repack(members, cx)?;
        Ok(Sanitized::new(bytes, FileKind::Zip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_the_spec_example() {
        // MS-OXRTFCP 3.1.1: "{\rtf1\ansi\ansicpg1252\pard hello world}\r\n".
        let compressed = [
            0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5,
            0xc7, 0xa7, 0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42,
            0x32, 0x0a, 0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0,
            0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
        ];
        let rtf = decompress_rtf(&compressed).unwrap();
        assert_eq!(rtf, b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n");
    }

    #[test]
    fn names_are_reduced_to_a_base_name() {
        assert_eq!(base_name("..\\..\\Windows\\evil.bat\0"), "evil.bat");
        assert_eq!(base_name(".."), "");
    }
}
