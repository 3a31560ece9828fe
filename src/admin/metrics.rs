//! Metrics and the service's INFO lines about mail, both from the audit record, and delivery
//! health.
//!
//! Owns: [`Metrics`], an audit [`Observer`]: every durable audit event updates counters
//! (messages received and converted per verdict, files per verdict and detected type,
//! quarantined items per reason, deliveries per outcome), the conversion-time histogram, the
//! SMTP accept-latency histogram (observed directly by intake), and
//! the delivery health clock (how long delivery to the LGWAN side has been failing); and the
//! Prometheus text rendering, with spool depths and free space read at scrape time; and one
//! INFO log line per message accepted, delivered or held (`message accepted` with queue ID,
//! sender, recipient count and size; `message delivered` with the relay's answer;
//! `message held` / `attachment held` with the quarantine ID and reason), wherever in the
//! service it happened.
//! Invariants: a counter moves and a mail line is logged only for an event the audit log
//! holds durably, so metrics, log and audit never disagree; label values are escaped per the
//! text exposition format.
//! Must never: block the audit writer for long (one short mutex per event batch).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::log::Observer;
use crate::audit::AuditEvent;
use crate::store::spool::Spool;

/// Upper bounds of the conversion-time histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A metric name and its label pairs, in a fixed order.
type Series = (&'static str, Vec<(&'static str, String)>);

/// Upper bounds of the SMTP accept-latency buckets (end of DATA to 250), in seconds.
const ACCEPT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// One histogram: per-bucket counts (not cumulative), then +Inf.
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum_seconds: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

struct State {
    /// Series → count.
    counters: BTreeMap<Series, u64>,
    /// Conversion time per message.
    conversion: Histogram,
    /// SMTP accept latency per message.
    accept: Histogram,
    /// When delivery started failing without a success since.
    failing_since: Option<Instant>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            counters: BTreeMap::new(),
            conversion: Histogram::new(&BUCKETS),
            accept: Histogram::new(&ACCEPT_BUCKETS),
            failing_since: None,
        }
    }
}

/// Counters and health, fed by the audit log.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
    /// The review queue, whose sizes are read at scrape time (set once by the service).
    review: std::sync::OnceLock<std::sync::Arc<crate::review::Review>>,
}

impl Metrics {
    /// Reports the review queue's sizes on every scrape from now on.
    pub fn watch_review(&self, review: std::sync::Arc<crate::review::Review>) {
        let _ = self.review.set(review);
    }

    /// Items held and not yet asked about (no request, or the last one withdrawn), and
    /// release requests waiting for an approver — what the review UI's dashboard counts.
    fn review_queue(&self) -> Option<(usize, usize)> {
        use crate::review::RequestState;
        let review = self.review.get()?;
        let items = review.store().list().ok()?;
        let statuses = review.statuses().ok()?;
        let awaiting = items
            .iter()
            .filter(|i| matches!(statuses.get(&i.id), None | Some(RequestState::Cancelled)))
            .count();
        let pending = review.requests(Some(RequestState::Pending)).ok()?.len();
        Some((awaiting, pending))
    }

    /// Records how long one SMTP accept took (spool fsync and audit record, before the 250).
    pub fn observe_accept(&self, elapsed: Duration) {
        if let Ok(mut st) = self.state.lock() {
            st.accept.observe(elapsed.as_secs_f64());
        }
    }
}

/// One metric family's help text and type.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "mukaika_smtp_messages_received_total",
        "counter",
        "Messages accepted over SMTP (250 sent after fsync).",
    ),
    (
        "mukaika_messages_converted_total",
        "counter",
        "Messages converted to text, by verdict.",
    ),
    (
        "mukaika_files_total",
        "counter",
        "Attachments and files judged, by verdict and detected type.",
    ),
    (
        "mukaika_quarantined_total",
        "counter",
        "Originals put in quarantine, by reason.",
    ),
    (
        "mukaika_deliveries_total",
        "counter",
        "Delivery attempts to the LGWAN side, by outcome.",
    ),
    (
        "mukaika_retention_removed_total",
        "counter",
        "Audit files and quarantined items removed by retention.",
    ),
    (
        "mukaika_import_files_total",
        "counter",
        "Files taken from import folders, by department.",
    ),
    (
        "mukaika_import_exports_total",
        "counter",
        "Files written to export folders, by kind (result: the sanitized file; report: its report; recovered: a pass finished after a restart) and verdict.",
    ),
    (
        "mukaika_import_failures_total",
        "counter",
        "Import attempts that failed (the file stays), by department.",
    ),
    (
        "mukaika_ppap_held_total",
        "counter",
        "Password-protected (encrypted) files held (PPAP).",
    ),
    (
        "mukaika_ppap_unlocked_total",
        "counter",
        "Held encrypted files unlocked and delivered sanitized, by way (password-mail, same-mail, web, cli).",
    ),
    (
        "mukaika_ppap_failed_attempts_total",
        "counter",
        "Unlock attempts that did not unlock, by way and outcome.",
    ),
    (
        "mukaika_ppap_expired_total",
        "counter",
        "Held encrypted files nobody unlocked within the match window or the recipients' link validity (each counted once).",
    ),
];

