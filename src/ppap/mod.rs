//! PPAP: password-protected attachments held as `encrypted` are unlocked with the password the
//! sender mails separately (or writes in the same mail), or that an operator gives, then go
//! through the whole registry and out as a new message — never released raw.
//!
//! Owns: pairing password mails with held encrypted items, trying passwords
//! ([`mukaika_sanitizers::unlock`]), the unlocked delivery (`ppap-<item id>`), the
//! unlocked-state table `ppap.db`, and the `unlock_attempted` / `unlock_delivered` audit
//! records.
//!
//! Pairing: an item held with reason `encrypted` is found again through the quarantine store
//! (its record keeps the envelope sender, recipients and time). A mail whose text has password
//! candidates is paired with the items of the same envelope sender that share at least one
//! recipient and were held within `[ppap] match_window_secs` — in either order: the
//! candidates of a password mail that came first wait in memory for a file that comes later.
//!
//! Invariants:
//! - Passwords live in memory only. Pending candidates are [`Password`]s (wiped on drop, print
//!   `***`), kept in this struct alone — never on disk, in the spool, a report, a log line or
//!   the audit log — and dropped once older than the window (checked at every use). A restart
//!   forgets them; the item stays held and an operator can still unlock it.
//! - Unlocked bytes are never a deliverable: they go through the registry (antivirus, block
//!   list, CDR, limits, depth) under a deadline, and only its [`mukaika_sanitizers::CleanFile`]
//!   reaches the message, which [`mukaika_sanitizers::mail::unlocked::unlocked_message`]
//!   writes. A wrong password yields nothing (the unlocker checks CRC/HMAC, not only the
//!   ZipCrypto header byte).
//! - The encrypted original stays in the quarantine under its retention. That it was unlocked
//!   is a row in `ppap.db` (item, way, verdict, when, where it went) rather than a state
//!   derived from the audit log: it is read for every password mail and every item page,
//!   must not depend on audit files that retention removes, and its primary key makes a
//!   second unlock of the same item (an operator while a password mail pairs) a no-op.
//!   A recipient's own link ([`links`]) delivers to that recipient alone, under a delivery
//!   key of its own, recorded in `link_deliveries`; the other ways then deliver only to the
//!   recipients who do not have it yet, and the item is unlocked once everyone has it.
//! - Every attempt is audited with its item, way, outcome and the number of candidates — never
//!   a candidate — before anything it unlocked goes out.
//! - Timing: a mail's candidates are tried before it settles (so its delivered text can say
//!   what they unlocked) on at most half of its remaining time budget; the rest is tried after
//!   it settled. Deliveries only ever happen after the mail settled, i.e. after its own
//!   originals are durably held. A crash in between loses nothing but the pairing: the item
//!   stays held, and the delivery key `ppap-<item id>` keeps a repeat from delivering twice.
//!
//! Must never: write, log or format a password; deliver anything that did not come out of
//! the registry; unlock an item for another sender's password mail.

pub mod links;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mukaika_sanitizers::mail::unlocked::{unlocked_message, UnlockWay, UnlockedSource};
use mukaika_sanitizers::mail::{Disposition, MailOutcome};
use mukaika_sanitizers::report::sha256_hex;
use mukaika_sanitizers::{unlock, Declared, Password, Registry};
use serde::{Deserialize, Serialize};

use crate::audit::event::{UnlockAttempted, UnlockDelivered};
use crate::audit::{AuditEvent, AuditLog};
use crate::clock::{now_ms as now_millis, rfc3339_utc as rfc3339_at};
use crate::config::ServiceConfig;
use crate::envelope::Envelope;
use crate::live::Live;
use crate::sink::maildir::maildir_name;
use crate::sink::{Outgoing, Sink};
use crate::store::quarantine::{QuarantineItem, QuarantineStore};
use crate::store::spool::{ItemMeta, Spool};

/// The reason code of an item PPAP can unlock.
pub const ENCRYPTED: &str = "encrypted";

/// A password given from outside (the CLI through the control socket, a web form): printed as
/// `***`, and turned into a [`Password`] (wiped on drop) as soon as it arrives.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The password, moving the text (no copy is left behind here).
    pub fn into_password(self) -> Password {
        Password::new(self.0)
    }

    /// The text, for checking an account's password against its hash.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Candidates from one mail, waiting for a file from the same sender.
struct Pending {
    sender: String,
    rcpt: Vec<String>,
    at_ms: u64,
    /// The queue ID of the mail they came from (audited as `by`).
    origin: String,
    candidates: Vec<Password>,
}

