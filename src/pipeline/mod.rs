//! Pipeline workers: the only place where untrusted bytes become something a forwarding sink
//! accepts.
//!
//! Owns: taking leases from the spool, running the antivirus stage and the mail engine on a
//! blocking thread under a deadline with panics caught, and handing what came of it to
//! [`settle`]: `settle::decide` says what to hold, deliver, announce and audit (pure), and
//! `settle::apply` does it in order over this module's [`settle::Effects`] (quarantine store,
//! sink with delivery markers, audit log, lease).
//! Invariants: see `settle` for the order that makes a crash at any point leave the item in
//! the spool, processed again and delivered once. A settle that fails (a full disk, an audit
//! write refused) backs the worker off exponentially instead of retrying at once, and its
//! ERROR line is rate-limited. A panic, timeout or error quarantines the original whole and
//! never stalls the queue; only an [`Outgoing`] (a `CleanMessage` or a notice) reaches the sink.

pub mod settle;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use mukaika_sanitizers::mail;
use mukaika_sanitizers::Registry;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::ServiceConfig;
use crate::error::{Error, Result};
use crate::live::Live;
use crate::sink::maildir::maildir_name;
use crate::sink::{Outgoing, Sink};
use crate::store::quarantine::QuarantineStore;
use crate::store::spool::lease_loop;
use crate::store::spool::{Lease, Spool};
use settle::{Converted, Delivery, Handoff};

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
    /// PPAP pairing (`[ppap]`): tries a mail's password candidates before it settles and
    /// delivers what they unlocked after. None: encrypted files stay held.
    pub ppap: Option<Arc<crate::ppap::Ppap>>,
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
        if lease.meta().converted {
            return self.pass_on_staged(lease).await;
        }
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
        let meta = lease.meta().clone();
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
                let (converted, plan) = this.ppap_before(&meta, converted, started + timeout);
                match take(&slot) {
                    Some(lease) => {
                        this.settle(lease, &data, converted, started.elapsed())?;
                        // PPAP deliveries only once the mail's own originals are held.
                        if let (Some(ppap), Some(plan)) = (&this.ppap, plan) {
                            ppap.after_settle(&meta, plan, std::time::Instant::now() + timeout);
                        }
                        Ok(())
                    }
                    None => Ok(()), // the deadline settled it already
                }
            })
        };
        let settled = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Error::permanent(format!("settle task failed: {join}"))),
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
                    .unwrap_or_else(|join| {
                        Err(Error::permanent(format!("settle task failed: {join}")))
                    })
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

    /// An item staged for the relay before an interruption (its audit records are durable):
    /// it only moves on. Should the sink no longer be the relay, it goes to `hold/` for an
    /// operator — it is mukaika's own converted text, but the decision where it goes is theirs.
    async fn pass_on_staged(self: &Arc<Self>, lease: Lease) -> bool {
        let id = lease.meta().id.clone();
        let this = Arc::clone(self);
        let moved = tokio::task::spawn_blocking(move || {
            if this.sink.passes_on() {
                this.sink
                    .pass_on_staged(lease)
                    .map(|_| "passed on to the relay")
            } else {
                lease
                    .hold("converted for the relay, but the sink is no longer the relay")
                    .map(|()| "held: the sink is no longer the relay")
                    .map_err(Error::from)
            }
        })
        .await
        .unwrap_or_else(|join| Err(Error::permanent(format!("task failed: {join}"))));
        match moved {
            Ok(what) => {
                tracing::info!(queue_id = %id, "message staged before an interruption {what}");
                true
            }
            Err(e) => {
                if let Some(suppressed) = SETTLE_ERRORS.allow() {
                    tracing::error!(queue_id = %id, error = %e, suppressed, "could not pass on a staged message; it stays queued");
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

    /// PPAP before settling: a converted mail's password candidates are tried (and what they
    /// unlock is named in its text); a panic there costs the pairing, not the mail.
    fn ppap_before(
        &self,
        meta: &crate::store::spool::ItemMeta,
        converted: Converted,
        deadline: std::time::Instant,
    ) -> (Converted, Option<crate::ppap::Plan>) {
        match (&self.ppap, converted) {
            (Some(ppap), Converted::Outcome(mut outcome)) => {
                let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ppap.before_settle(meta, &mut outcome, deadline)
                }));
                if plan.is_err() {
                    tracing::error!(queue_id = %meta.id, "PPAP pairing panicked; the mail settles as converted");
                }
                (Converted::Outcome(outcome), plan.ok())
            }
            (_, converted) => (converted, None),
        }
    }

    /// Delivers `out` unless a delivery under its key was made before; records the
    /// delivery's marker.
    fn deliver_once(&self, out: Outgoing) -> Result<Delivery> {
        let audited_by_sink = matches!(self.sink, Sink::Relay { .. });
        if let Some(destination) = self.delivered_before(out.key()) {
            return Ok(Delivery {
                destination,
                repeat: true,
                audited_by_sink,
            });
        }
        let key = out.key().to_string();
        let destination = self.sink.deliver(out)?;
        if let Err(e) = self.spool.mark_delivered(&key) {
            // The maildir's own name still prevents a second copy; the relay may repeat.
            tracing::warn!(key, error = %e, "delivery marker not written");
        }
        Ok(Delivery {
            destination,
            repeat: false,
            audited_by_sink,
        })
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

    /// Decides how to settle the item ([`settle::decide`]) and carries it out
    /// ([`settle::apply`]): any failure before the completion leaves the item queued
    /// (deferred when delivery itself failed).
    fn settle(
        &self,
        lease: Lease,
        original: &[u8],
        converted: Converted,
        elapsed: Duration,
    ) -> Result<()> {
        let meta = lease.meta().clone();
        // What `apply` logs (a notice not delivered) names the message.
        let _span = tracing::info_span!("settle", queue_id = %meta.id).entered();
        let now = self.spool.clock().now_ms();
        let config = self.config.get();
        let settlement = settle::decide(
            &meta,
            original,
            converted,
            &config.notices,
            now,
            elapsed.as_millis() as u64,
        );
        let whole = settlement.held.iter().any(|h| h.item.id == meta.id);
        let mut fx = Worker {
            pipeline: self,
            lease: Some(lease),
            in_place: None,
            meta: &meta,
            now,
        };
        settle::apply(settlement, &mut fx)?;
        if whole {
            tracing::warn!(queue_id = %meta.id, "message quarantined whole");
        }
        Ok(())
    }
}

/// The pipeline's side of [`settle::apply`]: the quarantine store, the sink with its delivery
/// markers, the audit log and the spool lease.
struct Worker<'a> {
    pipeline: &'a Pipeline,
    lease: Option<Lease>,
    /// The converted message, when the sink takes it in the intake item's place: it goes at
    /// [`settle::Effects::complete`], after the audit records, by the rename that also
    /// completes the lease.
    in_place: Option<Outgoing>,
    /// The item's metadata (for the delivery records).
    meta: &'a crate::store::spool::ItemMeta,
    /// When settling began (dates a deferral).
    now: u64,
}

