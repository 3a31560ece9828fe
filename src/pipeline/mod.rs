//! Pipeline workers: the only place where untrusted bytes become something a forwarding sink
//! accepts.
//!
//! Owns: taking leases from the spool, running the mail engine on a blocking thread under a
//! deadline with panics caught, and settling each item: the converted message into the
//! maildir, held attachments and wholly held messages into the quarantine store, and an audit
//! record for every step.
//! Invariants: the order is outcome durable → delivery marker → audit durable → lease
//! completed, so a crash at any point leaves the item in the spool and it is processed again
//! (never lost); the marker (and, for the maildir, its file name derived from the queue ID)
//! makes the second pass skip a delivery already made, so each message is delivered once and
//! the audit log still gets its record. A settle that fails (a full disk, an audit write
//! refused) backs the worker off exponentially instead of retrying at once, and its ERROR line
//! is rate-limited. A panic, timeout or error quarantines the original whole and never stalls
//! the queue; only a `CleanMessage` is ever written to the maildir.

pub mod notice;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use mukaika_sanitizers::mail::{self, Disposition, MailOutcome, MailVerdict};
use mukaika_sanitizers::Registry;

use crate::audit::event::{
    Deferred, Delivered, MessageConverted, NoticeSent, PartSanitized, Quarantined,
};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::ServiceConfig;
use crate::live::Live;
use crate::sink::maildir::maildir_name;
use crate::sink::Sink;
use crate::store::quarantine::{QuarantineItem, QuarantineStore};
use crate::store::spool::lease_loop;
use crate::store::spool::{Lease, Spool};

/// Everything a worker needs.
pub struct Pipeline {
    /// The spool.
    pub spool: Arc<Spool>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// The quarantine store.
    pub quarantine: Arc<dyn QuarantineStore>,
    /// Where converted mail goes.
    pub sink: Sink,
    /// The sanitizer registry.
    pub registry: Arc<Registry>,
    /// The antivirus engine, when the stage is on: it also sees each message whole.
    pub antivirus: Option<Arc<crate::antivirus::Clamd>>,
    /// The configuration in force: its policy and per-message deadline, replaced on reload.
    pub config: Arc<Live<ServiceConfig>>,
    /// Woken by intake when a message arrives.
    pub wake: Arc<Notify>,
}

/// Lets one ERROR line a second through for a recurring failure and counts the rest, so an
/// outage is visible without flooding the log (every worker of a full disk fails at once).
pub(crate) struct RateLimit {
    /// (last line's time in ms, lines suppressed since).
    state: std::sync::Mutex<(u64, u64)>,
}

