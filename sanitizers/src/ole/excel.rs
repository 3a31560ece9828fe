//! Excel 97–2003: the BIFF8 record stream of a workbook (`Workbook`, or BIFF5's `Book`).
//!
//! Owns: finding what holds a workbook (FILEPASS, Excel 4.0 macro sheets, VB module sheets,
//! SUPBOOK links outside the workbook) and rebuilding the Workbook stream without the OBPROJ
//! record that tells Excel a VBA project exists (the project's `_VBA_PROJECT_CUR` storage is
//! never copied). CODENAME records stay: they are the names VBA would use for the workbook and
//! its sheets, Excel writes them into workbooks without macros too, and they run nothing.
//! Invariants: the rebuilt stream is the original records in order, less the removed ones;
//! every field that holds a position in the stream (BOUNDSHEET's lbPlyPos, INDEX's ibXF and
//! rgibRw, EXTSST's ib) is recomputed, and each must land where it did before (a sheet's BOF,
//! a DBCELL, a kept record); a pointer it cannot place holds the file.
//! Must never: shift records without recomputing every position that names them; rebuild a
//! pre-BIFF8 stream (its record layouts differ: held).

use crate::error::{Error, Result};
use crate::registry::Context;
use crate::report::What;

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
pub(super) fn check_workbook(book: &[u8]) -> Result<()> {
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

const BOF: u16 = 0x0809;
const EOF_RECORD: u16 = 0x000A;
const OBPROJ: u16 = 0x00D3;
const BOUNDSHEET: u16 = 0x0085;
const INDEX: u16 = 0x020B;
const DBCELL: u16 = 0x00D7;
const EXTSST: u16 = 0x00FF;
const CONTINUE: u16 = 0x003C;

/// One record of a strictly parsed stream: where it starts, its type and its data's range.
struct Record {
    at: usize,
    kind: u16,
    data: std::ops::Range<usize>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every record of the stream; bytes after the last whole record must be zero padding.
fn strict_records(book: &[u8]) -> Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(header) = book.get(at..at + 4) {
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let data = at + 4..at + 4 + len;
        if data.end > book.len() {
            return Err(Error::malformed(format!(
                "Excel record {kind:#06x} at {at} runs past the end of the stream"
            )));
        }
        records.push(Record { at, kind, data });
        at += 4 + len;
    }
    if book[at..].iter().any(|&b| b != 0) {
        return Err(Error::malformed("Excel stream ends inside a record"));
    }
    Ok((records, at))
}

/// Rebuilds the workbook stream without its OBPROJ record, or returns `None` when it has none
/// (the stream is then copied whole).
pub(super) fn without_vba_records(
    book: &[u8],
    stream_name: &str,
    cx: &mut Context<'_>,
) -> Result<Option<Vec<u8>>> {
    if !biff_records(book).any(|(kind, _)| kind == OBPROJ) {
        return Ok(None);
    }
    let (records, end) = strict_records(book)?;
    let first = records
        .first()
        .filter(|r| r.kind == BOF)
        .ok_or_else(|| Error::malformed("Excel stream does not open with BOF"))?;
    if book.get(first.data.start..first.data.start + 2) != Some(&[0x00, 0x06]) {
        return Err(Error::unsupported(
            "VBA project reference in a workbook older than BIFF8: held, not removed",
        ));
    }
    let globals_end = records
        .iter()
        .position(|r| r.kind == EOF_RECORD)
        .ok_or_else(|| Error::malformed("Excel workbook globals have no EOF"))?;

    // What goes: OBPROJ (an empty record) in the workbook globals, nowhere else.
    let mut removed: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.kind != OBPROJ {
            continue;
        }
        if i > globals_end || !r.data.is_empty() {
            return Err(Error::malformed(format!(
                "OBPROJ record at {} is not an empty record of the workbook globals",
                r.at
            )));
        }
        if records.get(i + 1).is_some_and(|n| n.kind == CONTINUE) {
            return Err(Error::malformed("OBPROJ record is continued"));
        }
        removed.push(r.at..r.data.end);
    }

    let starts: std::collections::HashMap<usize, u16> =
        records.iter().map(|r| (r.at, r.kind)).collect();
    // A position in the old stream, in the new one; it must not fall inside a removed record.
    let moved = |old: u32, must_be: Option<u16>| -> Result<u32> {
        let at = old as usize;
        if let Some(kind) = must_be {
            if starts.get(&at) != Some(&kind) {
                return Err(Error::malformed(format!(
                    "Excel stream position {at} does not point at a {kind:#06x} record"
                )));
            }
        } else if at > end {
            return Err(Error::malformed(format!(
                "Excel stream position {at} is past the end of the records"
            )));
        }
        let mut shift = 0usize;
        for range in &removed {
            if range.contains(&at) {
                return Err(Error::malformed(format!(
                    "Excel stream position {at} points into a removed record"
                )));
            }
            if range.end <= at {
                shift += range.len();
            }
        }
        u32::try_from(at - shift).map_err(|_| Error::malformed("Excel stream is too long"))
    };

    let mut out = Vec::with_capacity(book.len());
    for (i, r) in records.iter().enumerate() {
        cx.check_deadline()?;
        if removed.iter().any(|range| range.start == r.at) {
            continue;
        }
        let mut data = book[r.data.clone()].to_vec();
        let pointers: Vec<(usize, Option<u16>)> = match r.kind {
            BOUNDSHEET => vec![(0, Some(BOF))],
            INDEX => {
                if data.len() < 16 || !data.len().is_multiple_of(4) {
                    return Err(Error::malformed("Excel INDEX record has a bad length"));
                }
                // ibXF points at the DefColWidth record; rgibRw at each DBCELL.
                let mut p = vec![(12, None)];
                p.extend((16..data.len()).step_by(4).map(|at| (at, Some(DBCELL))));
                p
            }
            EXTSST => {
                if data.len() < 2 || !(data.len() - 2).is_multiple_of(8) {
                    return Err(Error::malformed("Excel EXTSST record has a bad length"));
                }
                (2..data.len()).step_by(8).map(|at| (at, None)).collect()
            }
            _ => Vec::new(),
        };
        if !pointers.is_empty() && records.get(i + 1).is_some_and(|n| n.kind == CONTINUE) {
            return Err(Error::unsupported(format!(
                "Excel record {:#06x} with stream positions is continued",
                r.kind
            )));
        }
        for (field, must_be) in pointers {
            let old = u32_at(&data, field)
                .ok_or_else(|| Error::malformed("Excel stream position is cut off"))?;
            // INDEX.ibXF may be zero when the sheet has no DefColWidth record.
            if r.kind == INDEX && field == 12 && old == 0 {
                continue;
            }
            let new = moved(old, must_be)?;
            data[field..field + 4].copy_from_slice(&new.to_le_bytes());
        }
        out.extend_from_slice(&r.kind.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&data);
    }
    out.extend_from_slice(&book[end..]);
    let dropped: usize = removed.iter().map(|r| r.len()).sum();
    if out.len() + dropped != book.len() {
        return Err(Error::internal("rebuilt Excel stream has the wrong length"));
    }
    cx.remove(
        What::Macro,
        stream_name,
        "OBPROJ record (the workbook's reference to its VBA project)",
    );
    Ok(Some(out))
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
}