impl settle::Effects for Worker<'_> {
    type Held = settle::Hold;
    type Out = Outgoing;

    fn hold(&mut self, hold: &settle::Hold) -> Result<()> {
        self.pipeline
            .quarantine
            .put(&hold.item, &hold.bytes)
            .map_err(|e| Error::io(format!("quarantine {}", hold.item.id), e))
    }

    fn deliver_once(&mut self, out: Outgoing) -> Result<Handoff> {
        // A marker from before an upgrade still counts: `deliver_once` honours it.
        let in_place = self.pipeline.sink.passes_on()
            && out.origin() == crate::sink::Origin::Converted
            && self.pipeline.delivered_before(out.key()).is_none();
        if in_place {
            // Handed over at `complete`, after the records; the relay records the delivery.
            self.in_place = Some(out);
            return Ok(Handoff::Done(Vec::new()));
        }
        Ok(match self.pipeline.deliver_once(out) {
            Ok(d) => Handoff::Done(d.events(self.meta)),
            Err(e) => settle::deferral(self.meta, self.now, &e),
        })
    }

    fn announce(&mut self, notice: Outgoing, held: &[settle::Hold]) -> Result<Vec<AuditEvent>> {
        let rcpt_to = notice.envelope().rcpt_to.clone();
        let d = self.pipeline.deliver_once(notice)?;
        Ok(vec![settle::notice_sent(
            self.meta,
            held,
            rcpt_to,
            d.destination,
        )])
    }

    fn audit(&mut self, events: &[AuditEvent]) -> Result<()> {
        self.pipeline
            .audit
            .append_all(events)
            .map(|_| ())
            .map_err(|e| Error::transient(format!("audit log: {e}")))
    }

    fn defer(&mut self, reason: &str, next: u64) -> Result<()> {
        match self.lease.take() {
            Some(lease) => Ok(lease.defer(reason, next)?),
            None => Err(Error::permanent("the lease was already given back")),
        }
    }

    fn complete(&mut self) -> Result<()> {
        match (self.lease.take(), self.in_place.take()) {
            (Some(lease), Some(out)) => self.pipeline.sink.pass_on(lease, out).map(|_| ()),
            (Some(lease), None) => Ok(lease.complete()?),
            (None, _) => Err(Error::permanent("the lease was already given back")),
        }
    }
}
