//! Settling one message as data: [`decide`] turns what the conversion came to into a
//! [`Settlement`] without touching anything, and [`apply`] carries a settlement out in the
//! one order that keeps every accepted message deliverable after a crash.
//!
//! Owns: which originals are held, what goes out (the converted message, the recipients'
//! notice), which audit records are written, and whether the item waits (deferred); and the
//! order of [`apply`], which the import folder settles its files with too (its own `decide`
//! and [`Effects`] over the export folder and its ledger).
//! Invariants:
//! - `decide` is pure: the same inputs (including `now`) give the same settlement; it is
//!   unit-tested here without a spool, store, sink or log.
//! - `apply` goes: originals held (durable) → converted message delivered once (marker) →
//!   notice delivered once → audit records durable → lease completed. Any failure before the
//!   completion returns an error and leaves the item queued (a failed delivery defers it), so
//!   the next pass settles it again; the delivery markers keep that pass from delivering twice.
//!   With the relay, the converted message is handed over at the completion itself (the intake
//!   item becomes the outgoing one by a rename, after the audit records), so it needs no marker.
//! - The original bytes appear in a settlement only inside [`Hold`]s (quarantine); what goes
//!   out is an [`Outgoing`], which cannot be made from them.
//!
//! Must never: deliver before the held originals are durable, or complete the lease before the
//! audit records are.

use mukaika_sanitizers::mail::{Disposition, MailOutcome, MailVerdict};

use crate::audit::event::{
    Deferred, Delivered, MessageConverted, NoticeSent, PartSanitized, Quarantined,
};
use crate::audit::AuditEvent;
use crate::config::NoticesSection;
use crate::error::Result;
use crate::sink::Outgoing;
use crate::store::quarantine::QuarantineItem;
use crate::store::spool::ItemMeta;

/// How long a message waits for the antivirus engine before it is tried again.
pub const SCANNER_RETRY_MS: u64 = 10_000;

