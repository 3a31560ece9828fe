//! Retention: removing audit files and quarantined originals older than the configured periods.
//!
//! Owns: one pass of expiry, run by `mukaika serve` at start and then hourly.
//! Invariants: nothing is removed silently — the audit log writes (and fsyncs) a
//! `retention_expired` record naming what goes *before* it goes, so a crash between the two
//! leaves a record of a removal that the next pass completes, never a removal without a record.
//! The audit chain keeps verifying across expired files (see `AuditLog::expire`).
//! Time comes from the audit log's clock ([`AuditLog::clock`]), so that the files and the items
//! are judged by one "now", and a test decides it without waiting days.
//! In a cluster the quarantine is shared: its expiry runs on one node at a time, under the
//! advisory lock of [`Job::Retention`]; each node still expires its own audit files, and its
//! copies of them in the cluster's database with them.
//! Must never: remove the audit file being written, or an item younger than the period, or an
//! item whose time cannot be read (it is kept and logged: an unknown age is no proof of age).

use crate::audit::event::RetentionExpired;
use crate::audit::{AuditEvent, AuditLog};
use crate::store::postgres::{Job, Pg};
use crate::store::quarantine::QuarantineStore;

/// What one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Audit files removed.
    pub audit_files: Vec<String>,
    /// Quarantine item IDs removed.
    pub quarantine_items: Vec<String>,
}

/// Runs one pass.
///
/// # Errors
/// The audit log or the quarantine store cannot be read or written; nothing unrecorded was
/// removed.
pub fn run(
    audit: &AuditLog,
    quarantine: &dyn QuarantineStore,
    audit_days: u32,
    quarantine_days: u32,
) -> crate::error::Result<Expired> {
    run_clustered(audit, quarantine, audit_days, quarantine_days, None)
}

/// Runs one pass on a node of a cluster sharing `cluster`: this node's audit files, and the
/// shared quarantine's items unless another node is expiring them now (its pass does).
///
/// # Errors
/// As [`run`], or the cluster's lock cannot be asked for (the quarantine is left for the next
/// pass).
pub fn run_clustered(
    audit: &AuditLog,
    quarantine: &dyn QuarantineStore,
    audit_days: u32,
    quarantine_days: u32,
    cluster: Option<&Pg>,
) -> crate::error::Result<Expired> {
    let audit_files = audit.expire(audit_days)?;
    if let Some(pg) = cluster {
        // This node's copies of what it just expired (or expired while the database was
        // away) go too: the cluster keeps no longer than the node.
        match crate::store::audit_copies::forget_expired(pg, audit.node(), audit.dir()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(copies = n, "expired audit copies removed from the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "expired audit copies not removed; tried next pass")
            }
        }
    }
    let quarantine_items = match cluster {
        None => expire_items(audit, quarantine, quarantine_days)?,
        Some(pg) => pg
            .one_at_a_time(Job::Retention, || {
                expire_items(audit, quarantine, quarantine_days)
            })?
            .transpose()?
            .unwrap_or_default(),
    };
    Ok(Expired {
        audit_files,
        quarantine_items,
    })
}

/// Removes the items older than `quarantine_days`, recorded first; returns their IDs.
fn expire_items(
    audit: &AuditLog,
    quarantine: &dyn QuarantineStore,
    quarantine_days: u32,
) -> crate::error::Result<Vec<String>> {
    use crate::error::Error;
    let cutoff = audit
        .clock()
        .now_ms()
        .saturating_sub(u64::from(quarantine_days) * 86_400_000);
    let old: Vec<String> = quarantine
        .list()
        .map_err(|e| Error::io("quarantine", e))?
        .into_iter()
        .filter(|item| match crate::clock::parse_rfc3339(&item.at) {
            Some(at) => at < cutoff,
            None => {
                tracing::warn!(id = %item.id, at = %item.at, "quarantine item time unreadable; kept");
                false
            }
        })
        .map(|item| item.id)
        .collect();
    if !old.is_empty() {
        audit.append(AuditEvent::RetentionExpired(RetentionExpired {
            removed: old.clone(),
            days: quarantine_days,
            last_seq: None,
            last_hash: None,
        }))?;
        for id in &old {
            match quarantine.remove(id) {
                Ok(()) => {}
                // Removed meanwhile (by an administrator, or by another node whose pass
                // overlapped this one when the lock's connection broke): nothing left to do.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("quarantine item {id}"), e)),
            }
        }
        tracing::info!(
            count = old.len(),
            days = quarantine_days,
            "quarantined items expired"
        );
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditConfig;
    use crate::clock::{Clock, TestClock};
    use crate::store::quarantine::{FsQuarantine, QuarantineItem};
    use std::time::Duration;

    fn item(id: &str, at: &str) -> QuarantineItem {
        QuarantineItem {
            id: id.into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: None,
            reason: "policy-quarantine".into(),
            detail: String::new(),
            sha256: String::new(),
            size: 1,
            at: at.into(),
            report: serde_json::Value::Null,
            mail_from: None,
            rcpt_to: Vec::new(),
            subject: None,
            detected_type: None,
        }
    }

    #[test]
    fn expires_an_item_when_the_clock_passes_its_period_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::at(1_796_406_775_843);
        let audit = AuditLog::open(AuditConfig {
            clock: clock.clone(),
            ..AuditConfig::new(dir.path().join("audit"), "gw1")
        })
        .unwrap();
        let store = FsQuarantine::open(dir.path().join("quarantine")).unwrap();
        let put = |it: &QuarantineItem| store.put(it, b"x").unwrap();
        put(&item("q-now", &crate::clock::rfc3339_utc(clock.now_ms())));
        put(&item("q-odd", "not a time"));
        put(&item("q-jst", "2026-12-05T02:52:55.843+09:00"));

        clock.advance(Duration::from_secs(180 * 86_400));
        assert!(run(&audit, &store, 1825, 180)
            .unwrap()
            .quarantine_items
            .is_empty());
        clock.advance(Duration::from_millis(1));
        let mut expired = run(&audit, &store, 1825, 180).unwrap().quarantine_items;
        expired.sort();
        assert_eq!(expired, ["q-jst", "q-now"]);
        let left: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(left, ["q-odd"]);
    }
}
