//! Command bodies of the `mukaika` binary that are not the service itself: sanitizing files
//! and converting mail from the command line.
//!
//! Owns: writing results into an output folder the user named (never over an existing file).
//! Must never: be linked into the library — the service and its tests do not depend on it.

pub mod files;
pub mod mail;
pub mod ops;