impl Metrics {
    fn add(st: &mut State, name: &'static str, labels: Vec<(&'static str, String)>) {
        *st.counters.entry((name, labels)).or_default() += 1;
    }

    /// Seconds delivery has been failing without a success since (None when healthy).
    pub fn delivery_failing_for(&self) -> Option<Duration> {
        let st = self.state.lock().ok()?;
        st.failing_since.map(|t| t.elapsed())
    }

    /// The Prometheus text exposition of every metric, with the spools' depths and free space.
    pub fn render(&self, spools: &[(&str, &Spool)]) -> String {
        let mut out = String::new();
        let Ok(st) = self.state.lock() else {
            return out;
        };
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            let mut any = false;
            for ((name, labels), value) in &st.counters {
                if name == family {
                    any = true;
                    let _ = writeln!(out, "{name}{} {value}", label_text(labels));
                }
            }
            // Unlabelled counters start at 0; labelled ones appear with their first event.
            let unlabelled = family.ends_with("received_total")
                || family.contains("retention")
                || family.ends_with("ppap_held_total")
                || family.ends_with("ppap_expired_total");
            if !any && unlabelled {
                let _ = writeln!(out, "{family} 0");
            }
        }
        st.conversion.render(
            &mut out,
            "mukaika_conversion_seconds",
            "Time to convert one message to text.",
        );
        st.accept.render(
            &mut out,
            "mukaika_smtp_accept_seconds",
            "Time from the end of DATA to the 250 (spool fsync and audit record).",
        );
        drop(st);

        let g = "mukaika_spool_items";
        let _ = writeln!(
            out,
            "# HELP {g} Items per spool and state.\n# TYPE {g} gauge"
        );
        for (spool, s) in spools {
            let d = s.depths();
            for (state, n) in [
                ("incoming", d.incoming),
                ("active", d.active),
                ("deferred", d.deferred),
                ("hold", d.hold),
                ("corrupt", d.corrupt),
            ] {
                let _ = writeln!(out, "{g}{{spool=\"{spool}\",state=\"{state}\"}} {n}");
            }
        }
        let f = "mukaika_spool_free_bytes";
        let _ = writeln!(
            out,
            "# HELP {f} Free bytes on the spool's file system.\n# TYPE {f} gauge"
        );
        for (spool, s) in spools {
            if let Some(free) = s.free_bytes() {
                let _ = writeln!(out, "{f}{{spool=\"{spool}\"}} {free}");
            }
        }
        if let Some((awaiting, pending)) = self.review_queue() {
            let (a, p) = (
                "mukaika_review_items_awaiting",
                "mukaika_review_requests_pending",
            );
            let _ = writeln!(
                out,
                "# HELP {a} Quarantined items nobody has asked to release yet.\n# TYPE {a} gauge\n{a} {awaiting}\n# HELP {p} Release requests waiting for an approver.\n# TYPE {p} gauge\n{p} {pending}"
            );
        }
        let b = "mukaika_build_info";
        let _ = writeln!(
            out,
            "# HELP {b} The running build (always 1).\n# TYPE {b} gauge\n{b}{} 1",
            label_text(&[("version", env!("CARGO_PKG_VERSION").to_string())])
        );
        let u = "mukaika_delivery_failing_seconds";
        let failing = self.delivery_failing_for().map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP {u} Seconds delivery has been failing with no success since (0 when healthy).\n# TYPE {u} gauge\n{u} {failing}"
        );
        out
    }
}

