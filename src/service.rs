//! `mukaika serve`: wiring the spool, audit log, quarantine, pipeline workers and the SMTP
//! listener together, and shutting them down in order.
//!
//! Owns: start-up (open the audit log, record the configuration's hash and the start, recover
//! the spool, bind) and graceful shutdown (stop accepting, let sessions and workers finish the
//! message in hand, record the stop) and reload (SIGHUP or `mukaika reload`: the policy,
//! session limits, client networks, accepted domains and conversion deadline change for the
//! next connection or message; listener, data, delivery, worker count and audit settings need
//! a restart and are kept, with a warning, until then), and telling systemd (`Type=notify`,
//! sd_notify(3)) when the service is ready, that it is alive, and that it is stopping.
//! Invariant: READY=1 is sent only after the SMTP and admin listeners are bound and every
//! task (workers, import watcher, control socket) is spawned — a connection made after it is
//! answered; WATCHDOG=1 comes from a task on the service's own runtime, so a wedged runtime
//! stops it and systemd restarts the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use mukaika_sanitizers::Registry;

use crate::audit::event::{ConfigLoaded, ServiceEvent};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::DeliveryMode;
use crate::config::ServiceConfig;
use crate::error::{Error, Result};
use crate::live::Live;
use crate::pipeline::Pipeline;
use crate::sink::relay::Relay;
use crate::sink::Sink;
use crate::source::smtp::server::{self, Intake};
use crate::store::quarantine::QuarantineStore;
use crate::store::spool::Spool;
use crate::store::{lock_pid_file, open_audit, pid_file, private_data_dir};

/// A running service.
pub struct Running {
    /// The address the SMTP listener is bound to.
    pub smtp_addr: SocketAddr,
    /// The address the admin listener (metrics, health) is bound to.
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    audit: Arc<AuditLog>,
    config: Arc<Live<ServiceConfig>>,
    pid_file: PathBuf,
    /// Pets systemd's watchdog while the service runs (when systemd asked for it).
    watchdog: Option<tokio::task::JoinHandle<()>>,
    /// The audit copier (cluster only): the stop record is copied with it at the end.
    copier: Option<Copier>,
    /// Holds an exclusive lock on the pid file for the life of the service: one writer per
    /// audit chain and spool.
    _pid_lock: std::fs::File,
}

/// The clamd client `[antivirus]` configures, if any.
///
/// # Errors
/// A malformed endpoint.
pub fn clamd(config: &ServiceConfig) -> Result<Option<Arc<crate::antivirus::Clamd>>> {
    config
        .antivirus
        .clamd
        .as_deref()
        .map(|endpoint| {
            Ok(Arc::new(crate::antivirus::Clamd::new(
                endpoint
                    .parse()
                    .map_err(|e| Error::config(format!("antivirus.clamd: {e}")))?,
                std::time::Duration::from_secs(config.antivirus.timeout_secs),
            )))
        })
        .transpose()
}

/// The registry the service (and `import once`) judges with: every sanitizer, SVG fonts from
/// `[fonts]`, and clamd when configured.
pub fn registry(config: &ServiceConfig, clamd: Option<&Arc<crate::antivirus::Clamd>>) -> Registry {
    let mut registry =
        Registry::standard_with_fonts(crate::fonts::source(config.fonts.dirs.clone()));
    if config.pipeline.helper_threads > 0 {
        registry = registry.with_helper_threads(config.pipeline.helper_threads);
    }
    match clamd {
        Some(c) => {
            registry.with_scanner(Arc::clone(c) as Arc<dyn mukaika_sanitizers::scanner::Scanner>)
        }
        None => registry,
    }
}

