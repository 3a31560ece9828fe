//! The service's error type: opaque, with predicates that say what the caller may do about it.
//!
//! Owns: the one error the service's layers return to each other (the sanitizers crate has its
//! own, and so do the spool and the review store, whose callers need their finer predicates).
//! Invariants: every error is either transient — the same step may succeed later (a full
//! disk, a relay that is down, a lock held by another process) — or permanent (a broken
//! configuration, an unusable certificate, a refused envelope); [`Error::is_transient`] is
//! what retry loops ask, never the message text. The message names what was being done and
//! on what, never secrets (passwords, keys).
//! Must never: be matched by its text, or carry a message's content.

use std::fmt;

/// What kind of failure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Worth retrying: I/O, the network, a lock held elsewhere.
    Transient,
    /// The disk (or quota) is full: transient, and worth saying so.
    NoSpace,
    /// Retrying does not help until someone changes something.
    Permanent,
    /// The configuration (or a file it names) is unusable.
    Config,
}

/// An error of the service.
pub struct Error {
    kind: Kind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The service's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failure the same step may get past later.
    pub fn transient(context: impl Into<String>) -> Error {
        Error::new(Kind::Transient, context)
    }

    /// A failure that retrying does not mend.
    pub fn permanent(context: impl Into<String>) -> Error {
        Error::new(Kind::Permanent, context)
    }

    /// The disk or quota is full while doing `context` (transient).
    pub fn no_space(context: impl Into<String>) -> Error {
        Error::new(Kind::NoSpace, context)
    }

    /// An unusable configuration or a file it names.
    pub fn config(context: impl Into<String>) -> Error {
        Error::new(Kind::Config, context)
    }

    /// An I/O failure while doing `context`: transient, or [`Error::is_no_space`] when the
    /// disk is full.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Error {
        let kind = if e.kind() == std::io::ErrorKind::StorageFull {
            Kind::NoSpace
        } else {
            Kind::Transient
        };
        Error::new(kind, context).with_source(e)
    }

    fn new(kind: Kind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause (shown after the context).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The same step may succeed later (retry with back-off).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, Kind::Transient | Kind::NoSpace)
    }

    /// The disk or quota is full.
    pub fn is_no_space(&self) -> bool {
        self.kind == Kind::NoSpace
    }

    /// Retrying does not help (a broken configuration is also permanent).
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The configuration or a file it names is unusable.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) if !self.context.is_empty() => write!(f, "{}: {source}", self.context),
            Some(source) => write!(f, "{source}"),
            None => f.write_str(&self.context),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {self})", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_transient_and_says_so() {
        let e = Error::io(
            "writing q/1",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        assert!(e.is_transient() && e.is_no_space() && !e.is_permanent());
        assert!(e.to_string().starts_with("writing q/1: "), "{e}");
    }

    #[test]
    fn configuration_errors_are_permanent() {
        let e = Error::config("tls_cert_file /x: not found");
        assert!(e.is_config() && e.is_permanent() && !e.is_transient());
        assert_eq!(e.to_string(), "tls_cert_file /x: not found");
    }

    #[test]
    fn the_cause_is_kept() {
        use std::error::Error as _;
        let e = Error::io("x", std::io::Error::other("inner"));
        assert_eq!(e.source().unwrap().to_string(), "inner");
    }
}
