//! The export folders on the LGWAN side: what mukaika writes there gets the owner and mode the
//! import pair configures.
//!
//! Owns: ownership and permissions of exported files.
//! Must never: write bytes that are not a sanitizer's output, a report mukaika wrote, or an
//! approved release.

use std::fs::File;

use crate::config::ImportPair;

/// Gives an open file the pair's mode and owner (each only when configured), so whatever
/// mukaika writes for the LGWAN side is readable by whom the pair says.
///
/// # Errors
/// chmod or chown failed (naming which).
pub fn apply_ownership(f: &File, pair: &ImportPair) -> std::io::Result<()> {
    if let Some(mode) = pair.mode_bits() {
        rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| std::io::Error::other(format!("chmod: {e}")))?;
    }
    if pair.uid.is_some() || pair.gid.is_some() {
        rustix::fs::fchown(
            f,
            pair.uid.map(rustix::fs::Uid::from_raw),
            pair.gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(|e| std::io::Error::other(format!("chown: {e}")))?;
    }
    Ok(())
}