/// An unlocked item's message, ready to go out.
struct Ready {
    item: QuarantineItem,
    way: UnlockWay,
    unlocked_sha256: String,
    report: mukaika_sanitizers::Report,
    message: mukaika_sanitizers::mail::CleanMessage,
    /// Recipients (the item's, or the one recipient who typed the password).
    rcpt_to: Vec<String>,
    /// The one recipient of a recipient's own link: delivered under a key of its own and
    /// recorded per recipient; the item counts as unlocked once every recipient has it.
    only: Option<String>,
}

/// What a mail's candidates unlocked before it settled, delivered after it did.
#[derive(Default)]
pub struct Plan {
    ready: Vec<Ready>,
    events: Vec<AuditEvent>,
    /// Items the mail's candidates could not be tried on in the half of its time budget the
    /// pairing may use before it settles: tried after it settled, on a budget of their own.
    deferred: Vec<(QuarantineItem, Vec<u8>, UnlockWay)>,
    /// The mail's candidates, kept only while something is deferred.
    candidates: Vec<Password>,
    /// Encrypted attachments this mail held that its own text did not unlock.
    still_held: Vec<String>,
}

/// What an operator's (or recipient's) unlock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockResult {
    /// `unlocked`, `wrong-password`, `limit-exceeded`, `unsupported`, `already-unlocked`,
    /// `timeout`, `retry-later` (no verdict: antivirus unreachable or the deadline passed),
    /// `error`.
    pub outcome: String,
    /// What the registry made of the content (`sanitized`, `blocked`, …) when unlocked.
    pub verdict: Option<String>,
    /// Where the message went.
    pub destination: Option<String>,
}

pub use crate::store::quarantine::Unlocked;

/// The PPAP engine of one gateway.
pub struct Ppap {
    quarantine: Arc<dyn QuarantineStore>,
    audit: Arc<AuditLog>,
    sink: Sink,
    /// The intake spool, whose delivery markers keep a repeat from delivering twice.
    spool: Option<Arc<Spool>>,
    registry: Arc<Registry>,
    config: Arc<Live<ServiceConfig>>,
    db: Mutex<rusqlite::Connection>,
    /// Candidates waiting for a file (memory only; see the module header).
    pending: Mutex<Vec<Pending>>,
    /// (item, password mail) pairs already tried to a final outcome. The mail that held a file
    /// and the password mail settling at the same moment both pair the two (so they never miss
    /// each other); this keeps the second from trying — and recording — the same passwords
    /// again. Pruned with `pending`.
    tried: Mutex<HashSet<(String, String)>>,
    /// Items being unlocked right now, so two paths never work on one at once.
    busy: Mutex<HashSet<String>>,
    /// Serialises recipients' link attempts (see [`links`]).
    link_gate: Mutex<()>,
    /// When [`Ppap::mark_expired`] last looked (ms).
    expiry_checked: Mutex<u64>,
}

fn sql(e: rusqlite::Error) -> crate::error::Error {
    crate::error::Error::transient("ppap database").with_source(e)
}

fn open_db(data_dir: &Path) -> crate::error::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(data_dir.join("ppap.db")).map_err(sql)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS unlocked (
             item_id TEXT PRIMARY KEY,
             way TEXT NOT NULL,
             verdict TEXT NOT NULL,
             at TEXT NOT NULL,
             destination TEXT NOT NULL
         );",
    )
    .map_err(sql)?;
    db.execute_batch(links::SCHEMA).map_err(sql)?;
    Ok(db)
}

/// The unlocked state of `item_id` under `data_dir`, if it was unlocked (for pages and the CLI,
/// which may run beside the service).
///
/// # Errors
/// The table cannot be read.
pub fn unlocked_state(data_dir: &Path, item_id: &str) -> crate::error::Result<Option<Unlocked>> {
    match open_read_only(data_dir)? {
        Some(db) => query(&db, item_id),
        None => Ok(None), // nothing was ever unlocked here
    }
}

/// `ppap.db` under `data_dir` opened read-only (a page or listing run beside the service never
/// writes it), or None when nothing was ever recorded there.
pub(crate) fn open_read_only(
    data_dir: &Path,
) -> crate::error::Result<Option<rusqlite::Connection>> {
    let path = data_dir.join("ppap.db");
    if !path.exists() {
        return Ok(None);
    }
    rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map(Some)
    .map_err(sql)
}

/// The columns [`unlocked_row`] reads, in its order.
pub(crate) const UNLOCKED_COLUMNS: &str = "item_id, way, verdict, at, destination";

/// One row of the `unlocked` table selected with [`UNLOCKED_COLUMNS`].
pub(crate) fn unlocked_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Unlocked> {
    Ok(Unlocked {
        item_id: r.get(0)?,
        way: r.get(1)?,
        verdict: r.get(2)?,
        at: r.get(3)?,
        destination: r.get(4)?,
    })
}

