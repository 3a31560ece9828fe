//! Embedded font programs in PDF (`/FontFile`, `/FontFile2`, `/FontFile3`): kept only when they
//! parse as the format their key names.
//!
//! Owns: strict structural readers for the three containers — the sfnt table directory of
//! TrueType and OpenType fonts (every table inside the data, not
//! overlapping, and every byte of the file belonging to the header, the directory or a table,
//! give or take its 0–3 padding bytes), CFF's header, INDEXes, top DICT, charset, encoding,
//! FDSelect, font DICTs and Private DICTs with their subroutines (all inside the data, and the
//! data ending where the last of them ends), and Type 1's clear-text header with its `Length1`/`Length2`
//! sections and a plain-text trailer.
//! Invariants: sans-IO; never panics on any input; bounded by the data's length.
//! TrueType and OpenType fonts are then written anew ([`rebuild_sfnt`]) from the tables the
//! font specifications define; any other table (a vendor's, or a payload) is left out.
//! Must never: accept a font because a viewer would — a program that does not parse or has
//! bytes outside its structures is dropped (and reported by the caller), the page's text then
//! shows in a substitute font.
//! Limits (said plainly): the glyph programs inside tables and CFF charstrings are not
//! interpreted, and bytes between CFF structures (not after the last) are not accounted for.

use lopdf::{Dictionary, Document, Object};

/// Which font program a stream is, by the key it sits under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/FontFile`: a Type 1 font program.
    Type1,
    /// `/FontFile2`: a TrueType font.
    TrueType,
    /// `/FontFile3`: by its `/Subtype`, CFF (`Type1C`, `CIDFontType0C`) or OpenType.
    FontFile3,
}

/// Tables of the TrueType and OpenType specifications (and Apple's layout tables) that a font
/// embedded in a PDF may carry.
const KNOWN_TABLES: &[&[u8; 4]] = &[
    b"cmap", b"glyf", b"head", b"hhea", b"hmtx", b"loca", b"maxp", b"name", b"post", b"OS/2",
    b"cvt ", b"fpgm", b"prep", b"gasp", b"hdmx", b"kern", b"LTSH", b"PCLT", b"VDMX", b"vhea",
    b"vmtx", b"CFF ", b"CFF2", b"VORG", b"GDEF", b"GPOS", b"GSUB", b"BASE", b"JSTF", b"MATH",
    b"DSIG", b"EBDT", b"EBLC", b"EBSC", b"CBDT", b"CBLC", b"COLR", b"CPAL", b"avar", b"fvar",
    b"gvar", b"HVAR", b"MVAR", b"VVAR", b"STAT", b"cvar", b"meta", b"morx", b"mort", b"feat",
    b"trak", b"kerx", b"bsln", b"opbd", b"prop", b"just", b"lcar", b"fmtx", b"fdsc",
];

/// Checks a decoded font program.
///
/// # Errors
/// A short reason the program does not parse as `format`.
pub fn check(format: Format, dict: &Dictionary, data: &[u8], src: &Document) -> Result<(), String> {
    match format {
        Format::TrueType => sfnt(data),
        Format::Type1 => type1(dict, data, src),
        Format::FontFile3 => match dict.get(b"Subtype").and_then(Object::as_name) {
            Ok(b"OpenType") => sfnt(data),
            Ok(b"Type1C" | b"CIDFontType0C") => cff(data),
            Ok(other) => Err(format!(
                "unknown /FontFile3 subtype {}",
                String::from_utf8_lossy(other)
            )),
            Err(_) => Err("/FontFile3 without a /Subtype".into()),
        },
    }
}

fn u16_at(data: &[u8], at: usize) -> Option<usize> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

fn u32_at(data: &[u8], at: usize) -> Option<usize> {
    let b = data.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
}

