//! The recipients' one-time links to the password page (`[ppap] public_url`), and the PPAP
//! counts the dashboard, the digest and the metrics show.
//!
//! Owns: the `links` and `link_failures` tables of `ppap.db` (a link is bound to one item and
//! one recipient, kept as the SHA-256 of its token with an expiry, a form nonce, when it was
//! used and when it was locked), the per-recipient link notices sent after a mail settled,
//! the answer to a password typed on the page, and the `expired` table (held encrypted items
//! nobody unlocked in time, each audited once as an `unlock_attempted` with outcome
//! `expired`).
//!
//! Invariants:
//! - The token itself is never stored: only its SHA-256. It is 32 random bytes, so guessing
//!   one is hopeless and a lookup by hash leaks nothing useful in timing.
//! - A link unlocks for its own recipient only: the delivery goes to that one address.
//! - A link works until its expiry, until its first success, and for [`ATTEMPTS`] wrong
//!   passwords in its whole life (not per time window: four tries every quarter hour would
//!   otherwise be a thousand guesses over the link's validity); the last of those locks it
//!   for good and is audited (`outcome = "locked"`). Link attempts are serialised, so parallel posts cannot
//!   slip past the count.
//! - The form on the page carries the link's nonce; a post without it is refused before a
//!   password is tried (the page needs no account, so this is its CSRF check).
//!
//! Must never: store, log or audit a token or a password; unlock for a link that is expired,
//! used, locked or unknown; deliver to anyone but the link's recipient.

use std::collections::BTreeMap;

use mukaika_sanitizers::mail::unlocked::UnlockWay;
use mukaika_sanitizers::report::sha256_hex;
use mukaika_sanitizers::Password;

use super::{now_millis, sql, Ppap, UnlockResult, Unlocked};
use crate::audit::event::{UnlockAttempted, Via};
use crate::audit::AuditEvent;
use crate::config::PpapSection;
use crate::store::quarantine::QuarantineItem;

/// Wrong passwords a link takes in its whole life; the last locks it.
pub const ATTEMPTS: u32 = 5;

/// The tables of this module (created with the others when `ppap.db` opens).
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS links (
        token_sha256 TEXT PRIMARY KEY,
        item_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        nonce TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        used_ms INTEGER,
        locked_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS link_failures (
        token_sha256 TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS link_deliveries (
        item_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        at TEXT NOT NULL,
        destination TEXT NOT NULL,
        PRIMARY KEY (item_id, recipient)
    );
    CREATE TABLE IF NOT EXISTS expired (
        item_id TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );";

/// A live link: what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The held item.
    pub item_id: String,
    /// The one recipient it delivers to.
    pub recipient: String,
    /// The form nonce the page must post back.
    pub nonce: String,
    /// When it stops working (ms since the epoch).
    pub expires_ms: u64,
}

/// What a link is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Usable.
    Open(Link),
    /// Past its expiry.
    Expired,
    /// It unlocked its item already.
    Used,
    /// Too many wrong passwords.
    Locked,
    /// No such link (or a malformed token).
    Unknown,
}

/// What a password typed on the page came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAnswer {
    /// Unlocked; the result went to the link's recipient.
    Delivered(UnlockResult, Link),
    /// Wrong password; this many tries are left before the link locks.
    Wrong(u32, Link),
    /// The link is (now) locked.
    Locked,
    /// The link expired.
    Expired,
    /// The link was used, or the item was unlocked another way.
    Used,
    /// No such link.
    Unknown,
    /// The form did not carry the link's nonce.
    Forged,
    /// Not a question of the password (unsupported method, limit, busy, error).
    Failed(String),
}