fn query(db: &rusqlite::Connection, item_id: &str) -> crate::error::Result<Option<Unlocked>> {
    use rusqlite::OptionalExtension;
    db.query_row(
        &format!("SELECT {UNLOCKED_COLUMNS} FROM unlocked WHERE item_id = ?1"),
        [item_id],
        unlocked_row,
    )
    .optional()
    .map_err(sql)
}

/// True when the two recipient lists share an address (case-insensitively).
fn overlap(a: &[String], b: &[String]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| x.eq_ignore_ascii_case(y)))
}

/// The name of the unlocked content: the sent name with the extension the unlocker gives
/// (`資料.7z` → `資料.zip`).
fn unlocked_name(sent: Option<&str>, extension: &str) -> String {
    let sent = sent.unwrap_or("unlocked");
    let lower = sent.to_ascii_lowercase();
    if lower.ends_with(&format!(".{extension}")) {
        return sent.to_string();
    }
    let stem = match sent.rfind('.') {
        Some(dot) if dot > 0 => &sent[..dot],
        _ => sent,
    };
    format!("{stem}.{extension}")
}

impl Ppap {
    /// The engine over the service's stores, sink and registry; `ppap.db` is opened under
    /// the data directory.
    ///
    /// # Errors
    /// `ppap.db` cannot be opened.
    pub fn open(
        config: Arc<Live<ServiceConfig>>,
        quarantine: Arc<dyn QuarantineStore>,
        audit: Arc<AuditLog>,
        sink: Sink,
        spool: Option<Arc<Spool>>,
        registry: Arc<Registry>,
    ) -> crate::error::Result<Self> {
        let db = open_db(&config.get().data.dir)?;
        Ok(Self {
            quarantine,
            audit,
            sink,
            spool,
            registry,
            config,
            db: Mutex::new(db),
            pending: Mutex::new(Vec::new()),
            tried: Mutex::new(HashSet::new()),
            busy: Mutex::new(HashSet::new()),
            link_gate: Mutex::new(()),
            expiry_checked: Mutex::new(0),
        })
    }