/// The sfnt container of TrueType and OpenType fonts.
fn sfnt(data: &[u8]) -> Result<(), String> {
    let version = data.get(..4).ok_or("shorter than an sfnt header")?;
    if !matches!(version, [0, 1, 0, 0] | b"true" | b"OTTO") {
        return Err("not a TrueType or OpenType font".into());
    }
    let count = u16_at(data, 4).ok_or("shorter than an sfnt header")?;
    if count == 0 || count > 64 {
        return Err(format!("{count} tables"));
    }
    let dir_end = 12 + 16 * count;
    if dir_end > data.len() {
        return Err("the table directory runs past the end".into());
    }
    let mut tables = Vec::with_capacity(count);
    for i in 0..count {
        let rec = 12 + 16 * i;
        let tag: [u8; 4] = data
            .get(rec..rec + 4)
            .and_then(|t| t.try_into().ok())
            .ok_or("truncated table record")?;
        if !tag.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err("a table tag is not printable".into());
        }
        let offset = u32_at(data, rec + 8).ok_or("truncated table record")?;
        let len = u32_at(data, rec + 12).ok_or("truncated table record")?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= data.len() && offset >= dir_end)
            .ok_or_else(|| {
                format!(
                    "table '{}' lies outside the font",
                    String::from_utf8_lossy(&tag)
                )
            })?;
        tables.push((offset, end, tag));
    }
    let has = |t: &[u8; 4]| tables.iter().any(|(_, _, tag)| tag == t);
    if !has(b"head") || !has(b"maxp") {
        return Err("no head or maxp table".into());
    }
    if !(has(b"glyf") && has(b"loca") || has(b"CFF ") || has(b"CFF2")) {
        return Err("no glyph outlines (glyf/loca or CFF)".into());
    }
    if let Some((offset, end, _)) = tables.iter().find(|(_, _, t)| t == b"head") {
        if end - offset < 54 || u32_at(data, offset + 12) != Some(0x5F0F_3CF5) {
            return Err("the head table is damaged".into());
        }
    }
    // Every byte belongs to a structure: between the directory, the tables and the end of
    // the data there may only be the zero padding that aligns tables to four bytes.
    tables.sort_unstable();
    let mut covered = dir_end;
    for (offset, end, tag) in &tables {
        if offset < &covered {
            if end > offset {
                return Err(format!(
                    "table '{}' overlaps another",
                    String::from_utf8_lossy(tag)
                ));
            }
            continue;
        }
        check_padding(data, covered, *offset)?;
        covered = *end;
    }
    check_padding(data, covered, data.len())
}

/// Writes a checked sfnt font anew from its tables of [`KNOWN_TABLES`], in tag order, each
/// padded to four bytes with zeros, with fresh checksums. Returns the font and the tags of the
/// tables left out (a vendor's private table, or a payload hung on the font).
///
/// # Errors
/// When the font does not pass [`sfnt`]'s checks.
pub fn rebuild_sfnt(data: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    sfnt(data)?;
    let count = u16_at(data, 4).unwrap_or(0);
    let mut kept: Vec<([u8; 4], &[u8])> = Vec::with_capacity(count);
    let mut dropped = Vec::new();
    for i in 0..count {
        let rec = 12 + 16 * i;
        let Some(tag) = data
            .get(rec..rec + 4)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
        else {
            continue;
        };
        let (Some(offset), Some(len)) = (u32_at(data, rec + 8), u32_at(data, rec + 12)) else {
            continue;
        };
        let body = data.get(offset..offset + len).unwrap_or_default();
        if KNOWN_TABLES.contains(&&tag) {
            kept.push((tag, body));
        } else {
            dropped.push(String::from_utf8_lossy(&tag).escape_debug().to_string());
        }
    }
    kept.sort_by_key(|(tag, _)| *tag);
    let n = kept.len();
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..4]);
    let entry_selector = usize::BITS - 1 - n.max(1).leading_zeros();
    let search_range = 16usize << entry_selector;
    for v in [
        n,
        search_range,
        entry_selector as usize,
        n * 16 - search_range.min(n * 16),
    ] {
        out.extend_from_slice(&u16::try_from(v).unwrap_or(0).to_be_bytes());
    }
    let mut offset = 12 + 16 * n;
    let mut bodies = Vec::with_capacity(data.len());
    let mut head_at = None;
    for (tag, body) in &kept {
        let mut padded = body.to_vec();
        if tag == b"head" && padded.len() >= 12 {
            padded[8..12].fill(0);
            head_at = Some(offset);
        }
        padded.resize(padded.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(&padded).to_be_bytes());
        out.extend_from_slice(&u32::try_from(offset).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
        offset += padded.len();
        bodies.extend_from_slice(&padded);
    }
    out.extend_from_slice(&bodies);
    if let Some(at) = head_at {
        let adjust = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
        out[at + 8..at + 12].copy_from_slice(&adjust.to_be_bytes());
    }
    Ok((out, dropped))
}

