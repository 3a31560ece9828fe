//! Where sanitized content leaves the gateway towards LGWAN: the relay to the LGWAN-side mail
//! server (`relay`, over `relay_client`) and the Maildir drop.
//!
//! Owns: delivery and its retry rules.
//! Must never: deliver bytes that mukaika did not produce itself (a converted message, a notice,
//! or an approved release).

pub mod relay;
pub mod relay_client;
