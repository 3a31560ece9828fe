//! The tamper-evident audit log.
//!
//! Owns: typed audit events ([`event`]), their hash-chained JSON Lines encoding ([`chain`]), the
//! group-committing writer with rotation, checkpoints and crash recovery ([`log`]), and
//! verification and search ([`verify`]).
//! Invariants: a record is on disk (fsynced) before `append` returns, so an action is never
//! acknowledged before it is recorded; every record names the hash of the one before, across
//! files; nothing ever rewrites a line.
//! Must never: record message bodies or file contents (hashes and names only).

pub mod chain;
pub mod event;
pub mod log;
pub mod syslog;
pub mod verify;

use std::fmt;
use std::path::Path;

pub use chain::Record;
pub use event::AuditEvent;
pub use log::{AuditConfig, AuditLog};
pub use verify::{search, verify, Search, VerifyReport};

/// Why the audit log could not do what was asked.
#[derive(Debug, Clone)]
pub struct AuditError {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io,
    Corrupt,
    Failed,
}

impl AuditError {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> Self {
        Self {
            kind: Kind::Io,
            message: format!("{}: {err}", path.display()),
        }
    }
    pub(crate) fn corrupt(message: String) -> Self {
        Self {
            kind: Kind::Corrupt,
            message,
        }
    }
    fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Failed,
            message: message.into(),
        }
    }
    /// A file or directory could not be read or written.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }
    /// The existing log is not a valid chain (run verify).
    pub fn is_corrupt(&self) -> bool {
        self.kind == Kind::Corrupt
    }
    /// An earlier write failed; the log refuses appends until restarted.
    pub fn is_failed(&self) -> bool {
        self.kind == Kind::Failed
    }
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuditError {}

/// For the service's layers: a log that refuses appends (a failed write) is worth retrying
/// once the cause is gone; a corrupt chain is not.
impl From<AuditError> for crate::error::Error {
    fn from(e: AuditError) -> crate::error::Error {
        let base = if e.is_corrupt() {
            crate::error::Error::permanent("audit log")
        } else {
            crate::error::Error::transient("audit log")
        };
        base.with_source(e)
    }
}