/// The sfnt checksum: the wrapping sum of big-endian 32-bit words (the tail zero-padded).
fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

fn check_padding(data: &[u8], from: usize, to: usize) -> Result<(), String> {
    let gap = data.get(from..to).unwrap_or_default();
    if gap.len() > 3 || gap.iter().any(|&b| b != 0) {
        return Err(format!(
            "{} bytes at offset {from} belong to no table",
            gap.len()
        ));
    }
    Ok(())
}

/// A CFF INDEX at `pos`: its items' ranges and the offset just past it.
fn cff_index(data: &[u8], pos: usize) -> Result<(Vec<(usize, usize)>, usize), String> {
    let count = u16_at(data, pos).ok_or("an INDEX runs past the end")?;
    if count == 0 {
        return Ok((Vec::new(), pos + 2));
    }
    let off_size = usize::from(*data.get(pos + 2).ok_or("an INDEX runs past the end")?);
    if !(1..=4).contains(&off_size) {
        return Err(format!("INDEX offset size {off_size}"));
    }
    let offsets_at = pos + 3;
    let base = offsets_at + (count + 1) * off_size - 1;
    let mut offsets = Vec::with_capacity(count + 1);
    for i in 0..=count {
        let at = offsets_at + i * off_size;
        let bytes = data
            .get(at..at + off_size)
            .ok_or("an INDEX runs past the end")?;
        let value = bytes.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b));
        if offsets.last().is_some_and(|&prev| value < prev) || (i == 0 && value != 1) {
            return Err("INDEX offsets out of order".into());
        }
        offsets.push(value);
    }
    let end = base + offsets[count];
    if end > data.len() {
        return Err("an INDEX runs past the end".into());
    }
    let items = offsets
        .windows(2)
        .map(|w| (base + w[0], base + w[1]))
        .collect();
    Ok((items, end))
}

/// The operators of a CFF DICT with their integer operands (reals read as 0).
fn cff_dict(dict: &[u8]) -> Result<Vec<(u16, Vec<i64>)>, String> {
    let mut out = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < dict.len() {
        let b0 = dict[i];
        let byte = |k: usize| {
            dict.get(i + k)
                .copied()
                .map(i64::from)
                .ok_or("truncated DICT")
        };
        match b0 {
            0..=21 => {
                let op = if b0 == 12 {
                    i += 1;
                    1200 + u16::from(*dict.get(i).ok_or("truncated DICT")?)
                } else {
                    u16::from(b0)
                };
                out.push((op, std::mem::take(&mut operands)));
                i += 1;
            }
            28 => {
                let v = ((byte(1)? << 8) | byte(2)?) as u16 as i16;
                operands.push(i64::from(v));
                i += 3;
            }
            29 => {
                let v = (byte(1)? << 24) | (byte(2)? << 16) | (byte(3)? << 8) | byte(4)?;
                operands.push(i64::from(v as u32 as i32));
                i += 5;
            }
            30 => {
                i += 1;
                loop {
                    let b = *dict.get(i).ok_or("truncated real in DICT")?;
                    i += 1;
                    if b >> 4 == 0xf || b & 0xf == 0xf {
                        break;
                    }
                }
                operands.push(0);
            }
            32..=246 => {
                operands.push(i64::from(b0) - 139);
                i += 1;
            }
            247..=250 => {
                operands.push((i64::from(b0) - 247) * 256 + byte(1)? + 108);
                i += 2;
            }
            251..=254 => {
                operands.push(-(i64::from(b0) - 251) * 256 - byte(1)? - 108);
                i += 2;
            }
            _ => return Err(format!("reserved byte {b0} in a DICT")),
        }
        if operands.len() > 48 {
            return Err("too many DICT operands".into());
        }
    }
    Ok(out)
}

