//! Reading an OPC package (a ZIP) under hardening rules.
//!
//! Owns: turning ZIP bytes into a map of part name → bytes.
//! Invariants: every rule below is an error, never a repair — encrypted entries; names that
//! are absolute, contain `..`, backslashes or control characters; names that collide
//! case-insensitively (OPC part names are case-insensitive, so two would be ambiguous); local
//! headers that overlap another entry's data; more members than allowed; declared or actual
//! expanded sizes over the budget; a compression ratio past the limit.
//! Must never: inflate more than the budget, whatever the headers claim.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use crate::error::{Error, Result};
use crate::policy::Limits;

/// The parts of a package, by lower-cased name. Stored (uncompressed) members are borrowed
/// from the input after their CRC is checked; deflated ones are inflated.
pub struct Package<'a> {
    parts: BTreeMap<String, Cow<'a, [u8]>>,
}

impl Package<'_> {
    /// A part's bytes, by name (case-insensitive, leading slash optional).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.parts
            .get(&name.trim_start_matches('/').to_ascii_lowercase())
            .map(|b| &**b)
    }
}

/// Reads every member of the ZIP into memory, enforcing the limits.
///
/// # Errors
/// Malformed, encrypted or over-limit archives, as listed in the module docs.
pub fn read<'a>(input: &'a [u8], limits: &Limits) -> Result<Package<'a>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(input))
        .map_err(|e| Error::malformed(format!("not a readable ZIP package: {e}")))?;
    if archive.len() as u64 > limits.max_members {
        return Err(Error::limit_exceeded(format!(
            "{} members in the package",
            archive.len()
        )));
    }
    let mut parts = BTreeMap::new();
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| Error::malformed(format!("ZIP entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.encrypted() {
            return Err(Error::encrypted(format!("ZIP entry {name} is encrypted")));
        }
        check_name(&name)?;
        let data_start = entry
            .data_start()
            .ok_or_else(|| Error::malformed(format!("ZIP entry {name} has no data offset")))?;
        spans.push((
            entry.header_start(),
            data_start.saturating_add(entry.compressed_size()),
            name.clone(),
        ));
        let declared = entry.size();
        let compressed = entry.compressed_size().max(1);
        total = total.saturating_add(declared);
        if total > limits.max_expanded_bytes {
            return Err(Error::limit_exceeded("package expands past the size limit"));
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
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let crc = entry.crc32();
        drop(entry);
        if name.ends_with('/') {
            continue;
        }
        let key = name.to_ascii_lowercase();
        if parts.contains_key(&key) {
            return Err(Error::malformed(format!("ZIP entry {name} appears twice")));
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
            parts.insert(key, Cow::Borrowed(bytes));
            continue;
        }
        let entry = archive
            .by_index(i)
            .map_err(|e| Error::malformed(format!("ZIP entry {name}: {e}")))?;
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
        parts.insert(key, Cow::Owned(bytes));
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
    Ok(Package { parts })
}

fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.split('/').any(|seg| seg == "..")
        || name.chars().any(char::is_control)
        || name.as_bytes().get(1) == Some(&b':');
    if bad {
        return Err(Error::malformed(format!(
            "ZIP entry name {name:?} is not a safe relative path"
        )));
    }
    Ok(())
}
