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

use crate::store::spool::{Lease, Spool};
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

    /// Whether converted messages pass on in their intake item's place ([`Sink::pass_on`])
    /// rather than through [`Sink::deliver`]: the relay's outgoing spool takes them by a rename.
    pub fn passes_on(&self) -> bool {
        matches!(self, Sink::Relay { .. })
    }

    /// Queues the converted message `out` for the relay in the place of its intake item
    /// `lease`, completing the lease by the same rename (see `Lease::pass_on_bytes`). The audit
    /// records of the message must be durable before. Returns `outgoing:<queue ID>`.
    ///
    /// # Errors
    /// Not the relay, not a converted message, or the spool could not write or move it: the
    /// item stays in the intake spool.
    pub fn pass_on(&self, lease: Lease, out: Outgoing) -> crate::error::Result<String> {
        use crate::error::Error;
        let Sink::Relay { outgoing, wake } = self else {
            return Err(Error::permanent("only the relay takes messages in place"));
        };
        if out.origin() != Origin::Converted {
            return Err(Error::permanent(
                "only a converted message passes on in place",
            ));
        }
        let id = lease.pass_on_bytes(
            outgoing,
            out.envelope().clone(),
            out.origin().as_str(),
            out.bytes(),
        )?;
        wake.notify_one();
        Ok(format!("outgoing:{id}"))
    }

    /// Finishes what [`Sink::pass_on`] began before an interruption: the intake item already
    /// holds the converted message (and its audit records were durable before it did).
    ///
    /// # Errors
    /// Not the relay (the configuration changed since), or the move failed.
    pub fn pass_on_staged(&self, lease: Lease) -> crate::error::Result<String> {
        use crate::error::Error;
        let Sink::Relay { outgoing, wake } = self else {
            return Err(Error::permanent("only the relay takes messages in place"));
        };
        let id = lease.pass_on_staged(outgoing)?;
        wake.notify_one();
        Ok(format!("outgoing:{id}"))
    }
}