/// What the conversion of one message came to.
pub enum Converted {
    /// The mail engine's outcome (which may itself hold the message).
    Outcome(Box<MailOutcome>),
    /// Conversion failed (reason code, detail): the original is held whole.
    Failed(&'static str, String),
    /// The antivirus engine gave no answer: nothing is decided, the message waits.
    ScannerUnavailable(String),
}

/// One original to put in the quarantine.
#[derive(Debug)]
pub struct Hold {
    /// Its record.
    pub item: QuarantineItem,
    /// Its bytes (the whole message, or one attachment as received).
    pub bytes: Vec<u8>,
    /// Whether the recipients' notice names it: what was held for review does; a blocked
    /// file kept only for the record (its kind, a virus) is already explained in the
    /// converted text, and a notice per blocked attachment would be noise.
    pub announce: bool,
}

/// Everything settling one item does, decided before anything is done. For mail (the
/// defaults) the originals are [`Hold`]s and what goes out an [`Outgoing`]; the import folder
/// settles its files with its own kinds.
#[derive(Debug)]
pub struct Settlement<H = Hold, O = Outgoing> {
    /// When set, the item only waits: (reason, not before this time in ms).
    pub defer: Option<(String, u64)>,
    /// Originals to hold, in order.
    pub held: Vec<H>,
    /// What goes out (the converted message; a file's exports), when something does.
    pub outgoing: Option<O>,
    /// The recipients' notice about what was held, when one goes out.
    pub notice: Option<O>,
    /// Audit records of the decision (deliveries add theirs in [`apply`]).
    pub events: Vec<AuditEvent>,
}

/// Decides how to settle the message `meta` describes.
///
/// `original` is the message as received; `now` stamps the quarantine records; `elapsed` is
/// how long conversion took.
pub fn decide(
    meta: &ItemMeta,
    original: &[u8],
    converted: Converted,
    notices: &NoticesSection,
    now: u64,
    elapsed_ms: u64,
) -> Settlement {
    let mut s = Settlement {
        defer: None,
        held: Vec::new(),
        outgoing: None,
        notice: None,
        events: Vec::new(),
    };
    let at = crate::clock::rfc3339_utc(now);
    let record =
        |id: &str, name: Option<String>, reason: (&str, &str), bytes: &[u8]| QuarantineItem {
            id: id.to_string(),
            source: "mail".into(),
            origin_id: meta.id.clone(),
            name,
            reason: reason.0.to_string(),
            detail: reason.1.to_string(),
            sha256: mukaika_sanitizers::report::sha256_hex(bytes),
            size: bytes.len() as u64,
            at: at.clone(),
            report: serde_json::Value::Null,
            mail_from: Some(meta.envelope.mail_from.clone()),
            rcpt_to: meta.envelope.rcpt_to.clone(),
            subject: None,
            detected_type: None,
        };
    let outcome = match converted {
        Converted::Outcome(o) => *o,
        Converted::ScannerUnavailable(why) => {
            let next = now + SCANNER_RETRY_MS;
            s.events.push(AuditEvent::Deferred(Deferred {
                queue_id: meta.id.clone(),
                reason: format!("antivirus unavailable: {why}"),
                attempt: meta.attempts + 1,
                next_attempt: crate::clock::rfc3339_utc(next),
            }));
            s.defer = Some(("antivirus unavailable".into(), next));
            return s;
        }
        Converted::Failed(code, detail) => {
            let mut item = record(&meta.id, None, (code, &detail), original);
            item.detected_type = Some("message/rfc822".into());
            hold(&mut s, item, original.to_vec(), true);
            s.notice = notice_for(notices, meta, &s.held);
            return s;
        }
    };
    let (report, message, held) = outcome.into_parts();
    for h in held {
        let entry = report
            .attachments
            .iter()
            .find(|a| a.quarantine_id.as_deref() == Some(h.quarantine_id.as_str()));
        let reason = entry
            .and_then(|a| a.report.reason.clone())
            .map(|r| (r.code, r.detail))
            .unwrap_or_default();
        let mut item = record(
            &h.quarantine_id,
            Some(h.name.clone()),
            (&reason.0, &reason.1),
            &h.bytes,
        );
        item.report = entry
            .map(|a| serde_json::to_value(&a.report).unwrap_or_default())
            .unwrap_or_default();
        item.subject = Some(report.subject.clone());
        item.detected_type = entry.map(|a| a.report.detected_type.name().to_string());
        // Blocked (not delivered, kept for the record) or held for review.
        let announce = entry.is_none_or(|a| a.disposition == Disposition::Held);
        hold(&mut s, item, h.bytes, announce);
    }
    for a in &report.attachments {
        s.events.push(AuditEvent::PartSanitized(PartSanitized {
            item_id: meta.id.clone(),
            name: a.report.input.clone(),
            verdict: match a.disposition {
                Disposition::Attached => "sanitized",
                Disposition::Removed => "blocked",
                Disposition::Held => "quarantined",
            }
            .into(),
            input_sha256: a.report.input_sha256.clone(),
            output_sha256: a.report.output_sha256.clone(),
            removed: a
                .report
                .removed
                .iter()
                .map(|r| format!("{:?} at {}", r.what, r.location))
                .collect(),
            detected_type: Some(a.report.detected_type.name().to_string()),
        }));
    }
    if report.verdict == MailVerdict::Quarantined {
        let reason = report
            .reason
            .clone()
            .map(|r| (r.code, r.detail))
            .unwrap_or_default();
        let mut item = record(&meta.id, None, (&reason.0, &reason.1), original);
        item.report = serde_json::to_value(&report).unwrap_or_default();
        item.subject = Some(report.subject.clone());
        item.detected_type = Some("message/rfc822".into());
        hold(&mut s, item, original.to_vec(), true);
    }
    s.events
        .push(AuditEvent::MessageConverted(MessageConverted {
            queue_id: meta.id.clone(),
            mukaika_id: report.id.clone(),
            message_id: report.message_id.clone(),
            verdict: format!("{:?}", report.verdict).to_ascii_lowercase(),
            input_sha256: report.input_sha256.clone(),
            output_sha256: report.output_sha256.clone(),
            findings: report.findings.iter().map(|f| f.code.clone()).collect(),
            elapsed_ms: Some(elapsed_ms),
        }));
    s.outgoing = message.map(|m| Outgoing::converted(meta.envelope.clone(), &meta.id, m));
    s.notice = notice_for(notices, meta, &s.held);
    s
}

/// Adds an original to hold, with its audit record.
fn hold(s: &mut Settlement, item: QuarantineItem, bytes: Vec<u8>, announce: bool) {
    s.events.push(AuditEvent::Quarantined(Quarantined {
        item_id: item.id.clone(),
        source: item.source.clone(),
        origin_id: item.origin_id.clone(),
        reason: item.reason.clone(),
        sha256: item.sha256.clone(),
    }));
    s.held.push(Hold {
        item,
        bytes,
        announce,
    });
}

/// The recipients' notice about `held` (`[notices] recipients`), if any.
fn notice_for(notices: &NoticesSection, meta: &ItemMeta, held: &[Hold]) -> Option<Outgoing> {
    let refs: Vec<&QuarantineItem> = held
        .iter()
        .filter(|h| h.announce)
        .map(|h| &h.item)
        .collect();
    crate::sink::notice::for_recipients(
        notices,
        &meta.id,
        &crate::clock::jst_display_of(&meta.received_at),
        &refs,
    )
}

/// The side effects [`apply`] needs, in the order it uses them, for one kind of item. The
/// SMTP pipeline implements it over the spool lease, quarantine store, sink and audit log, the
/// import folder over its source file, quarantine store, export folder (with its ledger) and
/// audit log; tests implement it in memory.
pub trait Effects {
    /// One original to hold.
    type Held;
    /// One thing to deliver (a converted message or notice; a file's exports).
    type Out;
    /// Holds one original durably.
    fn hold(&mut self, hold: &Self::Held) -> Result<()>;
    /// Delivers `out` unless it was delivered before an interruption, and says what that
    /// came to: the delivery's audit records, or that the item waits (a failed delivery the
    /// source retries later). An error leaves the item where it is, to be settled again.
    fn deliver_once(&mut self, out: Self::Out) -> Result<Handoff>;
    /// Delivers the recipients' notice about `held`; returns its audit records. A failure is
    /// logged by [`apply`], not retried: the originals are safe in the quarantine, and settling
    /// again would deliver the converted text twice.
    fn announce(&mut self, notice: Self::Out, held: &[Self::Held]) -> Result<Vec<AuditEvent>>;
    /// Appends audit records durably, all or nothing.
    fn audit(&mut self, events: &[AuditEvent]) -> Result<()>;
    /// The item waits until `next` (ms); it stays where it is.
    fn defer(&mut self, reason: &str, next: u64) -> Result<()>;
    /// The item is settled and leaves its source (the spool; the import folder).
    fn complete(&mut self) -> Result<()>;
}

/// What one delivery came to.
pub enum Handoff {
    /// Delivered (now, or before an interruption): these are its audit records (none when
    /// the sink writes its own, as the relay does when the LGWAN server takes the message).
    Done(Vec<AuditEvent>),
    /// Not delivered; the item waits: audit these records, then defer it.
    Wait {
        /// The records of the failed attempt.
        events: Vec<AuditEvent>,
        /// Why, for the spool.
        reason: String,
        /// Not before this time (ms).
        next: u64,
    },
}

/// Where one mail delivery went (the pipeline's sink answer).
pub struct Delivery {
    /// The destination (maildir file, `outgoing:<ID>`).
    pub destination: String,
    /// It had been made before an interruption and was not repeated.
    pub repeat: bool,
    /// The sink writes its own delivery record (the relay, when the LGWAN server takes it).
    pub audited_by_sink: bool,
}

impl Delivery {
    /// The audit records of this delivery of the message `meta` describes.
    pub fn events(self, meta: &ItemMeta) -> Vec<AuditEvent> {
        if self.audited_by_sink {
            return Vec::new();
        }
        vec![AuditEvent::Delivered(Delivered {
            queue_id: meta.id.clone(),
            destination: self.destination,
            rcpt_to: meta.envelope.rcpt_to.clone(),
            reply: if self.repeat {
                "maildir (delivered before an interruption; not repeated)".into()
            } else {
                "maildir".into()
            },
        })]
    }
}

/// A mail delivery that failed at `now`: the message waits, a minute more for every attempt
/// (at most an hour), with a record saying so.
pub fn deferral(meta: &ItemMeta, now: u64, error: &crate::error::Error) -> Handoff {
    let next = now + 60_000 * u64::from(meta.attempts + 1).min(60);
    let reason = error.to_string();
    Handoff::Wait {
        events: vec![AuditEvent::Deferred(Deferred {
            queue_id: meta.id.clone(),
            reason: reason.clone(),
            attempt: meta.attempts + 1,
            next_attempt: crate::clock::rfc3339_utc(next),
        })],
        reason,
        next,
    }
}

/// The record of a recipients' notice about `held` delivered to `destination`.
pub fn notice_sent(
    meta: &ItemMeta,
    held: &[Hold],
    rcpt_to: Vec<String>,
    destination: String,
) -> AuditEvent {
    AuditEvent::NoticeSent(NoticeSent {
        queue_id: meta.id.clone(),
        items: held
            .iter()
            .filter(|h| h.announce)
            .map(|h| h.item.id.clone())
            .collect(),
        rcpt_to,
        destination,
    })
}

/// Carries out `s` in the order the module header gives, for any source.
///
/// # Errors
/// A hold, delivery, audit, defer or completion failed: the item stays where it is and is
/// settled again.
pub fn apply<F: Effects>(s: Settlement<F::Held, F::Out>, fx: &mut F) -> Result<()> {
    let Settlement {
        defer,
        held,
        outgoing,
        notice,
        mut events,
    } = s;
    if let Some((reason, next)) = defer {
        fx.audit(&events)?;
        return fx.defer(&reason, next);
    }
    for h in &held {
        fx.hold(h)?;
    }
    if let Some(out) = outgoing {
        match fx.deliver_once(out)? {
            Handoff::Done(records) => events.extend(records),
            Handoff::Wait {
                events: records,
                reason,
                next,
            } => {
                events.extend(records);
                fx.audit(&events)?;
                return fx.defer(&reason, next);
            }
        }
    }
    if let Some(out) = notice {
        match fx.announce(out, &held) {
            Ok(records) => events.extend(records),
            Err(e) => tracing::error!(error = %e, "quarantine notice not delivered"),
        }
    }
    fx.audit(&events)?;
    fx.complete()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::error::Error;
    use mukaika_sanitizers::mail;
    use mukaika_sanitizers::Registry;

    fn meta() -> ItemMeta {
        ItemMeta {
            id: "Q1".into(),
            envelope: Envelope {
                helo: "mx.example.com".into(),
                mail_from: "sender@example.com".into(),
                rcpt_to: vec!["staff@city.example.lg.jp".into()],
                eight_bit: false,
                smtputf8: false,
            },
            client: "192.0.2.1".into(),
            received_at: "2026-12-04T00:00:00.000Z".into(),
            size: 0,
            sha256: String::new(),
            attempts: 0,
            next_attempt_ms: None,
            last_error: None,
            converted: false,
        }
    }

    fn converted(raw: &[u8]) -> Converted {
        let registry = Registry::standard();
        let policy = mukaika_sanitizers::Policy::default();
        Converted::Outcome(Box::new(mail::convert_by(
            raw, "Q1", &registry, &policy, None,
        )))
    }

    const PLAIN: &[u8] =
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n";

    fn with_encrypted_zip() -> Vec<u8> {
        use base64::Engine as _;
        let mut m =
            b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"a.zip\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
                .to_vec();
        m.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(mukaika_fixtures::zip_marked_encrypted())
                .as_bytes(),
        );
        m.extend_from_slice(b"\r\n--b--\r\n");
        m
    }