/// The first operand of `op` in a parsed DICT, as an offset or size.
fn dict_operand(dict: &[(u16, Vec<i64>)], op: u16, n: usize) -> Option<usize> {
    dict.iter()
        .find(|(o, _)| *o == op)
        .and_then(|(_, v)| v.get(n).copied())
        .and_then(|v| usize::try_from(v).ok())
}

/// A Private DICT given as `[size offset]`, with its local subroutines: the end of both.
fn cff_private(data: &[u8], size: usize, offset: usize) -> Result<usize, String> {
    let end = offset
        .checked_add(size)
        .filter(|&e| e <= data.len())
        .ok_or("the Private DICT lies outside the font")?;
    let private = cff_dict(&data[offset..end])?;
    match dict_operand(&private, 19, 0) {
        Some(subrs) => {
            let (_, subrs_end) = cff_index(data, offset + subrs)?;
            Ok(end.max(subrs_end))
        }
        None => Ok(end),
    }
}

/// The end of a charset (format 0, 1 or 2) for `glyphs` glyphs.
fn cff_charset_end(data: &[u8], at: usize, glyphs: usize) -> Result<usize, String> {
    let format = *data.get(at).ok_or("the charset lies outside the font")?;
    let mut pos = at + 1;
    let mut covered = 1; // .notdef is implicit
    match format {
        0 => pos += 2 * glyphs.saturating_sub(1),
        1 | 2 => {
            let width = if format == 1 { 1 } else { 2 };
            while covered < glyphs {
                let left = if format == 1 {
                    usize::from(
                        *data
                            .get(pos + 2)
                            .ok_or("the charset lies outside the font")?,
                    )
                } else {
                    u16_at(data, pos + 2).ok_or("the charset lies outside the font")?
                };
                covered += left + 1;
                pos += 2 + width;
            }
        }
        other => return Err(format!("charset format {other}")),
    }
    if pos > data.len() {
        return Err("the charset lies outside the font".into());
    }
    Ok(pos)
}

/// The end of an FDSelect (format 0 or 3) for `glyphs` glyphs.
fn cff_fdselect_end(data: &[u8], at: usize, glyphs: usize) -> Result<usize, String> {
    let end = match data.get(at) {
        Some(0) => at + 1 + glyphs,
        Some(3) => at + 3 + 3 * u16_at(data, at + 1).ok_or("FDSelect lies outside the font")? + 2,
        Some(other) => return Err(format!("FDSelect format {other}")),
        None => return Err("FDSelect lies outside the font".into()),
    };
    if end > data.len() {
        return Err("FDSelect lies outside the font".into());
    }
    Ok(end)
}

/// The end of a custom encoding (format 0 or 1, with or without supplements).
fn cff_encoding_end(data: &[u8], at: usize) -> Result<usize, String> {
    let format = *data.get(at).ok_or("the encoding lies outside the font")?;
    let n = usize::from(
        *data
            .get(at + 1)
            .ok_or("the encoding lies outside the font")?,
    );
    let mut end = match format & 0x7f {
        0 => at + 2 + n,
        1 => at + 2 + 2 * n,
        other => return Err(format!("encoding format {other}")),
    };
    if format & 0x80 != 0 {
        let sups = usize::from(*data.get(end).ok_or("the encoding lies outside the font")?);
        end += 1 + 3 * sups;
    }
    if end > data.len() {
        return Err("the encoding lies outside the font".into());
    }
    Ok(end)
}