fn label_text(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The INFO line for a mail event, fields first and the words last.
fn log_line(event: &AuditEvent) {
    match event {
        AuditEvent::MessageReceived(e) => tracing::info!(
            queue_id = %e.queue_id,
            client = %e.client,
            from = %e.mail_from,
            rcpt_count = e.rcpt_to.len(),
            size = e.size,
            "message accepted"
        ),
        AuditEvent::Delivered(e) => tracing::info!(
            queue_id = %e.queue_id,
            destination = %e.destination,
            rcpt_count = e.rcpt_to.len(),
            reply = %e.reply,
            "message delivered"
        ),
        // A whole message is held under its queue ID; an attachment under its own ID.
        AuditEvent::Quarantined(e) if e.source == "mail" && e.item_id == e.origin_id => {
            tracing::info!(
                queue_id = %e.origin_id,
                quarantine_id = %e.item_id,
                reason = %e.reason,
                "message held"
            )
        }
        AuditEvent::Quarantined(e) if e.source == "mail" => tracing::info!(
            queue_id = %e.origin_id,
            quarantine_id = %e.item_id,
            reason = %e.reason,
            "attachment held"
        ),
        AuditEvent::Deferred(e) => tracing::warn!(
            queue_id = %e.queue_id,
            attempt = e.attempt,
            next_attempt = %e.next_attempt,
            reason = %e.reason,
            "delivery deferred"
        ),
        AuditEvent::Held(e) => tracing::warn!(
            queue_id = %e.queue_id,
            reason = %e.reason,
            "delivery given up; message kept in the spool's hold folder"
        ),
        _ => {}
    }
}

impl Observer for Metrics {
    fn recorded(&self, events: &[AuditEvent]) {
        self.count(events);
        // After the counters' lock is released: a slow log writer holds up nobody else.
        events.iter().for_each(log_line);
    }
}

impl Metrics {
    fn count(&self, events: &[AuditEvent]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for event in events {
            match event {
                AuditEvent::MessageReceived(_) => {
                    Self::add(&mut st, "mukaika_smtp_messages_received_total", vec![])
                }
                AuditEvent::MessageConverted(e) => {
                    Self::add(
                        &mut st,
                        "mukaika_messages_converted_total",
                        vec![("verdict", e.verdict.clone())],
                    );
                    if let Some(ms) = e.elapsed_ms {
                        st.conversion.observe(ms as f64 / 1000.0);
                    }
                }
                AuditEvent::PartSanitized(e) => Self::add(
                    &mut st,
                    "mukaika_files_total",
                    vec![
                        (
                            "type",
                            e.detected_type.clone().unwrap_or_else(|| "unknown".into()),
                        ),
                        ("verdict", e.verdict.clone()),
                    ],
                ),
                AuditEvent::Quarantined(e) => {
                    Self::add(
                        &mut st,
                        "mukaika_quarantined_total",
                        vec![("reason", e.reason.clone())],
                    );
                    if e.reason == crate::ppap::ENCRYPTED {
                        Self::add(&mut st, "mukaika_ppap_held_total", vec![]);
                    }
                }
                AuditEvent::UnlockDelivered(e) => Self::add(
                    &mut st,
                    "mukaika_ppap_unlocked_total",
                    vec![("way", e.way.clone())],
                ),
                AuditEvent::UnlockAttempted(e) if e.outcome == "expired" => {
                    Self::add(&mut st, "mukaika_ppap_expired_total", vec![])
                }
                AuditEvent::UnlockAttempted(e) if e.outcome != "unlocked" => Self::add(
                    &mut st,
                    "mukaika_ppap_failed_attempts_total",
                    vec![("way", e.way.clone()), ("outcome", e.outcome.clone())],
                ),
                AuditEvent::Delivered(_) => {
                    Self::add(
                        &mut st,
                        "mukaika_deliveries_total",
                        vec![("outcome", "delivered".into())],
                    );
                    st.failing_since = None;
                }
                AuditEvent::Deferred(_) => {
                    Self::add(
                        &mut st,
                        "mukaika_deliveries_total",
                        vec![("outcome", "deferred".into())],
                    );
                    st.failing_since.get_or_insert_with(Instant::now);
                }
                AuditEvent::Held(_) => {
                    Self::add(
                        &mut st,
                        "mukaika_deliveries_total",
                        vec![("outcome", "held".into())],
                    );
                }
                AuditEvent::FileImported(e) => Self::add(
                    &mut st,
                    "mukaika_import_files_total",
                    vec![("department", e.department.clone())],
                ),
                AuditEvent::FileExported(e) => Self::add(
                    &mut st,
                    "mukaika_import_exports_total",
                    vec![
                        (
                            "kind",
                            // Only a sanitized result carries the hash of what was written;
                            // a ledger finished after a restart names all its files at once.
                            match (&e.sha256, e.verdict.as_str()) {
                                (_, "completed-after-restart") => "recovered",
                                (Some(_), _) => "result",
                                (None, _) => "report",
                            }
                            .into(),
                        ),
                        ("verdict", e.verdict.clone()),
                    ],
                ),
                AuditEvent::ImportFailed(e) => Self::add(
                    &mut st,
                    "mukaika_import_failures_total",
                    vec![("department", e.department.clone())],
                ),
                AuditEvent::RetentionExpired(e) => {
                    for _ in &e.removed {
                        Self::add(&mut st, "mukaika_retention_removed_total", vec![]);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{ImportFailed, Quarantined, UnlockAttempted, UnlockDelivered};

    #[test]
    fn ppap_items_are_counted_held_unlocked_by_way_and_failed() {
        let m = Metrics::default();
        m.recorded(&[
            AuditEvent::Quarantined(Quarantined {
                item_id: "Q-1".into(),
                source: "mail".into(),
                origin_id: "Q".into(),
                reason: "encrypted".into(),
                sha256: String::new(),
            }),
            AuditEvent::UnlockAttempted(UnlockAttempted {
                item_id: "Q-1".into(),
                way: "password-mail".into(),
                by: "Q2".into(),
                candidates: 2,
                outcome: "wrong-password".into(),
                detail: None,
                via: None,
            }),
            AuditEvent::UnlockDelivered(UnlockDelivered {
                item_id: "Q-1".into(),
                way: "cli".into(),
                verdict: "sanitized".into(),
                reason: None,
                unlocked_sha256: String::new(),
                output_sha256: None,
                destination: "maildir".into(),
                rcpt_to: vec![],
            }),
        ]);
        let text = m.render(&[]);
        for line in [
            "mukaika_ppap_held_total 1",
            "mukaika_ppap_unlocked_total{way=\"cli\"} 1",
            "mukaika_ppap_failed_attempts_total{way=\"password-mail\",outcome=\"wrong-password\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn ppap_items_nobody_unlocked_in_time_are_counted_as_expired_not_as_failures() {
        let m = Metrics::default();
        assert!(m.render(&[]).contains("mukaika_ppap_expired_total 0"));
        m.recorded(&[AuditEvent::UnlockAttempted(UnlockAttempted {
            item_id: "Q-1".into(),
            way: "none".into(),
            by: "mukaika".into(),
            candidates: 0,
            outcome: "expired".into(),
            detail: None,
            via: None,
        })]);
        let text = m.render(&[]);
        assert!(text.contains("mukaika_ppap_expired_total 1"), "{text}");
        assert!(!text.contains("outcome=\"expired\""), "{text}");
    }

    #[test]
    fn import_exports_count_results_and_reports_apart_and_the_build_is_shown() {
        use crate::audit::event::FileExported;
        let export = |path: &str, sha: Option<&str>| {
            AuditEvent::FileExported(FileExported {
                item_id: "I-1".into(),
                department: "soumu".into(),
                path: path.into(),
                verdict: "sanitized".into(),
                sha256: sha.map(str::to_string),
            })
        };
        let m = Metrics::default();
        m.recorded(&[
            export("a.docx", Some("00")),
            export("a.docx.report.json", None),
            export("b.pdf", Some("11")),
        ]);
        let text = m.render(&[]);
        for line in [
            "mukaika_import_exports_total{kind=\"result\",verdict=\"sanitized\"} 2",
            "mukaika_import_exports_total{kind=\"report\",verdict=\"sanitized\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let build = format!(
            "mukaika_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn import_failures_are_counted_per_department() {
        let m = Metrics::default();
        m.recorded(&[AuditEvent::ImportFailed(ImportFailed {
            department: "総務課".into(),
            path: "a.txt".into(),
            error: "export folder not writable".into(),
        })]);
        let text = m.render(&[]);
        assert!(
            text.contains("mukaika_import_failures_total{department=\"総務課\"} 1"),
            "{text}"
        );
    }
}