/// Starts everything. `config_text` is the configuration as read (its SHA-256 is audited).
///
/// # Errors
/// Any directory, the audit log or the listener cannot be opened.
pub async fn start(
    config: ServiceConfig,
    config_source: &str,
    config_text: &str,
) -> Result<Running> {
    let data = config.data.dir.clone();
    // Before anything is opened: a second service on the same data would interleave two
    // writers in one audit chain and one spool.
    private_data_dir(&data)?;
    let pid_path = pid_file(&config);
    let pid_lock = lock_pid_file(&pid_path)?;
    let config = Arc::new(Live::new(config));
    let live = Arc::clone(&config);
    let config = config.get();
    let audit = Arc::new(open_audit(&config)?);
    let metrics = Arc::new(crate::admin::metrics::Metrics::default());
    audit.observe(Arc::clone(&metrics) as Arc<dyn crate::audit::log::Observer>);
    audit
        .append(AuditEvent::ConfigLoaded(ConfigLoaded {
            source: config_source.into(),
            sha256: mukaika_sanitizers::report::sha256_hex(config_text.as_bytes()),
        }))
        .map_err(|e| Error::transient(format!("audit log: {e}")))?;
    let (spool, corrupt) = Spool::open(data.join("spool"), config.data.min_free_bytes)?;
    for id in corrupt {
        tracing::error!(queue_id = %id, "spool item unreadable; moved to corrupt/");
    }
    let clamd = clamd(&config)?;
    let registry = Arc::new(registry(&config, clamd.as_ref()));
    let quarantine: Arc<dyn QuarantineStore> = crate::store::quarantine::open_configured(&config)
        .map_err(|e| Error::io("quarantine store", e))?;
    let listener = tokio::net::TcpListener::bind(config.smtp.listen)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {}", config.smtp.listen), e))?;
    let smtp_addr = listener
        .local_addr()
        .map_err(|e| Error::io("SMTP listener", e))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| {
            Error::io(
                format!("cannot listen on {} (admin)", config.admin.listen),
                e,
            )
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| Error::io("admin listener", e))?;
    let mut spools: Vec<(&'static str, Arc<Spool>)> = vec![("intake", Arc::clone(&spool))];
    let wake = Arc::new(Notify::new());
    let (shutdown, watch_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut outgoing_queue = None;
    let sink = match config.delivery.mode {
        DeliveryMode::Maildir => Sink::Maildir(data.join("maildir")),
        DeliveryMode::Relay => {
            let (outgoing, corrupt) =
                Spool::open(data.join("outgoing"), config.data.min_free_bytes)?;
            // A converted message moves from one spool to the other by a rename, so that it is
            // in exactly one of them at every instant: two file systems cannot give that.
            let device = |dir: &std::path::Path| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(dir)
                    .map(|m| m.dev())
                    .map_err(|e| Error::io(format!("{}", dir.display()), e))
            };
            if device(spool.root())? != device(outgoing.root())? {
                return Err(Error::config(format!(
                    "{} and {} are on different file systems; the relay needs both on one                      (converted messages move between them by rename)",
                    spool.root().display(),
                    outgoing.root().display()
                )));
            }
            spools.push(("outgoing", Arc::clone(&outgoing)));
            for id in corrupt {
                tracing::error!(queue_id = %id, "outgoing item unreadable; moved to corrupt/");
            }
            let relay_wake = Arc::new(Notify::new());
            outgoing_queue = Some((Arc::clone(&outgoing), Arc::clone(&relay_wake)));
            let relay = Arc::new(Relay::new(
                &config.delivery,
                &config.smtp.hostname,
                outgoing.clone(),
                Arc::clone(&audit),
                Arc::clone(&relay_wake),
            )?);
            for _ in 0..config.delivery.relay_connections {
                tasks.spawn(Arc::clone(&relay).worker(watch_rx.clone()));
            }
            Sink::Relay {
                outgoing,
                wake: relay_wake,
            }
        }
    };
    let review = Arc::new(
        crate::review::Review::open(
            Arc::clone(&live),
            Arc::clone(&quarantine),
            Arc::clone(&audit),
            sink.clone(),
        )
        .map_err(|e| Error::transient(format!("review database: {e}")))?,
    );
    let ppap = Arc::new(
        crate::ppap::Ppap::open(
            Arc::clone(&live),
            Arc::clone(&quarantine),
            Arc::clone(&audit),
            sink.clone(),
            Some(Arc::clone(&spool)),
            Arc::clone(&registry),
        )
        .map_err(|e| Error::transient(format!("PPAP state: {e}")))?,
    );
    review.set_ppap(Arc::clone(&ppap));
    metrics.watch_review(Arc::clone(&review));
    let pipeline = Arc::new(Pipeline {
        spool: Arc::clone(&spool),
        audit: Arc::clone(&audit),
        quarantine: Arc::clone(&quarantine),
        sink,
        registry: Arc::clone(&registry),
        antivirus: clamd.clone(),
        config: Arc::clone(&live),
        wake: Arc::clone(&wake),
        ppap: Some(ppap),
    });
    // Workers mostly wait for fsyncs (the conversion itself runs on the blocking pool), so
    // several per core keep the disk busy: with one per core the queue backed up behind
    // intake in the relay benchmark.
    let workers = match config.pipeline.workers {
        0 => {
            8 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
        n => n,
    };
    for _ in 0..workers {
        tasks.spawn(Arc::clone(&pipeline).worker(watch_rx.clone()));
    }
    let tls = match (&config.smtp.tls_cert_file, &config.smtp.tls_key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::tls_acceptor(cert, key)?),
        _ => None,
    };
    let queues = crate::admin::control::Queues {
        intake: (Arc::clone(&spool), Arc::clone(&wake)),
        outgoing: outgoing_queue,
    };
    let intake = Arc::new(Intake {
        config: Arc::clone(&live),
        spool,
        audit: Arc::clone(&audit),
        wake,
        tls,
        antivirus_gate: match config.antivirus.on_unavailable {
            crate::config::OnUnavailable::Tempfail => clamd.clone(),
            crate::config::OnUnavailable::Defer => None,
        },
        metrics: Arc::clone(&metrics),
    });
    tasks.spawn(server::serve(listener, intake, watch_rx.clone()));
    let admin_tls = match (&config.admin.tls_cert_file, &config.admin.tls_key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::tls_acceptor(cert, key)?),
        _ => None,
    };
    let web = Arc::new(crate::admin::web::Web::new(
        Arc::clone(&review),
        spools.clone(),
        data.join("audit"),
        admin_tls.is_some(),
    ));
    tasks.spawn(crate::admin::server::serve(
        admin_listener,
        Arc::new(crate::admin::server::AdminState {
            metrics,
            spools,
            probe_dir: data.join("spool"),
            min_free_bytes: config.data.min_free_bytes,
            delivery_unhealthy: std::time::Duration::from_secs(
                config.admin.delivery_unhealthy_secs,
            ),
            antivirus: clamd.clone(),
            hostnames: config.admin.hostnames.clone(),
            audit: Some(Arc::clone(&audit)),
        }),
        Some(web),
        admin_tls,
        crate::admin::web::ConnLimits {
            total: config.admin.max_connections,
            per_client: config.admin.max_connections_per_client,
            header_timeout: std::time::Duration::from_secs(config.admin.header_timeout_secs),
        },
        watch_rx.clone(),
    ));
    tasks.spawn(crate::admin::control::serve(
        crate::admin::control::socket_path(&config),
        Arc::clone(&review),
        queues,
        watch_rx.clone(),
    )?);
    tasks.spawn(review_task(
        Arc::clone(&review),
        pipeline.sink.clone(),
        watch_rx.clone(),
    ));
    let mut copier = None;
    if config.store.backend == crate::config::StoreBackend::Postgres {
        tasks.spawn(node_task(
            config.store.clone(),
            config.audit.node.clone(),
            watch_rx.clone(),
        ));
        let c = Copier {
            shipper: Arc::new(std::sync::Mutex::new(
                crate::store::audit_copies::Shipper::new(
                    audit.dir(),
                    config.audit.node.clone(),
                    config.store.clone(),
                ),
            )),
            reachable: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        tasks.spawn(audit_copy_task(
            Arc::clone(&audit),
            c.clone(),
            watch_rx.clone(),
        ));
        copier = Some(c);
    }
    if !config.import.pairs.is_empty() {
        let importer = Arc::new(
            crate::source::import::Importer::new(
                config.import.clone(),
                &data,
                Arc::clone(&pipeline.registry),
                Arc::clone(&audit),
                Arc::clone(&quarantine),
            )
            .with_cluster(&config.store, &config.audit.node)?,
        );
        importer.create_folders();
        tasks.spawn(importer.run(Arc::clone(&live), watch_rx.clone()));
    }
    tasks.spawn(retention_task(
        Arc::clone(&audit),
        Arc::clone(&quarantine),
        Arc::clone(&live),
        watch_rx,
    ));
    audit
        .append(AuditEvent::ServiceStarted(ServiceEvent {
            version: env!("CARGO_PKG_VERSION").into(),
            reason: None,
        }))
        .map_err(|e| Error::transient(format!("audit log: {e}")))?;
    let pid_file = pid_path;
    {
        use std::io::{Seek, Write};
        let mut f = &pid_lock;
        f.set_len(0)
            .and_then(|()| f.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| writeln!(f, "{}", std::process::id()))
            .map_err(|e| Error::io(pid_file.display().to_string(), e))?;
    }
    tracing::info!(smtp = %smtp_addr, admin = %admin_addr, workers, data = %data.display(), "mukaika started");
    systemd::notify("READY=1");
    let watchdog = systemd::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                systemd::notify("WATCHDOG=1");
            }
        })
    });
    Ok(Running {
        smtp_addr,
        admin_addr,
        shutdown,
        tasks,
        audit,
        config: live,
        pid_file,
        watchdog,
        copier,
        _pid_lock: pid_lock,
    })
}

