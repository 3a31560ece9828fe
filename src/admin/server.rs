//! The admin listener: the quarantine review UI ([`crate::admin::web`]), `/metrics` (Prometheus
//! text) and `/healthz`.
//!
//! Owns: the monitoring endpoints and the composition of the admin listener's routes. Loopback
//! by default; any other address needs `admin.dangerous_expose = true`, since `/metrics` and
//! `/healthz` do not ask who is calling (the review pages do). HTTPS when `admin.tls_*` is set.
//! Invariants: `/healthz` answers 200 only when every check passes — the spool takes a write,
//! the disk has more than `data.min_free_bytes` free, the last audit or spool write did not
//! fail (or a probe write of [`PROBE_BYTES`] in the same folder succeeds now: the disk has
//! room again), and delivery to the LGWAN side has not been failing for longer than
//! `admin.delivery_unhealthy_secs` — and 503 listing what failed otherwise. Both handlers only
//! read the queue and the records; the probes write and remove their own files.
//! Must never: serve quarantined or spooled bytes from the monitoring endpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::admin::metrics::Metrics;
use crate::store::spool::Spool;

/// What the handlers read.
pub struct AdminState {
    /// Counters fed by the audit log.
    pub metrics: Arc<Metrics>,
    /// The intake spool and, in relay mode, the outgoing one.
    pub spools: Vec<(&'static str, Arc<Spool>)>,
    /// Where the write probe goes (the spool root).
    pub probe_dir: PathBuf,
    /// Free-space floor, in bytes.
    pub min_free_bytes: u64,
    /// How long delivery may fail before health fails.
    pub delivery_unhealthy: Duration,
    /// The antivirus engine, when the stage is on (health fails while it does not answer).
    pub antivirus: Option<Arc<crate::antivirus::Clamd>>,
    /// Host names answered besides IP addresses and `localhost` (`admin.hostnames`).
    pub hostnames: Vec<String>,
    /// The audit log, whose failed writes health reports until the disk takes writes again.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

/// The size of the probe write that tells whether a folder whose writes failed takes writes
/// again: larger than an audit batch or a typical message, so a disk with a few free pages
/// left is not mistaken for a recovered one.
pub const PROBE_BYTES: usize = 256 * 1024;

/// Writes, fsyncs and removes a probe file of [`PROBE_BYTES`] in `dir`.
fn probe_write(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(format!(".healthz-probe-{}", std::process::id()));
    let result = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// Serves the monitoring endpoints and, when given, the review UI until `shutdown` turns
/// true; over TLS when `tls` is set.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    web: Option<Arc<crate::admin::web::Web>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: crate::admin::web::ConnLimits,
    shutdown: watch::Receiver<bool>,
) {
    let hostnames = state.hostnames.clone();
    let monitoring = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    let app = match web {
        Some(web) => monitoring.merge(crate::admin::web::router(web)),
        None => monitoring,
    };
    crate::admin::web::serve(
        listener,
        crate::admin::web::secured(app, hostnames),
        tls,
        limits,
        shutdown,
    )
    .await;
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || {
        let spools: Vec<(&str, &Spool)> =
            state.spools.iter().map(|(n, s)| (*n, s.as_ref())).collect();
        let mut text = state.metrics.render(&spools);
        if let Some(clamd) = &state.antivirus {
            let up = u8::from(clamd.ping().is_ok());
            text.push_str(&format!(
                "# HELP mukaika_antivirus_up 1 when clamd answers, 0 when it does not (nothing passes then).\n# TYPE mukaika_antivirus_up gauge\nmukaika_antivirus_up {up}\n"
            ));
        }
        text
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Every failing check, in Japanese and English.
pub fn health_problems(state: &AdminState) -> Vec<String> {
    let mut problems = Vec::new();
    let probe = state
        .probe_dir
        .join(format!(".healthz-{}", std::process::id()));
    let writable = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
    if let Err(e) = writable {
        problems.push(format!(
            "スプールに書き込めません / spool not writable: {e}"
        ));
    }
    for (name, spool) in &state.spools {
        match spool.free_bytes() {
            Some(free) if free < state.min_free_bytes => problems.push(format!(
                "ディスクの空きが不足 / disk nearly full: {name} spool has {free} bytes free, floor {}",
                state.min_free_bytes
            )),
            Some(_) => {}
            None => problems.push(format!("空き容量を取得できません / free space unknown: {name} spool")),
        }
    }
    // A failed write stays a problem until the folder takes a probe write again.
    if let Some(audit) = &state.audit {
        if audit.write_failure().is_some() && probe_write(audit.dir()).is_ok() {
            audit.clear_write_failure();
        }
        if let Some(e) = audit.write_failure() {
            problems.push(format!(
                "監査ログに書き込めません / audit log writes failing: {e}"
            ));
        }
    }
    for (name, spool) in &state.spools {
        if spool.write_failure().is_some() && probe_write(spool.root()).is_ok() {
            spool.clear_write_failure();
        }
        if let Some(e) = spool.write_failure() {
            problems.push(format!(
                "スプールへの受付が失敗しています / {name} spool writes failing: {e}"
            ));
        }
    }
    if let Some(clamd) = &state.antivirus {
        if let Err(e) = clamd.ping() {
            problems.push(format!(
                "ウイルス検査 (clamd) が応答しません / antivirus unavailable: {e}"
            ));
        }
    }
    if let Some(failing) = state.metrics.delivery_failing_for() {
        if failing > state.delivery_unhealthy {
            problems.push(format!(
                "LGWAN 側への配送が {} 秒失敗し続けています / delivery failing for {} s",
                failing.as_secs(),
                failing.as_secs()
            ));
        }
    }
    problems
}

async fn healthz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let problems = tokio::task::spawn_blocking(move || health_problems(&state))
        .await
        .unwrap_or_else(|e| vec![format!("health check failed: {e}")]);
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy\n{}\n", problems.join("\n")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Deferred, Delivered};
    use crate::audit::log::Observer;
    use crate::audit::AuditEvent;

    #[test]
    fn failing_delivery_turns_health_red_after_the_grace_period_and_green_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let state = AdminState {
            metrics: Arc::clone(&metrics),
            spools: Vec::new(),
            probe_dir: dir.path().to_path_buf(),
            min_free_bytes: 0,
            delivery_unhealthy: Duration::ZERO,
            antivirus: None,
            hostnames: Vec::new(),
            audit: None,
        };
        assert!(health_problems(&state).is_empty());
        metrics.recorded(&[AuditEvent::Deferred(Deferred {
            queue_id: "Q1".into(),
            reason: "connection refused".into(),
            attempt: 1,
            next_attempt: "2026-01-01T00:00:00.000Z".into(),
        })]);
        std::thread::sleep(Duration::from_millis(5));
        let problems = health_problems(&state);
        assert!(
            problems.iter().any(|p| p.contains("delivery failing")),
            "{problems:?}"
        );
        metrics.recorded(&[AuditEvent::Delivered(Delivered {
            queue_id: "Q1".into(),
            destination: "smtp://lgwan.example.invalid".into(),
            rcpt_to: vec![],
            reply: "250 ok".into(),
        })]);
        assert!(health_problems(&state).is_empty());

        let gone = AdminState {
            probe_dir: dir.path().join("missing"),
            ..state
        };
        assert!(health_problems(&gone)
            .iter()
            .any(|p| p.contains("not writable")));
    }
}
