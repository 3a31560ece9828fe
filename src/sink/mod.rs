//! Where sanitized content leaves the gateway towards LGWAN: the relay to the LGWAN-side mail
//! server (`relay`, over `relay_client`) and the Maildir drop.
//!
//! Owns: delivery and its retry rules.
//! Must never: deliver bytes that mukaika did not produce itself (a converted message, a notice,
//! or an approved release).

pub mod export;
pub mod maildir;
pub mod notice;
pub mod outgoing;
pub mod relay;
pub mod relay_client;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::store::spool::Spool;
use maildir::deliver_maildir;
pub use outgoing::{Approval, Origin, Outgoing};

/// Where converted messages go.
#[derive(Clone)]
pub enum Sink {
    /// Straight into a maildir (tmp → new), the embedded default.
    Maildir(PathBuf),
    /// Into the outgoing spool, which the relay workers send from.
    Relay {
        /// The outgoing spool.
        outgoing: Arc<Spool>,
        /// Wakes the relay workers.
        wake: Arc<Notify>,
    },
}

impl Sink {
    /// Hands a message mukaika built to the LGWAN side: into the maildir (tmp → new, fsynced)
    /// or the outgoing spool (fsynced; the relay workers are woken). Returns where it went:
    /// the maildir file, or `outgoing:<queue ID>`.
    ///
    /// # Errors
    /// Any write failure; nothing was delivered then.
    pub fn deliver(&self, out: Outgoing) -> crate::error::Result<String> {
        match self {
            Sink::Maildir(maildir) => deliver_maildir(maildir, out.key(), out.bytes())
                .map(|path| path.display().to_string())
                .map_err(|e| crate::error::Error::io(format!("maildir {}", maildir.display()), e)),
            Sink::Relay { outgoing, wake } => {
                let queued = outgoing
                    .accept(out.envelope().clone(), out.origin().as_str(), out.bytes())
                    .map(|meta| format!("outgoing:{}", meta.id))
                    .map_err(crate::error::Error::from);
                wake.notify_one();
                queued
            }
        }
    }
}