    /// The unlocked state of an item.
    ///
    /// # Errors
    /// The table cannot be read.
    pub fn state(&self, item_id: &str) -> crate::error::Result<Option<Unlocked>> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        query(&db, item_id)
    }

    fn window_ms(&self) -> u64 {
        self.config
            .get()
            .ppap
            .match_window_secs
            .saturating_mul(1000)
    }

    /// Drops pending candidates older than the window (their passwords are wiped).
    fn prune(&self, now: u64) {
        let window = self.window_ms();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|p| now.saturating_sub(p.at_ms) <= window);
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        tried.retain(|(_, origin)| pending.iter().any(|p| p.origin == *origin));
    }

    /// Whether `origin`'s passwords were already tried on `item` (call holding its claim).
    fn tried_before(&self, item: &str, origin: &str) -> bool {
        let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        tried.contains(&(item.to_string(), origin.to_string()))
    }

    /// Notes that `origin`'s passwords were tried on `item` to a final outcome (not a timeout,
    /// which is tried again after the mail settled).
    fn mark_tried(&self, item: &str, origin: &str, event: &AuditEvent) {
        let final_outcome =
            !matches!(event, AuditEvent::UnlockAttempted(a) if a.outcome == "timeout");
        if final_outcome {
            let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            tried.insert((item.to_string(), origin.to_string()));
        }
    }

    /// How many mails' candidates wait now (for tests and the dashboard; never the values).
    pub fn pending_mails(&self) -> usize {
        self.prune(now_millis());
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Held encrypted items of `sender` with a recipient in `rcpt`, held within the window,
    /// not unlocked yet, and not from the mail `except`.
    fn held_for(&self, sender: &str, rcpt: &[String], except: &str) -> Vec<QuarantineItem> {
        let since = rfc3339_at(now_millis().saturating_sub(self.window_ms()));
        let items = match self.quarantine.list_since(&since) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "quarantine unreadable; password mail not paired");
                return Vec::new();
            }
        };
        items
            .into_iter()
            .filter(|i| {
                i.reason == ENCRYPTED
                    // A whole message held as encrypted (S/MIME, PGP) is no PPAP file.
                    && i.detected_type.as_deref() != Some("message/rfc822")
                    && i.origin_id != except
                    && i.mail_from
                        .as_deref()
                        .is_some_and(|f| f.eq_ignore_ascii_case(sender))
                    && overlap(&i.rcpt_to, rcpt)
                    && matches!(self.state(&i.id), Ok(None))
            })
            .collect()
    }

    /// Tries `candidates` on one item; on success its content goes through the registry and
    /// the unlocked delivery is written. Returns the audit record of the attempt and, when
    /// unlocked, the message to deliver.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        item: &QuarantineItem,
        bytes: &[u8],
        candidates: &[Password],
        way: UnlockWay,
        by: &str,
        rcpt_to: Vec<String>,
        deadline: Instant,
    ) -> (AuditEvent, Option<Ready>) {
        let config = self.config.get();
        let mut outcome = "wrong-password";
        let mut detail = None;
        let mut opened = None;
        for candidate in candidates {
            if Instant::now() > deadline {
                outcome = "timeout";
                detail = Some("time budget exhausted before every candidate was tried".into());
                break;
            }
            match unlock(bytes, candidate, &config.policy.limits) {
                Ok(u) => {
                    opened = Some(u);
                    outcome = "unlocked";
                    break;
                }
                Err(e) if e.is_wrong_password() => {}
                Err(e) => {
                    // Not a question of the password (a limit, an unsupported method): the
                    // other candidates would meet the same.
                    outcome = match e.reason_code() {
                        "limit-exceeded" => "limit-exceeded",
                        "unsupported" => "unsupported",
                        _ => "error",
                    };
                    detail = Some(e.to_string());
                    break;
                }
            }
        }
        let event = |outcome: &str, detail: Option<String>| {
            AuditEvent::UnlockAttempted(UnlockAttempted {
                item_id: item.id.clone(),
                way: way.as_str().into(),
                by: by.to_string(),
                candidates: candidates.len() as u32,
                outcome: outcome.into(),
                detail,
                via: None,
            })
        };
        let Some(opened) = opened else {
            return (event(outcome, detail), None);
        };
        let name = unlocked_name(item.name.as_deref(), opened.extension);
        let declared = Declared {
            name: Some(&name),
            mime: None,
        };
        let result =
            self.registry
                .process_at(&opened.bytes, &declared, &config.policy, 1, deadline);
        // No answer is not a verdict: with the antivirus engine unreachable or the deadline
        // passed, nothing is delivered and the item is not marked unlocked, so the same
        // password works again later (a link does not count it as a failure).
        if result
            .report
            .any_reason(mukaika_sanitizers::scanner::UNAVAILABLE)
            || result.report.any_reason("timeout")
        {
            return (
                event(
                    "retry-later",
                    Some("the antivirus engine or the deadline gave no verdict; nothing was delivered".into()),
                ),
                None,
            );
        }
        let unlocked_sha256 = sha256_hex(&opened.bytes);
        drop(opened);
        let id = format!("ppap-{}", item.id);
        let subject = item.subject.clone().unwrap_or_default();
        let from = item.mail_from.clone().unwrap_or_default();
        let source = UnlockedSource {
            id: &id,
            item_id: &item.id,
            file_name: item.name.as_deref().unwrap_or("(名前なし)"),
            from: &from,
            to: &rcpt_to,
            subject: &subject,
            way,
        };
        let written = unlocked_message(&source, result, &config.policy);
        match written.message {
            Ok(message) => (
                event("unlocked", None),
                Some(Ready {
                    item: item.clone(),
                    way,
                    unlocked_sha256,
                    report: written.report,
                    message,
                    rcpt_to,
                    only: None,
                }),
            ),
            Err(e) => (
                event("error", Some(format!("unlocked, but the message: {e}"))),
                None,
            ),
        }
    }

    /// Delivers `out` unless a delivery under its key was made before (as the pipeline does).
    fn deliver_once(&self, out: Outgoing) -> crate::error::Result<String> {
        let key = out.key().to_string();
        if let Sink::Maildir(root) = &self.sink {
            let path = root.join("new").join(maildir_name(&key));
            if path.exists() {
                return Ok(path.display().to_string());
            }
        }
        if self.spool.as_ref().is_some_and(|s| s.delivered(&key)) {
            return Ok("outgoing (queued before)".into());
        }
        let destination = self.sink.deliver(out)?;
        if let Some(spool) = &self.spool {
            if let Err(e) = spool.mark_delivered(&key) {
                tracing::warn!(key, error = %e, "delivery marker not written");
            }
        }
        Ok(destination)
    }

    /// Delivers one unlocked message, records the item as unlocked, and returns the audit
    /// record of the delivery.
    fn finish(&self, ready: Ready) -> crate::error::Result<(AuditEvent, UnlockResult)> {
        let Ready {
            item,
            way,
            unlocked_sha256,
            report,
            message,
            rcpt_to,
            only,
        } = ready;
        let envelope = Envelope {
            mail_from: item.mail_from.clone().unwrap_or_default(),
            rcpt_to: rcpt_to.clone(),
            ..Envelope::default()
        };
        let key = match &only {
            // One recipient's own delivery: a key per recipient, so the others' links can
            // still deliver theirs.
            Some(r) => format!(
                "ppap-{}-to-{}",
                item.id,
                sha256_hex(r.to_ascii_lowercase().as_bytes())
                    .get(..16)
                    .unwrap_or_default()
            ),
            None => format!("ppap-{}", item.id),
        };
        let destination = self.deliver_once(Outgoing::converted(envelope, &key, message))?;
        let verdict = format!("{:?}", report.verdict).to_ascii_lowercase();
        // The delivery is made: its audit record below is written whatever happens to the
        // bookkeeping (a failure there is logged; the delivery key keeps a retry from sending
        // it twice).
        let bookkeeping = (|| -> crate::error::Result<()> {
            if let Some(r) = &only {
                self.record_link_delivery(&item.id, r, &destination)?;
            }
            // Unlocked for good once every recipient has it (at once, or link by link).
            if only.is_none() || self.remaining(&item).is_empty() {
                let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
                db.execute(
                    "INSERT OR IGNORE INTO unlocked (item_id, way, verdict, at, destination)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        item.id,
                        way.as_str(),
                        verdict,
                        crate::clock::now_rfc3339(),
                        destination
                    ],
                )
                .map_err(sql)?;
            }
            Ok(())
        })();
        if let Err(e) = bookkeeping {
            tracing::error!(item = %item.id, error = %e, "unlocked delivery made; its state in ppap.db was not stored");
        }
        let event = AuditEvent::UnlockDelivered(UnlockDelivered {
            item_id: item.id.clone(),
            way: way.as_str().into(),
            verdict: verdict.clone(),
            reason: report.reason.as_ref().map(|r| r.code.clone()),
            unlocked_sha256,
            output_sha256: report.output_sha256.clone(),
            destination: destination.clone(),
            rcpt_to,
        });
        Ok((
            event,
            UnlockResult {
                outcome: "unlocked".into(),
                verdict: Some(verdict),
                destination: Some(destination),
            },
        ))
    }

    /// Claims an item for this thread; false when another path works on it now.
    fn claim(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
    }

    fn release(&self, id: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Before a converted mail settles: its password candidates (taken out of `outcome`) are
    /// tried on its own held encrypted attachments (same-mail PPAP) and on the sender's held
    /// encrypted items; what they unlock is named in its text. The deliveries wait in the
    /// returned plan for [`Ppap::after_settle`], so nothing goes out before the mail's own
    /// originals are held.
    pub fn before_settle(
        &self,
        meta: &ItemMeta,
        outcome: &mut MailOutcome,
        deadline: Instant,
    ) -> Plan {
        let mut plan = Plan::default();
        let own: Vec<(QuarantineItem, Vec<u8>)> = outcome
            .held
            .iter()
            .filter_map(|h| {
                let entry = outcome.report.attachments.iter().find(|a| {
                    a.disposition == Disposition::Held
                        && a.quarantine_id.as_deref() == Some(h.quarantine_id.as_str())
                })?;
                let encrypted = entry
                    .report
                    .reason
                    .as_ref()
                    .is_some_and(|r| r.code == ENCRYPTED);
                encrypted.then(|| {
                    (
                        QuarantineItem {
                            id: h.quarantine_id.clone(),
                            source: "mail".into(),
                            origin_id: meta.id.clone(),
                            name: Some(h.name.clone()),
                            reason: ENCRYPTED.into(),
                            detail: String::new(),
                            sha256: entry.report.input_sha256.clone(),
                            size: h.bytes.len() as u64,
                            at: String::new(),
                            report: serde_json::Value::Null,
                            mail_from: Some(meta.envelope.mail_from.clone()),
                            rcpt_to: meta.envelope.rcpt_to.clone(),
                            subject: Some(outcome.report.subject.clone()),
                            detected_type: None,
                        },
                        h.bytes.clone(),
                    )
                })
            })
            .collect();
        plan.still_held = own.iter().map(|(i, _)| i.id.clone()).collect();
        if !self.config.get().ppap.enabled {
            return plan;
        }
        let candidates = outcome.take_password_candidates();
        if candidates.is_empty() {
            return plan;
        }
        // Registered before the store is read: a file settling at this very moment on another
        // worker then finds them in its own pass (`pair_waiting`), so the two never miss each
        // other. The claim and the unlocked row keep both from delivering.
        let now = now_millis();
        self.prune(now);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                sender: meta.envelope.mail_from.clone(),
                rcpt: meta.envelope.rcpt_to.clone(),
                at_ms: now,
                origin: meta.id.clone(),
                candidates: candidates.clone(),
            });
        let mut targets: Vec<(QuarantineItem, Vec<u8>, UnlockWay)> = own
            .into_iter()
            .map(|(i, b)| (i, b, UnlockWay::SameMail))
            .collect();
        for item in self.held_for(&meta.envelope.mail_from, &meta.envelope.rcpt_to, &meta.id) {
            match self.quarantine.bytes(&item.id) {
                Ok(bytes) => targets.push((item, bytes, UnlockWay::PasswordMail)),
                Err(e) => tracing::error!(item = %item.id, error = %e, "held item unreadable"),
            }
        }
        // The pairing takes at most half of what is left of the mail's budget before it
        // settles, so a slow unlock never makes the password mail itself time out (and be held
        // whole); what does not fit is tried after it settled.
        let budget = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        for (item, bytes, way) in targets {
            if Instant::now() > budget {
                plan.deferred.push((item, bytes, way));
                continue;
            }
            if !self.claim(&item.id) {
                continue;
            }
            if self.tried_before(&item.id, &meta.id) {
                self.release(&item.id);
                continue;
            }
            let rcpt = self.remaining(&item);
            let (event, ready) =
                self.attempt(&item, &bytes, &candidates, way, &meta.id, rcpt, budget);
            self.mark_tried(&item.id, &meta.id, &event);
            self.release(&item.id);
            let late = matches!(&event, AuditEvent::UnlockAttempted(a) if a.outcome == "timeout")
                || ready
                    .as_ref()
                    .is_some_and(|r| r.report.any_reason("timeout"));
            if late {
                plan.deferred.push((item, bytes, way));
                continue;
            }
            plan.events.push(event);
            if let Some(ready) = ready {
                plan.still_held.retain(|id| *id != item.id);
                let name = item.name.clone().unwrap_or_default();
                outcome.add_note(&format!(
                    "【mukaika】このメールに書かれたパスワードで、保留中のパスワード付きファイル「{name}」（隔離ID: {}）を解除しました。無害化した結果は別のメールでお届けします。",
                    item.id
                ));
                plan.ready.push(ready);
            }
        }
        if !plan.deferred.is_empty() {
            plan.candidates = candidates;
        }
        plan
    }

    /// After the mail settled: delivers what its candidates unlocked, remembers the candidates
    /// for files still to come, and tries candidates that came first on the encrypted files
    /// this mail held. Failures are logged and leave the items held (an operator can still
    /// unlock them); the mail itself is settled either way.
    pub fn after_settle(&self, meta: &ItemMeta, plan: Plan, deadline: Instant) {
        let Plan {
            ready,
            events,
            deferred,
            candidates,
            still_held,
        } = plan;
        // The attempts are on record before anything they unlocked goes out: without the
        // record, nothing goes out (the items stay held; the password can be given again).
        let on_record = self.record(&events);
        let ready = if on_record { ready } else { Vec::new() };
        let mut events = Vec::new();
        for r in ready {
            let id = r.item.id.clone();
            match self.finish(r) {
                Ok((event, _)) => events.push(event),
                Err(e) => {
                    tracing::error!(item = %id, error = %e, "unlocked item not delivered; it stays held")
                }
            }
        }
        for (item, bytes, way) in deferred {
            if !matches!(self.state(&item.id), Ok(None)) || !self.claim(&item.id) {
                continue;
            }
            if self.tried_before(&item.id, &meta.id) {
                self.release(&item.id);
                continue;
            }
            let rcpt = self.remaining(&item);
            let (event, ready) =
                self.attempt(&item, &bytes, &candidates, way, &meta.id, rcpt, deadline);
            self.mark_tried(&item.id, &meta.id, &event);
            let on_record = self.record(std::slice::from_ref(&event));
            if let Some(ready) = ready.filter(|_| on_record) {
                match self.finish(ready) {
                    Ok((event, _)) => events.push(event),
                    Err(e) => {
                        tracing::error!(item = %item.id, error = %e, "unlocked item not delivered; it stays held")
                    }
                }
            }
            self.release(&item.id);
        }
        self.prune(now_millis());
        if self.config.get().ppap.enabled && !still_held.is_empty() {
            self.pair_waiting(meta, &still_held, deadline, &mut events);
        }
        self.record(&events);
        // What is still locked now: each recipient gets a link of their own (when links are on).
        self.send_links(&still_held);
    }

    /// Appends PPAP audit records; a failure is logged (the mail is settled already).
    fn record(&self, events: &[AuditEvent]) -> bool {
        if events.is_empty() {
            return true;
        }
        match self.audit.append_all(events) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "PPAP audit records not written");
                false
            }
        }
    }

    /// Candidates that came before this mail (same sender, a shared recipient, within the
    /// window) tried on the encrypted items it held.
    fn pair_waiting(
        &self,
        meta: &ItemMeta,
        held: &[String],
        deadline: Instant,
        events: &mut Vec<AuditEvent>,
    ) {
        let waiting: Vec<(String, Vec<Password>)> = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending
                .iter()
                .filter(|p| {
                    p.origin != meta.id
                        && p.sender.eq_ignore_ascii_case(&meta.envelope.mail_from)
                        && overlap(&p.rcpt, &meta.envelope.rcpt_to)
                })
                .map(|p| (p.origin.clone(), p.candidates.clone()))
                .collect()
        };
        if waiting.is_empty() {
            return;
        }
        for id in held {
            let (item, bytes) = match (self.quarantine.get(id), self.quarantine.bytes(id)) {
                (Ok(i), Ok(b)) => (i, b),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(item = %id, error = %e, "held item unreadable");
                    continue;
                }
            };
            if !matches!(self.state(id), Ok(None)) || !self.claim(id) {
                continue; // unlocked meanwhile, or being unlocked by another path
            }
            // Newest password mail first: a resent password replaces an older one.
            for (origin, candidates) in waiting.iter().rev() {
                if self.tried_before(id, origin) {
                    continue;
                }
                let rcpt = self.remaining(&item);
                let (event, ready) = self.attempt(
                    &item,
                    &bytes,
                    candidates,
                    UnlockWay::PasswordMail,
                    origin,
                    rcpt,
                    deadline,
                );
                self.mark_tried(id, origin, &event);
                let stop = !matches!(
                    &event,
                    AuditEvent::UnlockAttempted(a) if a.outcome == "wrong-password"
                );
                // The attempt is on record before what it unlocked goes out.
                let on_record = self.record(std::slice::from_ref(&event));
                if let Some(ready) = ready.filter(|_| on_record) {
                    match self.finish(ready) {
                        Ok((event, _)) => events.push(event),
                        Err(e) => {
                            tracing::error!(item = %id, error = %e, "unlocked item not delivered; it stays held")
                        }
                    }
                }
                if stop {
                    break;
                }
            }
            self.release(id);
        }
    }

    /// Unlocks one item with a password an operator (CLI, web) or the recipient (web) gave.
    /// `recipients` narrows delivery (the recipient's own page); by default the item's own
    /// recipients get it. The attempt is audited under `by` whatever its outcome.
    ///
    /// # Errors
    /// The item is unknown or unreadable, or the delivery or audit record failed.
    pub fn unlock_item(
        &self,
        item_id: &str,
        password: &Password,
        way: UnlockWay,
        by: &str,
        via: Option<crate::audit::event::Via>,
        recipients: Option<Vec<String>>,
    ) -> crate::error::Result<UnlockResult> {
        let item = self
            .quarantine
            .get(item_id)
            .map_err(|e| crate::error::Error::io("quarantine", e))?;
        if item.reason != ENCRYPTED {
            return Err(crate::error::Error::permanent(format!(
                "隔離理由が encrypted ではありません / item {item_id} is held for {:?}, not for encryption",
                item.reason
            )));
        }
        let refused = |outcome: &str| -> crate::error::Result<UnlockResult> {
            self.audit
                .append(AuditEvent::UnlockAttempted(UnlockAttempted {
                    item_id: item_id.to_string(),
                    way: way.as_str().into(),
                    by: by.to_string(),
                    candidates: 1,
                    outcome: outcome.into(),
                    detail: None,
                    via: via.clone(),
                }))?;
            Ok(UnlockResult {
                outcome: outcome.into(),
                verdict: None,
                destination: None,
            })
        };
        if self.state(item_id)?.is_some() {
            return refused("already-unlocked");
        }
        // A recipient who has their delivery (through their link) gets no second one.
        let only = match recipients.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        };
        if only.as_deref().is_some_and(|r| {
            !self
                .remaining(&item)
                .iter()
                .any(|x| x.eq_ignore_ascii_case(r))
        }) {
            return refused("already-unlocked");
        }
        if !self.claim(item_id) {
            return refused("busy");
        }
        // Checked again under the claim: another way may have finished between the check above
        // and the claim.
        let finished_meanwhile = self.state(item_id).map(|s| s.is_some()).unwrap_or(true)
            || only.as_deref().is_some_and(|r| {
                !self
                    .remaining(&item)
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(r))
            });
        if finished_meanwhile {
            self.release(item_id);
            return refused("already-unlocked");
        }
        let result = (|| {
            let bytes = self
                .quarantine
                .bytes(item_id)
                .map_err(|e| crate::error::Error::io("quarantine", e))?;
            let timeout = std::time::Duration::from_secs(self.config.get().pipeline.timeout_secs);
            let rcpt = recipients.unwrap_or_else(|| self.remaining(&item));
            let (mut event, ready) = self.attempt(
                &item,
                &bytes,
                std::slice::from_ref(password),
                way,
                by,
                rcpt,
                Instant::now() + timeout,
            );
            if let AuditEvent::UnlockAttempted(a) = &mut event {
                a.via = via.clone();
            }
            let outcome = match &event {
                AuditEvent::UnlockAttempted(a) => a.outcome.clone(),
                _ => String::new(),
            };
            // The attempt is on record before what it unlocked goes out.
            self.audit.append(event)?;
            let Some(mut ready) = ready else {
                return Ok(UnlockResult {
                    outcome,
                    verdict: None,
                    destination: None,
                });
            };
            ready.only = only;
            let (event, done) = self.finish(ready)?;
            self.audit.append(event)?;
            Ok(done)
        })();
        self.release(item_id);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_text_never_prints() {
        let s = SecretText::new("Abc123!".into());
        assert_eq!(format!("{s:?}"), "***");
        assert!(!format!("{:?}", s.into_password()).contains("Abc123"));
    }

    #[test]
    fn the_unlocked_name_takes_the_unlocked_extension() {
        assert_eq!(unlocked_name(Some("見積書.zip"), "zip"), "見積書.zip");
        assert_eq!(unlocked_name(Some("資料.7z"), "zip"), "資料.zip");
        assert_eq!(unlocked_name(Some("a.DOCX"), "docx"), "a.DOCX");
        assert_eq!(unlocked_name(None, "pdf"), "unlocked.pdf");
    }

    #[test]
    fn recipients_overlap_case_insensitively() {
        let a = vec!["Soumu@City.example".to_string()];
        let b = vec!["x@y".to_string(), "soumu@city.example".to_string()];
        assert!(overlap(&a, &b));
        assert!(!overlap(&a, &["x@y".to_string()]));
    }

    fn meta(id: &str) -> ItemMeta {
        ItemMeta {
            id: id.into(),
            envelope: Envelope {
                helo: "mx.example.com".into(),
                mail_from: "tanaka@vendor.example.jp".into(),
                rcpt_to: vec!["soumu@city.example.lg.jp".into()],
                eight_bit: false,
                smtputf8: false,
            },
            client: "192.0.2.1".into(),
            received_at: crate::clock::now_rfc3339(),
            size: 0,
            sha256: String::new(),
            attempts: 0,
            next_attempt_ms: None,
            last_error: None,
            converted: false,
        }
    }

    /// The mail that held a file and the password mail settling at the same moment both pair
    /// the two, so that neither misses the other; the passwords are tried (and recorded) once.
    #[test]
    fn a_password_mail_and_a_file_settling_together_try_the_passwords_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ServiceConfig::default_config();
        c.data.dir = dir.path().join("data");
        c.policy.mail.password_candidates = 5;
        std::fs::create_dir_all(&c.data.dir).unwrap();
        let quarantine =
            crate::store::quarantine::open(c.data.dir.join("quarantine"), c.quarantine.store)
                .unwrap();
        let audit = Arc::new(
            AuditLog::open(crate::audit::AuditConfig::new(
                c.data.dir.join("audit"),
                "test",
            ))
            .unwrap(),
        );
        let registry = Arc::new(Registry::standard());
        let ppap = Ppap::open(
            Arc::new(Live::new(c.clone())),
            Arc::clone(&quarantine),
            Arc::clone(&audit),
            Sink::Maildir(c.data.dir.join("maildir")),
            None,
            Arc::clone(&registry),
        )
        .unwrap();
        let zip = mukaika_fixtures::zip_marked_encrypted();
        let file_mail = meta("Z1");
        quarantine
            .put(
                &QuarantineItem {
                    id: "Z1-1".into(),
                    source: "mail".into(),
                    origin_id: "Z1".into(),
                    name: Some("見積書.zip".into()),
                    reason: ENCRYPTED.into(),
                    detail: String::new(),
                    sha256: sha256_hex(&zip),
                    size: zip.len() as u64,
                    at: crate::clock::now_rfc3339(),
                    report: serde_json::Value::Null,
                    mail_from: Some(file_mail.envelope.mail_from.clone()),
                    rcpt_to: file_mail.envelope.rcpt_to.clone(),
                    subject: Some("見積書".into()),
                    detected_type: Some("zip".into()),
                },
                &zip,
            )
            .unwrap();
        // The password mail settles: it meets the held file in the store and tries it.
        let raw = "From: tanaka@vendor.example.jp\r\nTo: soumu@city.example.lg.jp\r\n\
Subject: password\r\n\r\nパスワード: wrong-pw-2\r\n";
        let password_mail = meta("P1");
        let mut outcome =
            mukaika_sanitizers::mail::convert_by(raw.as_bytes(), "P1", &registry, &c.policy, None);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let plan = ppap.before_settle(&password_mail, &mut outcome, deadline);
        ppap.after_settle(&password_mail, plan, deadline);
        // The file's mail, finishing its own settle, meets the password mail's candidates.
        let mut events = Vec::new();
        ppap.pair_waiting(&file_mail, &["Z1-1".to_string()], deadline, &mut events);
        let attempts: Vec<serde_json::Value> =
            crate::audit::search(&c.data.dir.join("audit"), &Default::default())
                .unwrap()
                .into_iter()
                .map(|r| r.event)
                .filter(|e| e["type"] == "unlock_attempted")
                .collect();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["item_id"], "Z1-1");
    }
}