/// A well-formed token: 64 lowercase hex digits.
fn well_formed(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Compares without leaking where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `i` is a PPAP item (see [`QuarantineItem::is_ppap`]).
pub fn is_ppap_item(i: &QuarantineItem) -> bool {
    i.is_ppap()
}

/// What `i`'s report lists of its encrypted file (see [`QuarantineItem::encrypted_members`]).
pub fn listed_files(i: &QuarantineItem) -> (Vec<(String, u64)>, bool) {
    i.encrypted_members()
}

/// After how long (ms) a held encrypted item nobody unlocked counts as expired: once neither
/// a password mail (the match window) nor a recipient's link (when links are on) can unlock
/// it any more. An operator still can.
pub fn expiry_ms(cfg: &PpapSection) -> u64 {
    let window = cfg.match_window_secs.saturating_mul(1000);
    let link = if cfg.public_url.is_some() {
        cfg.link_valid_hours.saturating_mul(3_600_000)
    } else {
        0
    };
    window.max(link)
}

/// PPAP counts for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Encrypted files in the quarantine that were never unlocked.
    pub held: usize,
    /// Unlocked, by way (`password-mail`, `same-mail`, `web`, `cli`).
    pub unlocked: BTreeMap<String, usize>,
    /// Of `held`, those past [`expiry_ms`].
    pub expired: usize,
}

/// Counts `items` against the unlocked rows at `now_ms`.
pub fn counts(
    items: &[QuarantineItem],
    unlocked: &[Unlocked],
    now_ms: u64,
    cfg: &PpapSection,
) -> Counts {
    let mut c = Counts::default();
    let expiry = expiry_ms(cfg);
    for i in items.iter().filter(|i| is_ppap_item(i)) {
        match unlocked.iter().find(|u| u.item_id == i.id) {
            Some(u) => *c.unlocked.entry(u.way.clone()).or_default() += 1,
            None => {
                c.held += 1;
                let at = crate::clock::parse_rfc3339(&i.at).unwrap_or(now_ms);
                if now_ms.saturating_sub(at) > expiry {
                    c.expired += 1;
                }
            }
        }
    }
    c
}

