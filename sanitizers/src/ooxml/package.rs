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

/// Reads every member of the package into memory, enforcing the limits and the OPC name rules.
///
/// # Errors
/// Malformed, encrypted or over-limit archives, as listed in the module docs.
pub fn read<'a>(input: &'a [u8], limits: &Limits) -> Result<Package<'a>> {
    let mut parts = BTreeMap::new();
    for entry in crate::zipread::entries(input, limits)? {
        let name = String::from_utf8_lossy(&entry.raw_name).into_owned();
        check_name(&name)?;
        if entry.is_symlink {
            return Err(Error::malformed(format!(
                "ZIP entry {name} is a symbolic link"
            )));
        }
        if name.ends_with('/') {
            continue;
        }
        let key = name.to_ascii_lowercase();
        if parts.contains_key(&key) {
            return Err(Error::malformed(format!("ZIP entry {name} appears twice")));
        }
        parts.insert(key, entry.bytes);
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