/// Reports this node in to the cluster's database at start and every
/// [`crate::store::postgres::NODE_HEARTBEAT_SECS`], until shutdown. A failure is logged and tried again: the node's
/// work does not depend on it.
async fn node_task(
    store: crate::config::StoreSection,
    node: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let pg: Arc<std::sync::Mutex<Option<Arc<crate::store::postgres::Pg>>>> =
        Arc::new(std::sync::Mutex::new(None));
    loop {
        let (pg, store, node) = (Arc::clone(&pg), store.clone(), node.clone());
        let reported = tokio::task::spawn_blocking(move || {
            let mut slot = pg.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(crate::store::postgres::Pg::shared(&store)?);
            }
            match slot.as_ref() {
                Some(pg) => pg.heartbeat(&node, env!("CARGO_PKG_VERSION")),
                None => Ok(()),
            }
        })
        .await;
        match reported {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not report this node to the cluster database; tried again")
            }
            Err(e) => tracing::error!(error = %e, "node report panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(
                crate::store::postgres::NODE_HEARTBEAT_SECS,
            )) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The audit copier a cluster node runs, shared by its task and the final pass at stop.
#[derive(Clone)]
struct Copier {
    shipper: Arc<std::sync::Mutex<crate::store::audit_copies::Shipper>>,
    /// The last pass reached the database.
    reachable: Arc<std::sync::atomic::AtomicBool>,
}

