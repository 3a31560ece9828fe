//! The door to LGWAN: [`Outgoing`] is the only thing a [`super::Sink`] accepts.
//!
//! Owns: the three ways bytes may leave the gateway towards LGWAN, each a constructor.
//! - [`Outgoing::converted`] takes a [`CleanMessage`], which only the mail engine makes (the
//!   sanitizers crate gives it no public constructor): a converted message.
//! - [`Outgoing::notice`] takes a message mukaika wrote itself from its own templates (a
//!   recipients' or administrators' notice).
//! - [`Outgoing::release`] takes an [`Approval`]: a quarantined original whose release a
//!   second person approved.
//!
//! Invariants: an `Outgoing` cannot be built from arbitrary bytes; its origin travels with it
//! (into the audit record of the delivery). The two crate-visible doors are opened only where
//! the design says — `notice` in `crate::sink::notice` and `release` in `crate::review` —
//! and `tests/packaging.rs` holds the sources to that.
//! Must never: grow a constructor that takes plain bytes from a sanitizer's input.

use mukaika_sanitizers::mail::CleanMessage;

use crate::envelope::Envelope;

/// Where the bytes of an [`Outgoing`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A message the mail engine converted.
    Converted,
    /// A notice mukaika wrote.
    Notice,
    /// An original released by two people.
    Release,
}

impl Origin {
    /// The word used in logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Converted => "converted",
            Origin::Notice => "notice",
            Origin::Release => "release",
        }
    }
}

/// The proof a release carries: which request, who asked and who approved — two different
/// people, which [`crate::review`] checked before it made this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    request_id: String,
    requester: String,
    approver: String,
}

impl Approval {
    /// Only `crate::review` calls this, after the two-person check (see the module header).
    pub(crate) fn new(request_id: &str, requester: &str, approver: &str) -> Option<Approval> {
        // The two-person rule once more, where the bytes are about to leave: an approval by
        // the requester is no approval.
        (requester != approver).then(|| Approval {
            request_id: request_id.to_string(),
            requester: requester.to_string(),
            approver: approver.to_string(),
        })
    }

    /// The request this approval belongs to.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// One message on its way to the LGWAN side.
#[derive(Debug, Clone)]
pub struct Outgoing {
    envelope: Envelope,
    key: String,
    bytes: Vec<u8>,
    origin: Origin,
}

impl Outgoing {
    /// A converted message, delivered under `key` (its queue ID).
    pub fn converted(envelope: Envelope, key: &str, message: CleanMessage) -> Outgoing {
        Outgoing {
            envelope,
            key: key.to_string(),
            bytes: message.into_bytes(),
            origin: Origin::Converted,
        }
    }

    /// A notice mukaika wrote from its own templates. Only `crate::sink::notice` calls
    /// this (see the module header).
    pub(crate) fn notice(envelope: Envelope, key: &str, bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            envelope,
            key: key.to_string(),
            bytes,
            origin: Origin::Notice,
        }
    }

    /// A released original, as [`crate::review::release`] wraps it, under the approval that
    /// lets it out. Only `crate::review` calls this.
    pub(crate) fn release(envelope: Envelope, approval: &Approval, bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            envelope,
            key: format!("release-{}", approval.request_id),
            bytes,
            origin: Origin::Release,
        }
    }

    /// The SMTP envelope it goes with.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The delivery key: the same on every attempt, so a repeat replaces instead of adding.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The message bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where the bytes came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The envelope sender, the recipients and the bytes, for a hand-off straight to the
    /// relay (a cluster node's claimed release, which must not wait in this node's spool).
    pub(crate) fn into_relay(self) -> (String, Vec<String>, Vec<u8>) {
        (self.envelope.mail_from, self.envelope.rcpt_to, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_by_the_requester_is_no_approval() {
        assert!(Approval::new("R1", "yamada", "yamada").is_none());
        let ok = Approval::new("R1", "yamada", "tanaka").unwrap();
        assert_eq!(ok.request_id(), "R1");
    }

    #[test]
    fn a_release_is_keyed_by_its_request() {
        let approval = Approval::new("R7", "a", "b").unwrap();
        let out = Outgoing::release(Envelope::default(), &approval, b"x".to_vec());
        assert_eq!(out.key(), "release-R7");
        assert_eq!(out.origin(), Origin::Release);
    }
}
