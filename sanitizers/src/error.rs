//! The sanitizer error type.
//!
//! Owns: [`Error`], an opaque error with predicates, in the style of lettre's SMTP error.
//! Invariant: a sanitizer never decides what happens to a file that failed; it says *why* it
//! failed (malformed, unsupported, encrypted, limit exceeded, internal) and the policy decides.
//! Must never: carry a copy of the input bytes (errors end up in logs and reports).

use std::fmt;

/// Why a sanitizer could not produce a rebuilt file.
///
/// Every error ends in quarantine (never pass-through); the predicates let the policy and the
/// report explain which kind of failure it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Malformed,
    Unsupported,
    Encrypted,
    LimitExceeded,
    Timeout,
    Internal,
    Blocked,
    HeldMember,
    WrongPassword,
}

impl Error {
    /// The input does not parse, or parses ambiguously.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, message)
    }
    /// The input is of a kind (or uses a feature) this sanitizer does not rebuild.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// The input is encrypted and cannot be opened without a password.
    pub fn encrypted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Encrypted, message)
    }
    /// A configured limit (size, ratio, count, depth) was hit.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, message)
    }
    /// The per-file time budget ran out.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// A bug or an unexpected state in mukaika itself (including a caught panic, or an output
    /// that failed its own re-check).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A container holds a member that policy blocks (an executable in an archive): the whole
    /// container is blocked and never delivered. (The service keeps its original in the
    /// quarantine for the record; one holding a detected virus anywhere is never released.)
    pub fn blocked(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Blocked, message)
    }

    /// A container holds a member that cannot be made safe: the container is held whole.
    pub fn held_member(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::HeldMember, message)
    }

    /// A password was tried on an encrypted input and did not open it (a verifier, CRC or
    /// HMAC disagreed). The message never contains the password.
    pub fn wrong_password(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::WrongPassword, message)
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// True when the input could not be parsed unambiguously.
    pub fn is_malformed(&self) -> bool {
        self.kind == ErrorKind::Malformed
    }
    /// True when the input uses a kind or feature that is not rebuilt.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }
    /// True when the input is encrypted with an unknown password.
    pub fn is_encrypted(&self) -> bool {
        self.kind == ErrorKind::Encrypted
    }
    /// True when a size, count, ratio or depth limit was hit.
    pub fn is_limit_exceeded(&self) -> bool {
        self.kind == ErrorKind::LimitExceeded
    }
    /// True when the time budget ran out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
    /// True for mukaika's own failures (panics, failed self-checks).
    pub fn is_internal(&self) -> bool {
        self.kind == ErrorKind::Internal
    }

    /// True when the input holds something policy blocks outright.
    pub fn is_blocked(&self) -> bool {
        self.kind == ErrorKind::Blocked
    }

    /// True when a password was tried and did not open the input: nothing was decrypted.
    pub fn is_wrong_password(&self) -> bool {
        self.kind == ErrorKind::WrongPassword
    }

    /// The stable reason code written into reports and audit records.
    pub fn reason_code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Malformed => "malformed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Encrypted => "encrypted",
            ErrorKind::LimitExceeded => "limit-exceeded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal-error",
            ErrorKind::Blocked => "blocked-member",
            ErrorKind::HeldMember => "held-member",
            ErrorKind::WrongPassword => "wrong-password",
        }
    }

    /// The human-readable detail (English, technical).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason_code(), self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand used by every sanitizer.
pub type Result<T> = std::result::Result<T, Error>;
