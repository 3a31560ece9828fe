//! The antivirus seam: an engine the registry asks about every input before it is judged.
//!
//! Owns: [`Scanner`] and its opaque [`ScanError`]. The engine itself (clamd over a socket)
//! lives with the service; this crate only calls the trait, so it stays free of I/O.
//! Invariants: a detection blocks the file with the signature's name; an engine that cannot
//! answer fails closed — the file is held with reason `scanner-unavailable`, which callers
//! treat as "try again later" (defer), never as clean.
//! Must never: treat an error as "no virus".

use std::fmt;

/// An antivirus engine.
pub trait Scanner: Send + Sync {
    /// Scans `bytes`: `Ok(Some(signature))` for a detection, `Ok(None)` when clean.
    ///
    /// # Errors
    /// The engine could not give an answer (unreachable, timed out, refused the stream).
    fn scan(&self, bytes: &[u8]) -> Result<Option<String>, ScanError>;
}

/// Why a scan gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    message: String,
    transient: bool,
}

impl ScanError {
    /// The engine could not answer now (unreachable, timed out): try again later.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }

    /// The engine will never answer for this input (it is over the engine's stream limit):
    /// trying again changes nothing, so the file is held.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// True when a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScanError {}

/// The reason code of a file held because the scanner gave no answer.
pub const UNAVAILABLE: &str = "scanner-unavailable";
/// The reason code of a file blocked by a detection.
pub const DETECTED: &str = "virus";
/// The reason code of a file the engine refuses to scan (over its stream limit).
pub const UNSCANNABLE: &str = "unscannable";