impl Copier {
    /// One pass on a blocking thread: `None` once copying stopped on a conflict (logged then).
    async fn pass(
        &self,
        audit: &Arc<AuditLog>,
    ) -> Option<Result<crate::store::audit_copies::Pass>> {
        let (s, a) = (Arc::clone(&self.shipper), Arc::clone(audit));
        let pass = tokio::task::spawn_blocking(move || {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            if s.conflict().is_some() {
                return None;
            }
            let result = s.pass(a.durable_seq());
            // The shipper has logged a conflict it just met.
            if s.conflict().is_some() {
                return None;
            }
            Some(result)
        })
        .await
        .unwrap_or_else(|e| Some(Err(Error::transient(format!("audit copy panicked: {e}")))));
        self.reachable.store(
            matches!(pass, Some(Ok(_))),
            std::sync::atomic::Ordering::Relaxed,
        );
        pass
    }
}

/// Copies this node's audit records to the cluster's database after each durable append (a
/// moment later, so that a burst goes in one batch) and every
/// [`crate::store::audit_copies::COPY_EVERY_SECS`], until shutdown. While the database is down it
/// warns once and catches up when it is back; a conflicting copy stops it for good (logged as
/// an error by the shipper; `mukaika selfcheck` and `audit verify` report it).
async fn audit_copy_task(
    audit: Arc<AuditLog>,
    copier: Copier,
    mut shutdown: watch::Receiver<bool>,
) {
    let appended = audit.appended();
    let mut failing = false;
    loop {
        match copier.pass(&audit).await {
            None => {}
            Some(Ok(_)) => {
                if failing {
                    tracing::info!("audit records are copied to the cluster database again");
                }
                failing = false;
            }
            Some(Err(e)) => {
                if !failing {
                    if e.is_permanent() {
                        tracing::error!(error = %e, "audit records not copied to the cluster database; tried again");
                    } else {
                        tracing::warn!(error = %e, "audit records not copied to the cluster database; they are copied once it is back");
                    }
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = appended.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(
                crate::store::audit_copies::COPY_EVERY_SECS,
            )) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Delivers approved releases a crash or a failed delivery left behind (at start, then every
/// minute), and tells administrators of new quarantines (every ten seconds in `immediate`
/// mode, every `digest_minutes` in `digest` mode).
async fn review_task(
    review: Arc<crate::review::Review>,
    sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) {
    // Once a minute; in a cluster also at least twice per release lease, so a release a dead
    // node held is taken over soon after its lease runs out.
    let retry_every = match review.config().store.backend {
        crate::config::StoreBackend::Sqlite => 6,
        crate::config::StoreBackend::Postgres => {
            (review.config().store.release_lease_secs / 20).clamp(1, 6)
        }
    };
    let mut ticks: u64 = 0;
    loop {
        let r = Arc::clone(&review);
        let s = sink.clone();
        let retry = ticks.is_multiple_of(retry_every);
        let _ = tokio::task::spawn_blocking(move || {
            if retry {
                if let Err(e) = r.deliver_approved() {
                    tracing::error!(error = %e, "approved releases could not be read");
                }
            }
            if let Err(e) = crate::review::digest::admin_pass(&r, &s) {
                tracing::error!(error = %e, "administrators' quarantine notice not sent; retried");
            }
        })
        .await;
        ticks += 1;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Expires old audit files and quarantined items at start and then hourly, until shutdown.
async fn retention_task(
    audit: Arc<AuditLog>,
    quarantine: Arc<dyn QuarantineStore>,
    config: Arc<Live<ServiceConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (audit_days, quarantine_days) = {
            let c = config.get();
            (c.audit.retention_days, c.quarantine.retention_days)
        };
        let (a, q) = (Arc::clone(&audit), Arc::clone(&quarantine));
        let store = config.get().store.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let cluster = match store.backend {
                crate::config::StoreBackend::Sqlite => None,
                crate::config::StoreBackend::Postgres => {
                    Some(crate::store::postgres::Pg::shared(&store)?)
                }
            };
            crate::review::retention::run_clustered(
                &a,
                q.as_ref(),
                audit_days,
                quarantine_days,
                cluster.as_deref(),
            )
        })
        .await;
        match pass {
            Ok(Ok(expired)) if expired != Default::default() => tracing::info!(
                audit_files = expired.audit_files.len(),
                quarantine_items = expired.quarantine_items.len(),
                "retention pass removed expired records"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention pass failed; nothing unrecorded was removed")
            }
            Err(e) => tracing::error!(error = %e, "retention pass panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Settings read once at start-up; a reload that changes them is applied without them.
const RESTART_ONLY: &[&str] = &[
    "smtp.listen",
    "smtp.max_connections",
    "smtp.memory_budget_bytes",
    "smtp.tls_cert_file",
    "smtp.tls_key_file",
    "data",
    "delivery",
    "pipeline.workers",
    "audit",
    "fonts",
    "admin",
    "import",
    "antivirus",
];

impl Running {
    /// Applies a new configuration (already parsed and validated) to the next connections
    /// and messages, and audits it. Returns the restart-only settings that differ; those keep
    /// their running values.
    ///
    /// # Errors
    /// The audit record cannot be written; nothing is changed then.
    pub fn reload(
        &self,
        mut new: ServiceConfig,
        source: &str,
        text: &str,
    ) -> Result<Vec<&'static str>> {
        let old = self.config.get();
        let as_json = |c: &ServiceConfig| serde_json::to_value(c).unwrap_or_default();
        let (old_json, new_json) = (as_json(&old), as_json(&new));
        let pending: Vec<&'static str> = RESTART_ONLY
            .iter()
            .copied()
            .filter(|key| {
                let pointer = format!("/{}", key.replace('.', "/"));
                old_json.pointer(&pointer) != new_json.pointer(&pointer)
            })
            .collect();
        new.smtp.listen = old.smtp.listen;
        new.smtp.max_connections = old.smtp.max_connections;
        new.smtp.memory_budget_bytes = old.smtp.memory_budget_bytes;
        new.smtp.tls_cert_file.clone_from(&old.smtp.tls_cert_file);
        new.smtp.tls_key_file.clone_from(&old.smtp.tls_key_file);
        new.data = old.data.clone();
        new.delivery = old.delivery.clone();
        new.pipeline.workers = old.pipeline.workers;
        new.audit = old.audit.clone();
        new.fonts = old.fonts.clone();
        new.admin = old.admin.clone();
        new.import = old.import.clone();
        new.antivirus = old.antivirus.clone();
        self.audit
            .append(AuditEvent::ConfigLoaded(ConfigLoaded {
                source: format!("reload:{source}"),
                sha256: mukaika_sanitizers::report::sha256_hex(text.as_bytes()),
            }))
            .map_err(|e| Error::transient(format!("audit log: {e}")))?;
        self.config.replace(new);
        if pending.is_empty() {
            tracing::info!(source, "configuration reloaded");
        } else {
            tracing::warn!(source, needs_restart = ?pending, "configuration reloaded; some settings apply only after a restart");
        }
        Ok(pending)
    }

    /// Stops accepting, lets sessions and workers finish what they hold, records the stop.
    pub async fn stop(mut self, reason: &str) {
        systemd::notify("STOPPING=1");
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = self.audit.append(AuditEvent::ServiceStopped(ServiceEvent {
            version: env!("CARGO_PKG_VERSION").into(),
            reason: Some(reason.into()),
        }));
        // The stop record too, when the database answered lately; never waited on for long
        // (a record left over is copied at the next start).
        if let Some(copier) = self.copier.take() {
            if copier.reachable.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    copier.pass(&self.audit),
                )
                .await;
            }
        }
        tracing::info!(reason, "mukaika stopped");
    }
}

/// systemd's service notification protocol (sd_notify(3)), which is small enough to speak
/// directly: one datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET` (a
/// path, or an abstract name written with a leading `@`).
mod systemd {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::time::Duration;

    /// Sends `state` to systemd. Without `$NOTIFY_SOCKET` (not started by systemd with
    /// `Type=notify`) it does nothing; a failure is logged and never stops the service.
    pub fn notify(state: &str) {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let sent = address(&socket.to_string_lossy())
            .and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
        if let Err(e) = sent {
            tracing::warn!(state, error = %e, "cannot notify systemd");
        }
    }

    /// The socket address `$NOTIFY_SOCKET` names.
    fn address(name: &str) -> std::io::Result<SocketAddr> {
        match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None if name.starts_with('/') => SocketAddr::from_pathname(name),
            None => Err(std::io::Error::other(format!(
                "NOTIFY_SOCKET {name:?} is neither a path nor an abstract name"
            ))),
        }
    }

    /// Half of `$WATCHDOG_USEC` (systemd's advice), when systemd asked this process for
    /// watchdog pings (`$WATCHDOG_PID` unset or ours).
    pub fn watchdog_interval() -> Option<Duration> {
        if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
            if pid.to_string_lossy().parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn notify_socket_names_are_paths_or_abstract_names() {
            use std::os::linux::net::SocketAddrExt;
            let abs = address("@/org/freedesktop/systemd1/notify").unwrap();
            assert_eq!(
                abs.as_abstract_name(),
                Some(&b"/org/freedesktop/systemd1/notify"[..])
            );
            let path = address("/run/systemd/notify").unwrap();
            assert_eq!(
                path.as_pathname(),
                Some(std::path::Path::new("/run/systemd/notify"))
            );
            assert!(address("relative/notify").is_err());
        }
    }
}
