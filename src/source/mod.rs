//! Where content enters the gateway: the SMTP listener (`smtp`) and the import folder
//! (`import`).
//!
//! Owns: accepting input durably — a message is answered 250 only once it is fsynced in the
//! spool; an imported file leaves its folder only once its result is durably written.
//! Must never: forward anything itself; it hands work to the pipeline through the stores.

pub mod import;
pub mod smtp;