/// Every unlocked row under `data_dir` (read-only, for pages run beside the service).
///
/// # Errors
/// The table cannot be read.
pub fn unlocked_all(data_dir: &std::path::Path) -> crate::error::Result<Vec<Unlocked>> {
    let Some(db) = super::open_read_only(data_dir)? else {
        return Ok(Vec::new());
    };
    let mut stmt = db
        .prepare(&format!(
            "SELECT {} FROM unlocked ORDER BY at",
            super::UNLOCKED_COLUMNS
        ))
        .map_err(sql)?;
    let rows = stmt.query_map([], super::unlocked_row).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// The recipients who had their own delivery of `item_id` through their link, with when (for
/// the item page; read-only, as [`super::unlocked_state`]).
///
/// # Errors
/// The table cannot be read.
pub fn link_deliveries(
    data_dir: &std::path::Path,
    item_id: &str,
) -> crate::error::Result<Vec<(String, String)>> {
    let Some(db) = super::open_read_only(data_dir)? else {
        return Ok(Vec::new());
    };
    let mut stmt = db
        .prepare("SELECT recipient, at FROM link_deliveries WHERE item_id = ?1 ORDER BY at")
        .map_err(sql)?;
    let rows = stmt
        .query_map([item_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

impl Ppap {
    /// The recipients of `item` who have not had their own delivery through a link yet (all
    /// of them but in that case): what a password mail or an operator delivers to.
    pub(super) fn remaining(&self, item: &QuarantineItem) -> Vec<String> {
        let had: Vec<String> = {
            let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
            let rows = db
                .prepare("SELECT recipient FROM link_deliveries WHERE item_id = ?1")
                .and_then(|mut stmt| {
                    stmt.query_map([&item.id], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                });
            match rows {
                Ok(rows) => rows,
                Err(e) => {
                    // Unreadable: deliver to all rather than to none (a repeat, never a loss).
                    tracing::error!(item = %item.id, error = %e, "link deliveries unreadable");
                    Vec::new()
                }
            }
        };
        item.rcpt_to
            .iter()
            .filter(|r| !had.iter().any(|h| h.eq_ignore_ascii_case(r)))
            .cloned()
            .collect()
    }

    /// Records that `recipient` had their delivery of `item_id` through their link.
    pub(super) fn record_link_delivery(
        &self,
        item_id: &str,
        recipient: &str,
        destination: &str,
    ) -> crate::error::Result<()> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(
            "INSERT OR IGNORE INTO link_deliveries (item_id, recipient, at, destination)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                item_id,
                recipient.to_ascii_lowercase(),
                crate::clock::now_rfc3339(),
                destination
            ],
        )
        .map_err(sql)?;
        Ok(())
    }

    /// Makes a link for `recipient` to unlock `item_id`; returns the token (shown once, in
    /// the recipient's mail; only its hash is kept).
    ///
    /// # Errors
    /// `ppap.db` cannot be written.
    pub fn make_link(&self, item_id: &str, recipient: &str) -> crate::error::Result<String> {
        let token = crate::random::random_hex(32);
        let nonce = crate::random::random_hex(16);
        let now = now_millis();
        let valid = self
            .config
            .get()
            .ppap
            .link_valid_hours
            .saturating_mul(3_600_000);
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(
            "INSERT INTO links (token_sha256, item_id, recipient, nonce, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                sha256_hex(token.as_bytes()),
                item_id,
                recipient,
                nonce,
                now as i64,
                now.saturating_add(valid) as i64
            ],
        )
        .map_err(sql)?;
        Ok(token)
    }

    /// What the link of `token` is now.
    ///
    /// # Errors
    /// `ppap.db` cannot be read.
    pub fn link(&self, token: &str) -> crate::error::Result<LinkState> {
        use rusqlite::OptionalExtension;
        if !well_formed(token) {
            return Ok(LinkState::Unknown);
        }
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let row = db
            .query_row(
                "SELECT item_id, recipient, nonce, expires_ms, used_ms, locked_ms
                 FROM links WHERE token_sha256 = ?1",
                [sha256_hex(token.as_bytes())],
                |r| {
                    Ok((
                        Link {
                            item_id: r.get(0)?,
                            recipient: r.get(1)?,
                            nonce: r.get(2)?,
                            expires_ms: r.get::<_, i64>(3)?.max(0) as u64,
                        },
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(sql)?;
        Ok(match row {
            None => LinkState::Unknown,
            Some((_, Some(_), _)) => LinkState::Used,
            Some((_, _, Some(_))) => LinkState::Locked,
            Some((link, _, _)) if now_millis() >= link.expires_ms => LinkState::Expired,
            Some((link, _, _)) => LinkState::Open(link),
        })
    }

    /// The item a link is bound to (for the page: sender, subject, file names).
    ///
    /// # Errors
    /// The item is gone or unreadable.
    pub fn link_item(&self, link: &Link) -> crate::error::Result<QuarantineItem> {
        self.quarantine
            .get(&link.item_id)
            .map_err(|e| crate::error::Error::io("quarantine", e))
    }

    fn set_link(&self, token: &str, column: &str) -> crate::error::Result<()> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(
            &format!("UPDATE links SET {column} = ?1 WHERE token_sha256 = ?2"),
            rusqlite::params![now_millis() as i64, sha256_hex(token.as_bytes())],
        )
        .map_err(sql)?;
        Ok(())
    }

    /// Records a wrong password; returns how many were typed within the window.
    fn fail_link(&self, token: &str) -> crate::error::Result<u32> {
        let now = now_millis();
        let hash = sha256_hex(token.as_bytes());
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(
            "INSERT INTO link_failures (token_sha256, at_ms) VALUES (?1, ?2)",
            rusqlite::params![hash, now as i64],
        )
        .map_err(sql)?;
        db.query_row(
            "SELECT COUNT(*) FROM link_failures WHERE token_sha256 = ?1",
            rusqlite::params![hash],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.clamp(0, i64::from(u32::MAX)) as u32)
        .map_err(sql)
    }

    /// The recipient typed `password` on the page of `token`, posting `nonce`: unlocks the
    /// item for that recipient alone, or says why not. Every try is audited (by
    /// `recipient:<address>`), never the password.
    ///
    /// # Errors
    /// `ppap.db`, the quarantine or the audit log failed.
    pub fn unlock_by_link(
        &self,
        token: &str,
        nonce: &str,
        password: &Password,
        via: Option<Via>,
    ) -> crate::error::Result<LinkAnswer> {
        // One link attempt at a time: the failure count is read and written without a race.
        let _gate = self.link_gate.lock().unwrap_or_else(|p| p.into_inner());
        let link = match self.link(token)? {
            LinkState::Open(link) => link,
            LinkState::Expired => return Ok(LinkAnswer::Expired),
            LinkState::Used => return Ok(LinkAnswer::Used),
            LinkState::Locked => return Ok(LinkAnswer::Locked),
            LinkState::Unknown => return Ok(LinkAnswer::Unknown),
        };
        if !same(nonce, &link.nonce) {
            return Ok(LinkAnswer::Forged);
        }
        let by = format!("recipient:{}", link.recipient);
        let result = self.unlock_item(
            &link.item_id,
            password,
            UnlockWay::Web,
            &by,
            via.clone(),
            Some(vec![link.recipient.clone()]),
        )?;
        match result.outcome.as_str() {
            "unlocked" => {
                self.set_link(token, "used_ms")?;
                Ok(LinkAnswer::Delivered(result, link))
            }
            "wrong-password" => {
                let failures = self.fail_link(token)?;
                if failures < ATTEMPTS {
                    return Ok(LinkAnswer::Wrong(ATTEMPTS - failures, link));
                }
                self.set_link(token, "locked_ms")?;
                self.audit
                    .append(AuditEvent::UnlockAttempted(UnlockAttempted {
                        item_id: link.item_id.clone(),
                        way: UnlockWay::Web.as_str().into(),
                        by,
                        candidates: 0,
                        outcome: "locked".into(),
                        detail: Some(format!(
                            "{ATTEMPTS} wrong passwords: the recipient's link is locked"
                        )),
                        via,
                    }))?;
                Ok(LinkAnswer::Locked)
            }
            "already-unlocked" => Ok(LinkAnswer::Used),
            other => Ok(LinkAnswer::Failed(other.to_string())),
        }
    }

    /// Sends each recipient of the held encrypted items `held` its own link notice, when
    /// `[ppap] public_url` is set and recipients' notices are on. Failures are logged: the
    /// items stay held and an operator can still unlock them.
    pub(super) fn send_links(&self, held: &[String]) {
        let config = self.config.get();
        let Some(base) = config.ppap.public_url.clone() else {
            return;
        };
        if !config.notices.recipients {
            return;
        }
        let expires = crate::clock::jst_display(
            now_millis().saturating_add(config.ppap.link_valid_hours.saturating_mul(3_600_000)),
        );
        for id in held {
            if !matches!(self.state(id), Ok(None)) {
                continue; // unlocked meanwhile: nothing to link to
            }
            let item = match self.quarantine.get(id) {
                Ok(i) if is_ppap_item(&i) => i,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(item = %id, error = %e, "held item unreadable; no link sent");
                    continue;
                }
            };
            for (n, rcpt) in item.rcpt_to.iter().enumerate() {
                let token = match self.make_link(id, rcpt) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(item = %id, error = %e, "link not made");
                        continue;
                    }
                };
                let url = format!("{}/{token}", base.trim_end_matches('/'));
                let out = crate::sink::notice::ppap_link(
                    &config.notices,
                    &item,
                    rcpt,
                    &url,
                    &expires,
                    &format!("{id}-link-{n}"),
                );
                if let Err(e) = self.deliver_once(out) {
                    tracing::error!(item = %id, error = %e, "link notice not delivered");
                }
            }
        }
    }

    /// Held encrypted items past [`expiry_ms`] that nobody unlocked, each recorded once in
    /// `expired` and audited (`unlock_attempted`, outcome `expired`, no candidates) — which
    /// the metrics count. Runs at most once a minute; returns how many were new.
    ///
    /// # Errors
    /// The quarantine, `ppap.db` or the audit log failed.
    pub fn mark_expired(&self) -> crate::error::Result<usize> {
        let now = now_millis();
        {
            let mut last = self
                .expiry_checked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *last != 0 && now.saturating_sub(*last) < 60_000 {
                return Ok(0);
            }
            *last = now;
        }
        let cfg = self.config.get().ppap.clone();
        let expiry = expiry_ms(&cfg);
        let items = self
            .quarantine
            .list()
            .map_err(|e| crate::error::Error::io("quarantine", e))?;
        let mut events = Vec::new();
        for i in items.iter().filter(|i| is_ppap_item(i)) {
            let Some(at) = crate::clock::parse_rfc3339(&i.at) else {
                continue;
            };
            if now.saturating_sub(at) <= expiry || !matches!(self.state(&i.id), Ok(None)) {
                continue;
            }
            let inserted = {
                let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
                db.execute(
                    "INSERT OR IGNORE INTO expired (item_id, at) VALUES (?1, ?2)",
                    rusqlite::params![i.id, crate::clock::rfc3339_utc(now)],
                )
                .map_err(sql)?
            };
            if inserted == 1 {
                events.push(AuditEvent::UnlockAttempted(UnlockAttempted {
                    item_id: i.id.clone(),
                    way: "none".into(),
                    by: "mukaika".into(),
                    candidates: 0,
                    outcome: "expired".into(),
                    detail: Some(format!(
                        "no password within {} s; it stays held (an operator can still unlock it)",
                        expiry / 1000
                    )),
                    via: None,
                }));
            }
        }
        if !events.is_empty() {
            self.audit.append_all(&events)?;
        }
        Ok(events.len())
    }

    /// Unlocked rows with `since < at <= upto` (for the administrators' digest).
    ///
    /// # Errors
    /// `ppap.db` cannot be read.
    pub fn unlocked_between(&self, since: &str, upto: &str) -> crate::error::Result<Vec<Unlocked>> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = db
            .prepare(
                "SELECT item_id, way, verdict, at, destination FROM unlocked
                 WHERE at > ?1 AND at <= ?2 ORDER BY at",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([since, upto], |r| {
                Ok(Unlocked {
                    item_id: r.get(0)?,
                    way: r.get(1)?,
                    verdict: r.get(2)?,
                    at: r.get(3)?,
                    destination: r.get(4)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, reason: &str, at: &str) -> QuarantineItem {
        QuarantineItem {
            id: id.into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: Some("a.zip".into()),
            reason: reason.into(),
            detail: String::new(),
            sha256: String::new(),
            size: 1,
            at: at.into(),
            report: serde_json::Value::Null,
            mail_from: None,
            rcpt_to: vec![],
            subject: None,
            detected_type: Some("zip".into()),
        }
    }

    #[test]
    fn counts_split_held_unlocked_by_way_and_expired() {
        let cfg = PpapSection::default(); // 1 h window, no links
        let now = crate::clock::parse_rfc3339("2026-12-04T12:00:00.000Z").unwrap();
        let items = vec![
            item("A", "encrypted", "2026-12-04T11:30:00.000Z"),
            item("B", "encrypted", "2026-12-04T09:00:00.000Z"),
            item("C", "encrypted", "2026-12-04T09:00:00.000Z"),
            item("D", "blocked-type", "2026-12-04T09:00:00.000Z"),
        ];
        let unlocked = vec![Unlocked {
            item_id: "C".into(),
            way: "web".into(),
            verdict: "sanitized".into(),
            at: "2026-12-04T09:10:00.000Z".into(),
            destination: "x".into(),
        }];
        let c = counts(&items, &unlocked, now, &cfg);
        assert_eq!(c.held, 2);
        assert_eq!(
            c.expired, 1,
            "B is older than the window and was never unlocked"
        );
        assert_eq!(c.unlocked.get("web"), Some(&1));
        let links = PpapSection {
            public_url: Some("https://g.example/ppap".into()),
            ..cfg
        };
        assert_eq!(
            expiry_ms(&links),
            72 * 3_600_000,
            "links outlive the window"
        );
        assert_eq!(counts(&items, &unlocked, now, &links).expired, 0);
    }

    #[test]
    fn only_well_formed_tokens_are_looked_up() {
        assert!(well_formed(&"ab".repeat(32)));
        assert!(!well_formed(&"AB".repeat(32)));
        assert!(!well_formed("../../etc"));
        assert!(!well_formed(&"ab".repeat(33)));
    }
}
