//! The administrators' notices about new quarantine items: one mail per pass, or a digest every
//! `digest_minutes`, for items held by mail and by the import folder alike.
//!
//! Owns: the watermark `<data>/notice-state` (written through `crate::durable`), so a restart
//! neither repeats nor skips a notice. The notice lists, besides the new items, the PPAP items
//! held and those unlocked since the last one; each pass also lets the PPAP engine mark held
//! encrypted items nobody unlocked in time as expired (audited once, counted by the metrics).
//! Time comes from the review's clock ([`Review::clock`]), so a test decides when a digest is
//! due instead of waiting `digest_minutes`.
//! Must never: announce an item whose record may still be being written (see `SETTLE_MS`).

use crate::review::Review;
use crate::sink::notice;
use crate::sink::Sink;
use crate::store::quarantine::QuarantineItem;

/// Where the administrators' notices have got to: items quarantined at or before this time
/// (RFC 3339) were announced. Kept in `<data>/notice-state`, so a restart neither repeats nor
/// skips a notice.
fn watermark_path(config: &crate::config::ServiceConfig) -> std::path::PathBuf {
    config.data.dir.join("notice-state")
}

/// Items quarantined after the watermark are only announced once they are this old, so an item
/// whose record was still being written when the last pass looked is not skipped.
const SETTLE_MS: u64 = 5_000;

/// One pass of administrators' notices: when due, mails every item quarantined since the last
/// one (mail and import alike) and moves the watermark. Returns how many were announced.
///
/// # Errors
/// The store, the sink or the watermark file failed; the watermark stays, so the next pass
/// sends them.
pub fn admin_pass(review: &Review, sink: &Sink) -> crate::error::Result<usize> {
    use crate::error::Error;
    let config = review.config();
    let notices = &config.notices;
    if let Some(ppap) = review.ppap() {
        if let Err(e) = ppap.mark_expired() {
            tracing::error!(error = %e, "expired PPAP items not marked; tried again");
        }
    }
    let path = watermark_path(&config);
    let now = review.clock().now_ms();
    let upto = crate::clock::rfc3339_utc(now.saturating_sub(SETTLE_MS));
    let since = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().to_string(),
        // First run: start from now rather than announcing the whole history.
        Err(_) => {
            write_watermark(&path, &upto)?;
            return Ok(0);
        }
    };
    // A damaged watermark must not make notices skip items: items are listed by comparing
    // text, and garbage such as "x" sorts after every timestamp. Announce everything still in
    // quarantine once instead (some again, none missed), and say so.
    let since = if crate::clock::parse_rfc3339(&since).is_some() {
        since
    } else {
        tracing::warn!(path = %path.display(), watermark = %since, "notice watermark unreadable; announcing every quarantined item");
        String::new()
    };
    if notices.admin_to.is_empty() {
        return write_watermark(&path, &upto).map(|()| 0);
    }
    if notices.admin_mode == crate::config::NoticeMode::Digest {
        // No readable watermark (see above): due now.
        if let Some(last) = crate::clock::parse_rfc3339(&since) {
            if now.saturating_sub(last) < notices.digest_minutes.max(1) * 60_000 + SETTLE_MS {
                return Ok(0);
            }
        }
    }
    let items = review
        .store()
        .list_since(&since)
        .map_err(|e| Error::io("quarantine", e))?;
    let fresh: Vec<&QuarantineItem> = items
        .iter()
        .filter(|i| i.at.as_str() <= upto.as_str())
        .collect();
    // PPAP items unlocked since the last notice (none without the running service's engine).
    let unlocked = match review.ppap() {
        Some(ppap) => ppap
            .unlocked_between(&since, &upto)
            .map_err(|e| Error::transient(format!("PPAP store: {e}")))?,
        None => Vec::new(),
    };
    if let Some(out) = notice::for_admins(
        notices,
        &format!("A{now}"),
        &fresh,
        &unlocked,
        config.admin.public_url.as_deref(),
    ) {
        sink.deliver(out)?;
    }
    write_watermark(&path, &upto)?;
    Ok(fresh.len())
}

/// Moves the watermark durably: a crash right after a notice went out must not send it again.
fn write_watermark(path: &std::path::Path, value: &str) -> crate::error::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("notice-state");
    crate::durable::write(dir, name, value.as_bytes(), crate::durable::Mode::Replace)
        .map(|_| ())
        .map_err(|e| crate::error::Error::io(format!("notice watermark {}", path.display()), e))
}
