//! The Maildir drop: the embedded default's LGWAN side, and where tests and small sites read
//! delivered mail.
//!
//! Owns: `tmp/` → fsync → `new/` → fsync of the folder, with a file name derived from the
//! delivery key alone, so a repeated delivery replaces the first copy.
//! Must never: leave a partial file in `new/`.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

/// Delivers a converted message into a maildir: `tmp/` → fsync → `new/` → fsync. The file
/// name is derived from `id` alone ([`maildir_name`]), so delivering the same message again
/// (after a crash between the delivery and its record) replaces the first copy instead of
/// adding a second one; a failed write leaves nothing behind in `tmp/`.
///
/// # Errors
/// Any write or rename failure (the caller defers the item).
pub fn deliver_maildir(root: &std::path::Path, id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(root.join(d))?;
    }
    let name = maildir_name(id);
    let tmp = root.join("tmp").join(&name);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dest = root.join("new").join(&name);
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crate::durable::sync_dir(&root.join("new"))?;
    Ok(dest)
}

/// The maildir file name of the delivery `id` (a queue ID, `<ID>-notice`, `release-<ID>`…):
/// unique because IDs are, and the same on every attempt.
pub fn maildir_name(id: &str) -> String {
    format!("{}.mukaika", crate::names::safe_key(id))
}
