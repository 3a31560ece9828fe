//! Retention: removing audit files and quarantined originals older than the configured periods.
//!
//! Owns: one pass of expiry, run by `mukaika serve` at start and then hourly.
//! Invariants: nothing is removed silently — the audit log writes (and fsyncs) a
//! `retention_expired` record naming what goes *before* it goes, so a crash between the two
//! leaves a record of a removal that the next pass completes, never a removal without a record.
//! The audit chain keeps verifying across expired files (see `AuditLog::expire`).
//! Must never: remove the audit file being written, or an item younger than the period.

use crate::audit::event::RetentionExpired;
use crate::audit::log::{now_rfc3339, parse_ts};
use crate::audit::{AuditEvent, AuditLog};
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
) -> Result<Expired, String> {
    let audit_files = audit.expire(audit_days).map_err(|e| e.to_string())?;
    let cutoff = parse_ts(&now_rfc3339()).saturating_sub(u64::from(quarantine_days) * 86_400_000);
    let old: Vec<String> = quarantine
        .list()
        .map_err(|e| format!("quarantine: {e}"))?
        .into_iter()
        // An unreadable timestamp reads as 0: such an item is kept, never taken for old.
        .filter(|item| (1..cutoff).contains(&parse_ts(&item.at)))
        .map(|item| item.id)
        .collect();
    if !old.is_empty() {
        audit
            .append(AuditEvent::RetentionExpired(RetentionExpired {
                removed: old.clone(),
                days: quarantine_days,
                last_seq: None,
                last_hash: None,
            }))
            .map_err(|e| e.to_string())?;
        for id in &old {
            quarantine
                .remove(id)
                .map_err(|e| format!("quarantine item {id}: {e}"))?;
        }
        tracing::info!(
            count = old.len(),
            days = quarantine_days,
            "quarantined items expired"
        );
    }
    Ok(Expired {
        audit_files,
        quarantine_items: old,
    })
}
