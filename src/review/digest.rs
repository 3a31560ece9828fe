//! The administrators' notices about new quarantine items: one mail per pass, or a digest every
//! `digest_minutes`, for items held by mail and by the import folder alike.
//!
//! Owns: the watermark — `<data>/notice-state` (written through `crate::durable`) on one node,
//! one row of the shared `cluster_state` in a cluster, moved only by the node holding the
//! advisory lock of [`Job::AdminNotices`] — and in a cluster each item's `announced` flag
//! (times from many clocks cannot be trusted to order commits), so a restart (or a second
//! node) neither repeats nor skips a notice. The notice lists, besides the new items, the PPAP items
//! held and those unlocked since the last one; each pass also lets the PPAP engine mark held
//! encrypted items nobody unlocked in time as expired (audited once, counted by the metrics).
//! Time comes from the review's clock ([`Review::clock`]), so a test decides when a digest is
//! due instead of waiting `digest_minutes`.
//! Must never: announce an item whose record may still be being written (see `SETTLE_MS`).

use crate::error::Result;
use crate::review::Review;
use crate::sink::notice;
use crate::sink::Sink;
use crate::store::postgres::{block_on, Job, Pg};
use crate::store::quarantine::{QuarantineItem, Unlocked};

/// Where the administrators' notices have got to: items quarantined at or before this time
/// (RFC 3339) were announced.
enum Watermark<'a> {
    /// `<data>/notice-state` on one node.
    File(std::path::PathBuf),
    /// The cluster's `cluster_state` row, written under the notices' advisory lock.
    Cluster(&'a Pg, &'a str),
}

/// The last `unlock_delivered` seq announced, per node (a cluster's notices).
type UnlockMarks = Vec<(String, i64)>;

/// The cluster state row holding the watermark.
const CLUSTER_KEY: &str = "admin_notice_watermark";

impl Watermark<'_> {
    /// The items to announce: on one node those quarantined after `since` and settled by
    /// `upto`; in a cluster every item not yet announced, whatever its time says — items are
    /// stamped by their node's clock and committed when their upload ends, so a time
    /// watermark could pass over an item that another node committed late.
    fn fresh(&self, review: &Review, since: &str, upto: &str) -> Result<Vec<QuarantineItem>> {
        use crate::error::Error;
        match self {
            Watermark::File(_) => Ok(review
                .store()
                .list_since(since)
                .map_err(|e| Error::io("quarantine", e))?
                .into_iter()
                .filter(|i| i.at.as_str() <= upto)
                .collect()),
            Watermark::Cluster(pg, _) => {
                let ids: Vec<String> = {
                    let client = pg.conn()?;
                    block_on(client.query(
                        "SELECT id FROM quarantine_items WHERE NOT announced ORDER BY at, id",
                        &[],
                    ))
                    .map_err(|e| {
                        Error::transient("PostgreSQL: list unannounced items").with_source(e)
                    })?
                    .iter()
                    .filter_map(|r| r.try_get(0).ok())
                    .collect()
                };
                let mut items = Vec::with_capacity(ids.len());
                for id in ids {
                    match review.store().get(&id) {
                        Ok(item) => items.push(item),
                        // Removed meanwhile: nothing to announce.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("quarantine", e)),
                    }
                }
                Ok(items)
            }
        }
    }

    /// The PPAP items unlocked since the last notice: on one node from its own `ppap.db`; in a
    /// cluster from every node's audit copies (`unlock_delivered`), after the last seq of
    /// each node already announced — per node, in the order each node copies its records, so
    /// nothing depends on clocks. Returns the marks to record once the notice went out.
    fn unlocked(
        &self,
        review: &Review,
        since: &str,
        upto: &str,
    ) -> Result<(Vec<Unlocked>, UnlockMarks)> {
        use crate::error::Error;
        let Watermark::Cluster(pg, _) = self else {
            return match review.ppap() {
                Some(ppap) => ppap
                    .unlocked_between(since, upto)
                    .map(|u| (u, Vec::new()))
                    .map_err(|e| Error::transient(format!("PPAP store: {e}"))),
                None => Ok((Vec::new(), Vec::new())),
            };
        };
        let client = pg.conn()?;
        let rows = block_on(client.query(
            "SELECT a.node, a.seq, a.ts, a.record FROM audit_records a
             WHERE a.kind = 'unlock_delivered'
               AND a.seq > COALESCE((SELECT value::BIGINT FROM cluster_state
                                     WHERE name = 'admin_notice_unlocks:' || a.node), 0)
             ORDER BY a.ts, a.node, a.seq",
            &[],
        ))
        .map_err(|e| Error::transient("PostgreSQL: read unlocks").with_source(e))?;
        let mut unlocked = Vec::with_capacity(rows.len());
        let mut marks: UnlockMarks = Vec::new();
        for row in &rows {
            let read = |e| Error::transient("PostgreSQL: read unlocks").with_source(e);
            let (node, seq, at, record): (String, i64, String, String) = (
                row.try_get(0).map_err(read)?,
                row.try_get(1).map_err(read)?,
                row.try_get(2).map_err(read)?,
                row.try_get(3).map_err(read)?,
            );
            match marks.iter_mut().find(|(n, _)| *n == node) {
                Some(mark) => mark.1 = mark.1.max(seq),
                None => marks.push((node.clone(), seq)),
            }
            let event = serde_json::from_str::<serde_json::Value>(&record)
                .ok()
                .map(|v| v["event"].clone())
                .unwrap_or_default();
            let text = |k: &str| event[k].as_str().unwrap_or("").to_string();
            unlocked.push(Unlocked {
                item_id: text("item_id"),
                way: text("way"),
                verdict: text("verdict"),
                at,
                destination: text("destination"),
            });
        }
        Ok((unlocked, marks))
    }

    /// At the first pass of a cluster: unlocks already on record count as announced.
    fn start_here(&self) -> Result<()> {
        let Watermark::Cluster(pg, node) = self else {
            return Ok(());
        };
        let client = pg.conn()?;
        block_on(client.execute(
            "INSERT INTO cluster_state (name, value, updated_by)
             SELECT 'admin_notice_unlocks:' || node, max(seq)::TEXT, $1 FROM audit_records
             WHERE kind = 'unlock_delivered' GROUP BY node
             ON CONFLICT (name) DO NOTHING",
            &[node],
        ))
        .map(|_| ())
        .map_err(|e| crate::error::Error::transient("PostgreSQL: mark unlocks").with_source(e))
    }

    /// Records that `ids` were announced (in a cluster; on one node the time watermark says
    /// it), or with `None` every item not yet announced (nobody to tell).
    fn announced(&self, ids: Option<&[String]>) -> Result<()> {
        let Watermark::Cluster(pg, _) = self else {
            return Ok(());
        };
        let client = pg.conn()?;
        let done = match ids {
            Some(ids) => block_on(client.execute(
                "UPDATE quarantine_items SET announced = true WHERE id = ANY($1)",
                &[&ids],
            )),
            None => block_on(client.execute(
                "UPDATE quarantine_items SET announced = true WHERE NOT announced",
                &[],
            )),
        };
        done.map(|_| ()).map_err(|e| {
            crate::error::Error::transient("PostgreSQL: mark items announced").with_source(e)
        })
    }

    fn read(&self) -> Result<Option<String>> {
        match self {
            Watermark::File(path) => Ok(std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())),
            Watermark::Cluster(pg, _) => pg.state(CLUSTER_KEY),
        }
    }

    /// Moves the watermark durably: a crash right after a notice went out must not send it
    /// again.
    fn write(&self, value: &str) -> Result<()> {
        match self {
            Watermark::File(path) => write_watermark(path, value),
            Watermark::Cluster(pg, node) => pg.set_state(CLUSTER_KEY, value, node),
        }
    }
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
pub fn admin_pass(review: &Review, sink: &Sink) -> Result<usize> {
    let config = review.config();
    if let Some(ppap) = review.ppap() {
        if let Err(e) = ppap.mark_expired() {
            tracing::error!(error = %e, "expired PPAP items not marked; tried again");
        }
    }
    match review.cluster_db() {
        None => pass(
            review,
            sink,
            &Watermark::File(config.data.dir.join("notice-state")),
        ),
        // Another node is announcing now: its pass covers this node's items too (the
        // quarantine is shared).
        Some(pg) => Ok(pg
            .one_at_a_time(Job::AdminNotices, || {
                pass(review, sink, &Watermark::Cluster(pg, &config.audit.node))
            })?
            .transpose()?
            .unwrap_or(0)),
    }
}

