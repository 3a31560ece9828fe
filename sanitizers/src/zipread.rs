//! Reading ZIP members under hardening rules, shared by the OOXML package reader and the
//! archive sanitizer.
//!
//! Owns: turning ZIP bytes into an ordered list of members with their raw names and bytes.
//! Invariants: every rule below is an error, never a repair — encrypted entries; local headers
//! that overlap another entry's data (the overlapping-entry bomb); a local header naming its
//! member differently from the central directory; more members than allowed;
//! declared or actual expanded sizes over the budget; a compression ratio past the limit; a
//! stored member whose CRC or sizes disagree; an entry that inflates to another size than its
//! header says.
//! Must never: inflate more than the budget, whatever the headers claim; judge names (that is
//! the caller's rule to make).

use std::borrow::Cow;
use std::io::{Cursor, Read};

use crate::error::{Error, Result};
use crate::policy::Limits;

/// One member, in central-directory order.
pub struct Entry<'a> {
    /// The name as stored (no decoding).
    pub raw_name: Vec<u8>,
    /// The name as the zip crate decodes it (UTF-8 flag honoured, else CP437).
    pub name: String,
    /// A directory entry (name ends with `/`); its bytes are empty.
    pub is_dir: bool,
    /// A Unix symbolic link; its bytes are not read.
    pub is_symlink: bool,
    /// The last-modified time recorded for it.
    pub modified: Option<zip::DateTime>,
    /// The member's expanded bytes: borrowed from the input when stored, inflated otherwise.
    pub bytes: Cow<'a, [u8]>,
}

/// The name a local file header at `start` records (signature checked), if it is in bounds.
fn local_name(input: &[u8], start: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let header = input.get(start..start.checked_add(30)?)?;
    if header[..4] != *b"PK\x03\x04" {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([header[26], header[27]]));
    input.get(start + 30..start + 30 + len)
}

/// Opens a ZIP's central directory, refusing more members than `limits` allow.
///
/// # Errors
/// Not a readable ZIP (`malformed`), or too many members (`limit-exceeded`).
pub(crate) fn open<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<zip::ZipArchive<Cursor<&'a [u8]>>> {
    let archive = zip::ZipArchive::new(Cursor::new(input))
        .map_err(|e| Error::malformed(format!("not a readable ZIP: {e}")))?;
    if archive.len() as u64 > limits.max_members {
        return Err(Error::limit_exceeded(format!(
            "{} members in the ZIP (limit {})",
            archive.len(),
            limits.max_members
        )));
    }
    Ok(archive)
}

/// Reads every member of the ZIP into memory, enforcing the limits.
///
/// # Errors
/// Malformed, encrypted or over-limit archives, as listed in the module docs; unsupported
/// compression methods are `unsupported`.
pub fn entries<'a>(input: &'a [u8], limits: &Limits) -> Result<Vec<Entry<'a>>> {
    let mut archive = open(input, limits)?;
    let mut out = Vec::with_capacity(archive.len());
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| Error::malformed(format!("ZIP entry {i}: {e}")))?;
        let raw_name = entry.name_raw().to_vec();
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&raw_name).into_owned());
        if entry.encrypted() {
            return Err(Error::encrypted(format!("ZIP entry {name} is encrypted")));
        }
        let data_start = entry
            .data_start()
            .ok_or_else(|| Error::malformed(format!("ZIP entry {name} has no data offset")))?;
        if local_name(input, entry.header_start()) != Some(raw_name.as_slice()) {
            // The central directory and the local header name the member differently: a
            // reader that walks local headers sees another package than we rebuild from.
            return Err(Error::malformed(format!(
                "ZIP entry {name}: its local header gives another name"
            )));
        }
        spans.push((
            entry.header_start(),
            data_start.saturating_add(entry.compressed_size()),
            name.clone(),
        ));
        let declared = entry.size();
        let compressed = entry.compressed_size().max(1);
        total = total.saturating_add(declared);
        if total > limits.max_expanded_bytes {
            return Err(Error::limit_exceeded("ZIP expands past the size limit"));
        }
        if declared > limits.ratio_floor_bytes
            && declared / compressed > limits.max_compression_ratio
        {
            return Err(Error::limit_exceeded(format!(
                "ZIP entry {name} compresses {}:1 (limit {}:1)",
                declared / compressed,
                limits.max_compression_ratio
            )));
        }
        let method = entry.compression();
        let stored = method == zip::CompressionMethod::Stored;
        if !stored && method != zip::CompressionMethod::Deflated && !entry.is_dir() {
            // Deflate64, Implode, LZMA, bzip2, zstd…: mukaika inflates only what it was built
            // and tested with.
            return Err(Error::unsupported(format!(
                "ZIP entry {name} uses compression method {method:?}"
            )));
        }
        let crc = entry.crc32();
        let is_dir = entry.is_dir();
        let is_symlink = entry.is_symlink();
        let modified = entry.last_modified();
        drop(entry);
        let mut member = Entry {
            raw_name,
            name: name.clone(),
            is_dir,
            is_symlink,
            modified,
            bytes: Cow::Borrowed(&[]),
        };
        if is_dir || is_symlink {
            out.push(member);
            continue;
        }
        if stored {
            // Stored data is the bytes themselves: borrow them (pictures are stored, and are
            // most of a package's size) once the sizes and the CRC agree.
            let start = usize::try_from(data_start).unwrap_or(usize::MAX);
            let bytes = usize::try_from(declared)
                .ok()
                .and_then(|len| input.get(start..start.checked_add(len)?))
                .ok_or_else(|| Error::malformed(format!("ZIP entry {name} runs past the end")))?;
            if declared != compressed && declared != 0 {
                return Err(Error::malformed(format!(
                    "stored ZIP entry {name} has two sizes"
                )));
            }
            if crc32fast::hash(bytes) != crc {
                return Err(Error::malformed(format!("ZIP entry {name} fails its CRC")));
            }
            member.bytes = Cow::Borrowed(bytes);
            out.push(member);
            continue;
        }
        let entry = archive.by_index(i).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(what) => {
                Error::unsupported(format!("ZIP entry {name}: {what} (method {method:?})"))
            }
            other => Error::malformed(format!("ZIP entry {name}: {other}")),
        })?;
        let mut bytes = Vec::with_capacity(declared.min(64 << 20) as usize);
        // Read one byte past the declared size so a lying header is caught, not trusted.
        entry
            .take(declared.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Error::malformed(format!("ZIP entry {name} does not inflate: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(Error::malformed(format!(
                "ZIP entry {name} inflates to a size other than declared"
            )));
        }
        member.bytes = Cow::Owned(bytes);
        out.push(member);
    }
    spans.sort();
    for pair in spans.windows(2) {
        if pair[0].1 > pair[1].0 {
            return Err(Error::malformed(format!(
                "ZIP entries {} and {} overlap",
                pair[0].2, pair[1].2
            )));
        }
    }
    Ok(out)
}