/// A bare CFF font (`Type1C`, `CIDFontType0C`). Every structure is read and the file must end
/// where the last of them does (give or take three padding bytes): data appended to a valid
/// font is refused.
fn cff(data: &[u8]) -> Result<(), String> {
    let header = data.get(..4).ok_or("shorter than a CFF header")?;
    if header[0] != 1 || header[2] < 4 || !(1..=4).contains(&header[3]) {
        return Err("not a CFF font".into());
    }
    let (names, end) = cff_index(data, usize::from(header[2]))?;
    let (tops, end) = cff_index(data, end)?;
    if names.len() != 1 || tops.len() != 1 {
        return Err("a CFF font set must hold exactly one font".into());
    }
    let (_, end) = cff_index(data, end)?; // strings
    let (_, mut last) = cff_index(data, end)?; // global subroutines
    let (from, to) = tops[0];
    let top = cff_dict(data.get(from..to).ok_or("top DICT out of range")?)?;
    let charstrings = dict_operand(&top, 17, 0).ok_or("no CharStrings")?;
    let (glyphs, glyphs_end) = cff_index(data, charstrings)?;
    if glyphs.is_empty() {
        return Err("no glyphs".into());
    }
    last = last.max(glyphs_end);
    if let (Some(size), Some(offset)) = (dict_operand(&top, 18, 0), dict_operand(&top, 18, 1)) {
        last = last.max(cff_private(data, size, offset)?);
    }
    // charset 0–2 and encoding 0–1 are predefined, not stored.
    if let Some(charset) = dict_operand(&top, 15, 0).filter(|&c| c > 2) {
        last = last.max(cff_charset_end(data, charset, glyphs.len())?);
    }
    if let Some(encoding) = dict_operand(&top, 16, 0).filter(|&e| e > 1) {
        last = last.max(cff_encoding_end(data, encoding)?);
    }
    if let Some(fd_select) = dict_operand(&top, 1237, 0) {
        last = last.max(cff_fdselect_end(data, fd_select, glyphs.len())?);
    }
    if let Some(fd_array) = dict_operand(&top, 1236, 0) {
        let (fds, fds_end) = cff_index(data, fd_array)?;
        last = last.max(fds_end);
        for (from, to) in fds {
            let fd = cff_dict(&data[from..to])?;
            if let (Some(size), Some(offset)) = (dict_operand(&fd, 18, 0), dict_operand(&fd, 18, 1))
            {
                last = last.max(cff_private(data, size, offset)?);
            }
        }
    }
    check_padding(data, last, data.len())
}

/// A Type 1 font program: clear text starting `%!`, encrypted binary, then zeros and
/// `cleartomark` in plain text.
fn type1(dict: &Dictionary, data: &[u8], src: &Document) -> Result<(), String> {
    let length = |key: &[u8]| {
        dict.get(key)
            .ok()
            .map(|o| match o {
                Object::Reference(id) => src.get_object(*id).ok().unwrap_or(&Object::Null),
                other => other,
            })
            .and_then(|o| o.as_i64().ok())
            .and_then(|v| usize::try_from(v).ok())
    };
    if !data.starts_with(b"%!") {
        return Err("not a Type 1 font program".into());
    }
    let (Some(clear), Some(binary)) = (length(b"Length1"), length(b"Length2")) else {
        return Err("no /Length1 and /Length2".into());
    };
    let cleartext = data.get(..clear).ok_or("/Length1 runs past the end")?;
    if !cleartext.windows(5).any(|w| w == b"eexec") {
        return Err("no eexec section".into());
    }
    let rest = clear
        .checked_add(binary)
        .and_then(|e| data.get(e..))
        .ok_or("/Length2 runs past the end")?;
    if rest.len() > 4096
        || rest
            .iter()
            .any(|&b| !(b.is_ascii_graphic() || b.is_ascii_whitespace() || b == 0))
    {
        return Err(format!(
            "{} bytes of data after the font program",
            rest.len()
        ));
    }
    Ok(())
}
