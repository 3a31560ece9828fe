//! mukaika-sanitizers: content disarm and reconstruction for the mukaika gateway.
//!
//! Owns: true-type detection, policy and limits, the report schema, the registry, and one
//! rebuilder per format (PDF, Office Open XML).
//! Invariants: pure and synchronous — no tokio, no network, no global state, no file I/O.
//! Outputs are rebuilt from an allowlist, re-opened by our own parser, and a second pass must
//! remove nothing. Anything else (error, limit, panic, encryption) is a quarantine.
//! Must never: hand back input bytes as a deliverable.

pub mod archive;
pub mod detect;
pub mod error;
mod formula;
pub mod html;
pub mod kind;
pub mod mail;
pub mod mp3;
pub mod names;
pub mod odf;
pub mod ole;
pub mod ooxml;
pub mod pdf;
mod pdf_repair;
pub mod policy;
pub mod raster;
pub mod registry;
pub mod report;
pub mod rtf;
pub mod scanner;
pub mod svg;
pub mod text;
pub mod threads;
pub mod tnef;
pub mod unlock;
mod util;
pub mod xmlsniff;
mod zipread;

pub use detect::{Declared, Detection, Finding};
pub use error::Error;
pub use kind::{FileKind, KindClass};
pub use policy::{Action, Limits, Policy, PolicyError};
pub use registry::{CleanFile, Context, Outcome, Registry, Sanitized, Sanitizer};
pub use report::{Reason, Removal, Report, Verdict, What};
pub use resvg::usvg::fontdb;
pub use unlock::{encrypted_listing, unlock, EncryptedListing, Password, Unlocked};