fn pass(review: &Review, sink: &Sink, watermark: &Watermark<'_>) -> Result<usize> {
    let config = review.config();
    let notices = &config.notices;
    let now = review.clock().now_ms();
    let upto = crate::clock::rfc3339_utc(now.saturating_sub(SETTLE_MS));
    let Some(since) = watermark.read()? else {
        // First run: start from now rather than announcing the whole history.
        watermark.start_here()?;
        watermark.write(&upto)?;
        return Ok(0);
    };
    // A damaged watermark must not make notices skip items: items are listed by comparing
    // text, and garbage such as "x" sorts after every timestamp. Announce everything still in
    // quarantine once instead (some again, none missed), and say so.
    let since = if crate::clock::parse_rfc3339(&since).is_some() {
        since
    } else {
        tracing::warn!(watermark = %since, "notice watermark unreadable; announcing every quarantined item");
        String::new()
    };
    if notices.admin_to.is_empty() {
        watermark.announced(None)?;
        return watermark.write(&upto).map(|()| 0);
    }
    if notices.admin_mode == crate::config::NoticeMode::Digest {
        // No readable watermark (see above): due now.
        if let Some(last) = crate::clock::parse_rfc3339(&since) {
            if now.saturating_sub(last) < notices.digest_minutes.max(1) * 60_000 + SETTLE_MS {
                return Ok(0);
            }
        }
    }
    let items = watermark.fresh(review, &since, &upto)?;
    let fresh: Vec<&QuarantineItem> = items.iter().collect();
    // PPAP items unlocked since the last notice (none without the running service's engine).
    let (unlocked, unlock_marks) = watermark.unlocked(review, &since, &upto)?;
    if let Some(out) = notice::for_admins(
        notices,
        &format!("A{now}"),
        &fresh,
        &unlocked,
        config.admin.public_url.as_deref(),
    ) {
        sink.deliver(out)?;
    }
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    watermark.announced(Some(&ids))?;
    if let Watermark::Cluster(pg, node) = watermark {
        for (of, seq) in &unlock_marks {
            pg.set_state(
                &format!("admin_notice_unlocks:{of}"),
                &seq.to_string(),
                node,
            )?;
        }
    }
    watermark.write(&upto)?;
    Ok(fresh.len())
}

/// Writes the file watermark through `crate::durable`.
fn write_watermark(path: &std::path::Path, value: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("notice-state");
    crate::durable::write(dir, name, value.as_bytes(), crate::durable::Mode::Replace)
        .map(|_| ())
        .map_err(|e| crate::error::Error::io(format!("notice watermark {}", path.display()), e))
}
