//! Embedded font programs in PDF (`/FontFile`, `/FontFile2`, `/FontFile3`): kept only when they
//! parse as the format their key names.
//!
//! Owns: strict structural readers for the three containers — the sfnt table directory of
//! TrueType and OpenType fonts (every table named by a known tag, inside the data, not
//! overlapping, and every byte of the file belonging to the header, the directory or a table,
//! give or take its 0–3 padding bytes), CFF's header, INDEXes and top DICT (CharStrings and
//! Private inside the data), and Type 1's clear-text header with its `Length1`/`Length2`
//! sections and a plain-text trailer.
//! Invariants: sans-IO; never panics on any input; bounded by the data's length.
//! Must never: accept a font because a viewer would — a program that does not parse, carries
//! a table no font format defines or bytes outside its structures is dropped (and reported by
//! the caller), the page's text then shows in a substitute font.
//! Limits (said plainly): the glyph programs inside tables and CFF charstrings are not
//! interpreted, and bytes between CFF structures are not accounted for.

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
        if !KNOWN_TABLES.contains(&&tag) {
            return Err(format!(
                "table '{}' is not a font table",
                String::from_utf8_lossy(&tag).escape_debug()
            ));
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

/// A bare CFF font (`Type1C`, `CIDFontType0C`).
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
    cff_index(data, end)?; // global subroutines
    let (from, to) = tops[0];
    let top = cff_dict(data.get(from..to).ok_or("top DICT out of range")?)?;
    let operand = |op: u16, n: usize| {
        top.iter()
            .find(|(o, _)| *o == op)
            .and_then(|(_, v)| v.get(n).copied())
            .and_then(|v| usize::try_from(v).ok())
    };
    let charstrings = operand(17, 0).ok_or("no CharStrings")?;
    let (glyphs, _) = cff_index(data, charstrings)?;
    if glyphs.is_empty() {
        return Err("no glyphs".into());
    }
    if let (Some(size), Some(offset)) = (operand(18, 0), operand(18, 1)) {
        let end = offset.checked_add(size).filter(|&e| e <= data.len());
        let private = end
            .and_then(|e| data.get(offset..e))
            .ok_or("the Private DICT lies outside the font")?;
        let private = cff_dict(private)?;
        if let Some(subrs) = private
            .iter()
            .find(|(o, _)| *o == 19)
            .and_then(|(_, v)| v.first().copied())
            .and_then(|v| usize::try_from(v).ok())
        {
            cff_index(data, offset + subrs)?;
        }
    }
    if let Some(fd_array) = operand(1236, 0) {
        cff_index(data, fd_array)?;
    }
    Ok(())
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
