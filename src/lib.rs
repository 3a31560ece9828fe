//! mukaika: the 無害化 gateway service.
//!
//! Owns: the commands behind the `mukaika` binary. Today that is `mukaika sanitize`; the SMTP
//! relay, import folder, quarantine and audit log build on the same sanitizer registry.
//! Invariant: only bytes in a [`mukaika_sanitizers::CleanFile`] are ever written where a
//! forwarding sink (or a user) would pick them up.

pub mod admin;
pub mod antivirus;
pub mod audit;
pub mod config;
pub mod fonts;
pub mod import;
pub mod live;
pub mod mail;
pub mod metrics;
pub mod pipeline;
pub mod quarantine;
pub mod relay;
pub mod relay_client;
pub mod retention;
pub mod sanitize;
pub mod selfcheck;
pub mod service;
pub mod smtp;
pub mod spool;

pub use mukaika_sanitizers as sanitizers;
