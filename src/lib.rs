//! mukaika: the 無害化 gateway service.
//!
//! Owns: the commands behind the `mukaika` binary: the SMTP relay, the import folder, the
//! quarantine and its review UI, and the audit log, all on one sanitizer registry.
//! Invariant: only bytes in a [`mukaika_sanitizers::CleanFile`] (or a message mukaika wrote)
//! are ever written where a forwarding sink (or a user) would pick them up — the one exception
//! is a quarantined original whose release a second person approved ([`release`]).

pub mod admin;
pub mod antivirus;
pub mod audit;
pub mod clock;
pub mod config;
pub mod durable;
pub mod envelope;
pub mod error;
pub mod fonts;
pub mod live;
pub mod logging;
pub mod names;
pub mod pipeline;
pub mod ppap;
pub mod random;
pub mod review;
pub mod service;
pub mod sink;
pub mod source;
pub mod store;
pub mod tls;

pub use mukaika_sanitizers as sanitizers;