impl RateLimit {
    /// A limiter that lets the first line through.
    pub(crate) const fn new() -> Self {
        Self {
            state: std::sync::Mutex::new((0, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = crate::clock::now_ms();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_sub(st.0) >= 1000 {
            let suppressed = st.1;
            *st = (now, 0);
            Some(suppressed)
        } else {
            st.1 += 1;
            None
        }
    }
}

static SETTLE_ERRORS: RateLimit = RateLimit::new();

/// Takes the lease out of its slot (a poisoned lock still yields it: the lease is the item).
fn take(slot: &std::sync::Mutex<Option<Lease>>) -> Option<Lease> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// What to put in the quarantine.
struct Held<'a> {
    id: &'a str,
    origin: &'a str,
    name: Option<String>,
    reason: &'a str,
    detail: &'a str,
    bytes: &'a [u8],
    report: serde_json::Value,
    subject: Option<String>,
    detected_type: Option<String>,
}

enum Converted {
    Outcome(Box<MailOutcome>),
    Failed(&'static str, String),
    /// The antivirus engine gave no answer: nothing is decided, the message waits.
    ScannerUnavailable(String),
}

/// How long a message waits for the antivirus engine before it is tried again.
const SCANNER_RETRY_MS: u64 = 10_000;

impl Pipeline {
    /// Runs one worker until shutdown; finishes the message in hand first.
    pub async fn worker(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let (spool, wake) = (Arc::clone(&self.spool), Arc::clone(&self.wake));
        lease_loop(spool, wake, shutdown, |lease| {
            let this = Arc::clone(&self);
            async move { this.process(lease).await }
        })
        .await;
    }

    /// Processes one item; false when it could not be settled (it stays queued).
    async fn process(self: &Arc<Self>, lease: Lease) -> bool {
        let id = lease.meta().id.clone();
        let data = match lease.data() {
            Ok(d) => Arc::new(d),
            Err(e) => {
                if let Some(suppressed) = SETTLE_ERRORS.allow() {
                    tracing::error!(queue_id = %id, error = %e, suppressed, "spooled message unreadable");
                }
                return false; // dropped lease: back to incoming
            }
        };
        // One snapshot for the whole message: a reload never changes the rules halfway.
        let config = self.config.get();
        let timeout = Duration::from_secs(config.pipeline.timeout_secs);
        let started = std::time::Instant::now();
        // Conversion and settling share one blocking task (one hand-off per message instead
        // of two). The lease waits in a slot: whoever takes it settles — the task when the
        // conversion ends, or the deadline below when it does not — so a message is settled
        // exactly once, and a conversion that finishes late finds the slot empty.
        let slot = Arc::new(std::sync::Mutex::new(Some(lease)));
        let task = {
            let (this, slot, data, qid) = (
                Arc::clone(self),
                Arc::clone(&slot),
                Arc::clone(&data),
                id.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    this.convert(&data, &qid, &config, started + timeout)
                }))
                .unwrap_or_else(|_| {
                    Converted::Failed("internal-error", "the converter panicked".into())
                });
                match take(&slot) {
                    Some(lease) => this.settle(lease, &data, converted, started.elapsed()),
                    None => Ok(()), // the deadline settled it already
                }
            })
        };
        let settled = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("settle task failed: {join}")),
            Err(_) => match take(&slot) {
                Some(lease) => {
                    let this = Arc::clone(self);
                    let converted = Converted::Failed(
                        "timeout",
                        format!("conversion took longer than {timeout:?}"),
                    );
                    tokio::task::spawn_blocking(move || {
                        this.settle(lease, &data, converted, started.elapsed())
                    })
                    .await
                    .unwrap_or_else(|join| Err(format!("settle task failed: {join}")))
                }
                None => Ok(()), // it finished in the instant the deadline passed
            },
        };
        match settled {
            Ok(()) => true,
            Err(e) => {
                if let Some(suppressed) = SETTLE_ERRORS.allow() {
                    tracing::error!(queue_id = %id, error = %e, suppressed, "could not settle; the message stays queued and is retried with back-off");
                }
                false
            }
        }
    }

    /// Where the delivery under `key` went if it was already made: its marker, or (maildir)
    /// the file its name is derived from. A crash or a failed audit write after a delivery
    /// brings the item back; this keeps the second pass from delivering it again.
    fn delivered_before(&self, key: &str) -> Option<String> {
        let maildir = match &self.sink {
            Sink::Maildir(root) => Some(root.join("new").join(maildir_name(key))),
            Sink::Relay { .. } => None,
        };
        let on_disk = maildir.as_ref().is_some_and(|p| p.exists());
        if !(on_disk || self.spool.delivered(key)) {
            return None;
        }
        Some(match maildir {
            Some(p) => p.display().to_string(),
            None => "outgoing (queued before)".into(),
        })
    }

    /// Delivers under `key` unless that was done before; records the delivery's marker.
    /// Returns the destination and whether it was a repeat.
    fn deliver_once(
        &self,
        envelope: crate::envelope::Envelope,
        key: &str,
        message: &[u8],
    ) -> Result<(String, bool), String> {
        if let Some(dest) = self.delivered_before(key) {
            return Ok((dest, true));
        }
        let dest = self.sink.deliver(envelope, key, message)?;
        if let Err(e) = self.spool.mark_delivered(key) {
            // The maildir's own name still prevents a second copy; the relay may repeat.
            tracing::warn!(key, error = %e, "delivery marker not written");
        }
        Ok((dest, false))
    }

    /// Runs the antivirus stage and the mail engine on one message (on a blocking thread).
    /// The engine stops by itself at `deadline` (the same instant the caller stops waiting),
    /// so a message that times out does not keep a thread busy after it has been held.
    fn convert(
        &self,
        raw: &[u8],
        qid: &str,
        config: &ServiceConfig,
        deadline: std::time::Instant,
    ) -> Converted {
        // The message as received is scanned whole first; its parts are scanned again as the
        // registry meets them.
        let whole = match &self.antivirus {
            Some(clamd) => {
                use mukaika_sanitizers::scanner::Scanner;
                match clamd.scan(raw) {
                    Ok(found) => found,
                    Err(e) => return Converted::ScannerUnavailable(e.to_string()),
                }
            }
            None => None,
        };
        let outcome = mail::convert_by(raw, qid, &self.registry, &config.policy, Some(deadline));
        // A detection the registry accounts for (an attachment it blocked for a virus) is
        // handled there: the text and notice still go. One it cannot place — in a body, a
        // part it never hands out — holds the whole message.
        if let Some(signature) = whole {
            let placed = outcome
                .report
                .attachments
                .iter()
                .any(|a| a.report.any_reason(mukaika_sanitizers::scanner::DETECTED));
            if !placed {
                return Converted::Failed("virus", signature);
            }
        }
        let unavailable = outcome
            .report
            .attachments
            .iter()
            .find(|a| {
                a.report
                    .any_reason(mukaika_sanitizers::scanner::UNAVAILABLE)
            })
            .map(|a| format!("attachment {:?}", a.report.input));
        match unavailable {
            Some(which) => {
                Converted::ScannerUnavailable(format!("antivirus gave no answer for {which}"))
            }
            None => Converted::Outcome(Box::new(outcome)),
        }
    }

    /// Makes the outcome durable, audits it, then completes the lease. Any failure before the
    /// completion leaves the item queued (deferred when delivery itself failed).
    fn settle(
        &self,
        lease: Lease,
        original: &[u8],
        converted: Converted,
        elapsed: Duration,
    ) -> Result<(), String> {
        let meta = lease.meta().clone();
        // Every record of this item goes into one durable audit write, after the outcome
        // itself is durable and before the lease completes.
        let mut events: Vec<AuditEvent> = Vec::new();
        let outcome = match converted {
            Converted::Outcome(o) => *o,
            Converted::ScannerUnavailable(why) => {
                let next = crate::clock::now_ms() + SCANNER_RETRY_MS;
                self.audit
                    .append(AuditEvent::Deferred(Deferred {
                        queue_id: meta.id.clone(),
                        reason: format!("antivirus unavailable: {why}"),
                        attempt: meta.attempts + 1,
                        next_attempt: crate::clock::rfc3339_utc(next),
                    }))
                    .map_err(|e| e.to_string())?;
                tracing::warn!(queue_id = %meta.id, reason = %why, "antivirus unavailable; conversion deferred");
                return lease
                    .defer("antivirus unavailable", next)
                    .map_err(|e| e.to_string());
            }
            Converted::Failed(code, detail) => {
                let held = Held {
                    id: &meta.id,
                    origin: &meta.id,
                    name: None,
                    reason: code,
                    detail: &detail,
                    bytes: original,
                    report: serde_json::Value::Null,
                    subject: None,
                    detected_type: Some("message/rfc822".into()),
                };
                let item = self.quarantine(held, &meta.envelope, &mut events)?;
                self.notify(&meta, &[item], &mut events);
                self.audit.append_all(&events).map_err(|e| e.to_string())?;
                tracing::warn!(queue_id = %meta.id, reason = code, "message quarantined whole");
                return lease.complete().map_err(|e| e.to_string());
            }
        };
        let (report, message, held) = outcome.into_parts();
        let report_json = serde_json::to_value(&report).unwrap_or_default();
        let outcome_subject = report.subject.clone();
        let mut held_items: Vec<QuarantineItem> = Vec::new();
        for h in &held {
            let entry = report
                .attachments
                .iter()
                .find(|a| a.quarantine_id.as_deref() == Some(h.quarantine_id.as_str()));
            let reason = entry
                .and_then(|a| a.report.reason.clone())
                .map(|r| (r.code, r.detail))
                .unwrap_or_default();
            let report = entry
                .map(|a| serde_json::to_value(&a.report).unwrap_or_default())
                .unwrap_or_default();
            let held = Held {
                id: &h.quarantine_id,
                origin: &meta.id,
                name: Some(h.name.clone()),
                reason: &reason.0,
                detail: &reason.1,
                bytes: &h.bytes,
                report,
                subject: Some(outcome_subject.clone()),
                detected_type: entry.map(|a| a.report.detected_type.name().to_string()),
            };
            held_items.push(self.quarantine(held, &meta.envelope, &mut events)?);
        }
        for a in &report.attachments {
            events.push(AuditEvent::PartSanitized(PartSanitized {
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
            let held = Held {
                id: &meta.id,
                origin: &meta.id,
                name: None,
                reason: &reason.0,
                detail: &reason.1,
                bytes: original,
                report: report_json.clone(),
                subject: Some(outcome_subject.clone()),
                detected_type: Some("message/rfc822".into()),
            };
            held_items.push(self.quarantine(held, &meta.envelope, &mut events)?);
        }
        events.push(AuditEvent::MessageConverted(MessageConverted {
            queue_id: meta.id.clone(),
            mukaika_id: report.id.clone(),
            message_id: report.message_id.clone(),
            verdict: format!("{:?}", report.verdict).to_ascii_lowercase(),
            input_sha256: report.input_sha256.clone(),
            output_sha256: report.output_sha256.clone(),
            findings: report.findings.iter().map(|f| f.code.clone()).collect(),
            elapsed_ms: Some(elapsed.as_millis() as u64),
        }));
        if let Some(message) = message {
            let delivered = self.deliver_once(meta.envelope.clone(), &meta.id, message.bytes());
            match delivered {
                // The relay audits its own delivery when the LGWAN MTA takes the message.
                Ok((path, repeat)) if matches!(self.sink, Sink::Maildir(_)) => {
                    events.push(AuditEvent::Delivered(Delivered {
                        queue_id: meta.id.clone(),
                        destination: path,
                        rcpt_to: meta.envelope.rcpt_to.clone(),
                        reply: if repeat {
                            "maildir (delivered before an interruption; not repeated)".into()
                        } else {
                            "maildir".into()
                        },
                    }))
                }
                Ok(_) => {}
                Err(e) => {
                    let next =
                        crate::clock::now_ms() + 60_000 * u64::from(meta.attempts + 1).min(60);
                    events.push(AuditEvent::Deferred(Deferred {
                        queue_id: meta.id.clone(),
                        reason: e.clone(),
                        attempt: meta.attempts + 1,
                        next_attempt: crate::clock::rfc3339_utc(next),
                    }));
                    self.audit.append_all(&events).map_err(|e| e.to_string())?;
                    return lease.defer(&e, next).map_err(|e| e.to_string());
                }
            }
        }
        if !held_items.is_empty() {
            self.notify(&meta, &held_items, &mut events);
        }
        self.audit.append_all(&events).map_err(|e| e.to_string())?;
        lease.complete().map_err(|e| e.to_string())
    }

    /// Stores an original in the quarantine (durably) and queues its audit record.
    fn quarantine(
        &self,
        held: Held<'_>,
        envelope: &crate::envelope::Envelope,
        events: &mut Vec<AuditEvent>,
    ) -> Result<QuarantineItem, String> {
        let item = QuarantineItem {
            id: held.id.to_string(),
            source: "mail".into(),
            origin_id: held.origin.to_string(),
            name: held.name,
            reason: held.reason.to_string(),
            detail: held.detail.to_string(),
            sha256: mukaika_sanitizers::report::sha256_hex(held.bytes),
            size: held.bytes.len() as u64,
            at: crate::clock::now_rfc3339(),
            report: held.report,
            mail_from: Some(envelope.mail_from.clone()),
            rcpt_to: envelope.rcpt_to.clone(),
            subject: held.subject,
            detected_type: held.detected_type,
        };
        self.quarantine
            .put(&item, held.bytes)
            .map_err(|e| e.to_string())?;
        events.push(AuditEvent::Quarantined(Quarantined {
            item_id: item.id.clone(),
            source: item.source.clone(),
            origin_id: item.origin_id.clone(),
            reason: item.reason.clone(),
            sha256: item.sha256.clone(),
        }));
        Ok(item)
    }

    /// Tells the recipients what of their message was quarantined (`[notices] recipients`).
    /// A failure is logged, not retried: the item itself is safe in the quarantine, and
    /// retrying the whole message would deliver its converted text twice.
    fn notify(
        &self,
        meta: &crate::store::spool::ItemMeta,
        held: &[QuarantineItem],
        events: &mut Vec<AuditEvent>,
    ) {
        let config = self.config.get();
        let refs: Vec<&QuarantineItem> = held.iter().collect();
        let Some((envelope, bytes)) = crate::pipeline::notice::for_recipients(
            &config.notices,
            &meta.id,
            &crate::clock::jst_display_of(&meta.received_at),
            &refs,
        ) else {
            return;
        };
        let rcpt_to = envelope.rcpt_to.clone();
        match self.deliver_once(envelope, &format!("{}-notice", meta.id), &bytes) {
            Ok((destination, _)) => events.push(AuditEvent::NoticeSent(NoticeSent {
                queue_id: meta.id.clone(),
                items: held.iter().map(|i| i.id.clone()).collect(),
                rcpt_to,
                destination,
            })),
            Err(e) => {
                tracing::error!(queue_id = %meta.id, error = %e, "quarantine notice not delivered")
            }
        }
    }
}
