//! The Maildir drop: the embedded default's LGWAN side, and where tests and small sites read
//! delivered mail.
//!
//! Owns: `tmp/` → fsync → `new/` → fsync of the folder (through `crate::durable`, the
//! temporary file uniquely named in `tmp/`), with a final name derived from the delivery key
//! alone, so a repeated delivery replaces the first copy.
//! Must never: leave a partial file in `new/`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::durable::{self, Temp};

/// Delivers a converted message into a maildir: `tmp/` → fsync → `new/` → fsync. The file
/// name is derived from `id` alone ([`maildir_name`]), so delivering the same message again
/// (after a crash between the delivery and its record) replaces the first copy instead of
/// adding a second one; a failed write leaves nothing behind in `tmp/`. The file is readable
/// as `File::create` would make it (the umask decides): the maildir's reader is often another
/// user of the group.
///
/// # Errors
/// Any write or rename failure (the caller defers the item).
pub fn deliver_maildir(root: &std::path::Path, id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(root.join(d))?;
    }
    let mut temp = Temp::create_as(&root.join("tmp"), "delivery", durable::READABLE)?;
    temp.file().write_all(bytes)?;
    temp.commit(
        &root.join("new").join(maildir_name(id)),
        durable::Mode::Replace,
    )
}

/// The maildir file name of the delivery `id` (a queue ID, `<ID>-notice`, `release-<ID>`…):
/// unique because IDs are, and the same on every attempt.
pub fn maildir_name(id: &str) -> String {
    format!("{}.mukaika", crate::names::safe_key(id))
}
