//! What the gateway keeps on disk between steps: the SMTP spool (`spool`) and the quarantine
//! (`quarantine`).
//!
//! Owns: durable records and their on-disk layout.
//! Invariant: every record is written through `crate::durable` (temp file, fsync, rename, fsync
//! of the folder), so a crash leaves either the old or the new record, never half of one.
//! Must never: decide what is safe — that is the pipeline's and the sanitizers' job.

pub mod quarantine;
pub mod spool;