    fn kinds(events: &[AuditEvent]) -> String {
        let kinds: Vec<String> = events.iter().map(AuditEvent::kind).collect();
        kinds.join(",")
    }

    #[test]
    fn a_clean_message_goes_out_converted_and_holds_nothing() {
        let s = decide(
            &meta(),
            PLAIN,
            converted(PLAIN),
            &NoticesSection::default(),
            0,
            5,
        );
        assert!(s.defer.is_none());
        assert!(s.held.is_empty());
        assert!(s.notice.is_none());
        let out = s.outgoing.expect("converted message");
        assert_eq!(out.key(), "Q1");
        assert_eq!(out.origin(), crate::sink::Origin::Converted);
        assert!(matches!(
            s.events.last(),
            Some(AuditEvent::MessageConverted(m)) if m.elapsed_ms == Some(5)
        ));
    }

    #[test]
    fn a_failed_conversion_holds_the_original_whole_and_sends_nothing_converted() {
        let s = decide(
            &meta(),
            PLAIN,
            Converted::Failed("internal-error", "panicked".into()),
            &NoticesSection::default(),
            1_000,
            5,
        );
        assert!(s.outgoing.is_none());
        assert_eq!(s.held.len(), 1);
        assert_eq!(s.held[0].bytes, PLAIN);
        assert_eq!(s.held[0].item.reason, "internal-error");
        assert_eq!(s.held[0].item.at, "1970-01-01T00:00:01.000Z");
        assert!(s.notice.is_some(), "recipients are told by default");
    }

    #[test]
    fn an_unavailable_scanner_only_defers() {
        let s = decide(
            &meta(),
            PLAIN,
            Converted::ScannerUnavailable("down".into()),
            &NoticesSection::default(),
            1_000,
            5,
        );
        assert_eq!(s.defer, Some(("antivirus unavailable".into(), 11_000)));
        assert!(s.held.is_empty() && s.outgoing.is_none() && s.notice.is_none());
        assert!(matches!(s.events.as_slice(), [AuditEvent::Deferred(_)]));
    }

    #[test]
    fn a_held_attachment_is_held_and_announced_while_the_text_goes_out() {
        let raw = with_encrypted_zip();
        let s = decide(
            &meta(),
            &raw,
            converted(&raw),
            &NoticesSection::default(),
            0,
            1,
        );
        assert_eq!(s.held.len(), 1, "{:?}", s.held);
        assert_eq!(s.held[0].item.reason, "encrypted");
        assert_eq!(s.held[0].item.name.as_deref(), Some("a.zip"));
        assert!(s.outgoing.is_some());
        assert!(s.notice.is_some());
    }

    #[test]
    fn a_blocked_attachment_is_kept_for_the_record_but_not_announced() {
        use base64::Engine as _;
        let mut exe = b"MZ\x90\x00".to_vec();
        exe.resize(512, 0);
        let mut raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"tool.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&exe)
                .as_bytes(),
        );
        raw.extend_from_slice(b"\r\n--b--\r\n");
        let s = decide(
            &meta(),
            &raw,
            converted(&raw),
            &NoticesSection::default(),
            0,
            1,
        );
        assert_eq!(
            s.held.len(),
            1,
            "the blocked original is kept, as the import keeps it"
        );
        assert_eq!(s.held[0].item.reason, "blocked-kind");
        assert_eq!(s.held[0].bytes, exe);
        assert!(!s.held[0].announce);
        assert!(s.outgoing.is_some(), "the text goes out");
        assert!(s.notice.is_none(), "no notice for a blocked file alone");
    }

    /// Records what `apply` did, failing where told.
    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
        fail_delivery: bool,
        fail_hold: bool,
    }

    impl Effects for Recorder {
        type Held = Hold;
        type Out = Outgoing;
        fn hold(&mut self, h: &Hold) -> Result<()> {
            if self.fail_hold {
                return Err(Error::no_space("disk full"));
            }
            self.log.push(format!("hold {}", h.item.id));
            Ok(())
        }
        fn deliver_once(&mut self, out: Outgoing) -> Result<Handoff> {
            if self.fail_delivery {
                return Ok(deferral(&meta(), 0, &Error::transient("sink down")));
            }
            self.log.push(format!("deliver {}", out.key()));
            let d = Delivery {
                destination: format!("maildir/{}", out.key()),
                repeat: false,
                audited_by_sink: false,
            };
            Ok(Handoff::Done(d.events(&meta())))
        }
        fn announce(&mut self, out: Outgoing, held: &[Hold]) -> Result<Vec<AuditEvent>> {
            self.log.push(format!("deliver {}", out.key()));
            let to = out.envelope().rcpt_to.clone();
            Ok(vec![notice_sent(&meta(), held, to, "maildir".into())])
        }
        fn audit(&mut self, events: &[AuditEvent]) -> Result<()> {
            self.log.push(format!("audit {}", kinds(events)));
            Ok(())
        }
        fn defer(&mut self, reason: &str, _next: u64) -> Result<()> {
            self.log.push(format!("defer {reason}"));
            Ok(())
        }
        fn complete(&mut self) -> Result<()> {
            self.log.push("complete".into());
            Ok(())
        }
    }

    #[test]
    fn apply_holds_then_delivers_then_announces_then_audits_then_completes() {
        let raw = with_encrypted_zip();
        let s = decide(
            &meta(),
            &raw,
            converted(&raw),
            &NoticesSection::default(),
            0,
            1,
        );
        let held_id = s.held[0].item.id.clone();
        let mut fx = Recorder::default();
        apply(s, &mut fx).unwrap();
        assert_eq!(
            fx.log,
            [
                format!("hold {held_id}"),
                "deliver Q1".to_string(),
                "deliver Q1-notice".to_string(),
                "audit quarantined,part_sanitized,message_converted,delivered,notice_sent"
                    .to_string(),
                "complete".to_string(),
            ]
        );
    }

    #[test]
    fn a_failed_delivery_defers_after_auditing_and_never_completes() {
        let mut fx = Recorder {
            fail_delivery: true,
            ..Recorder::default()
        };
        let s = decide(
            &meta(),
            PLAIN,
            converted(PLAIN),
            &NoticesSection::default(),
            0,
            1,
        );
        apply(s, &mut fx).unwrap();
        assert_eq!(
            fx.log,
            ["audit message_converted,deferred", "defer sink down"]
        );
    }

    #[test]
    fn a_failed_hold_delivers_nothing_and_leaves_the_item_queued() {
        let raw = with_encrypted_zip();
        let s = decide(
            &meta(),
            &raw,
            converted(&raw),
            &NoticesSection::default(),
            0,
            1,
        );
        let mut fx = Recorder {
            fail_hold: true,
            ..Recorder::default()
        };
        let e = apply(s, &mut fx).unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert!(fx.log.is_empty(), "{:?}", fx.log);
    }
}
