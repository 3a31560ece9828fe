//! The SMTP listener: sockets, timeouts, connection limits and the durable-write handshake.
//!
//! Owns: accepting connections (clients outside the configured networks get 554 and are
//! closed; over the per-client limit, 421), driving a [`Session`] per connection under its
//! deadlines, and answering a finished DATA only after the spool's fsync and the audit record
//! are durable (451 4.3.5 or 452 4.3.1 otherwise, and nothing is kept).
//! Invariants:
//! - `command_timeout_secs` bounds each whole command (from the previous reply to the end of
//!   the next line) and `data_timeout_secs` the whole DATA phase, however slowly the bytes
//!   trickle in; a write to a client that does not read is bounded the same way.
//! - Under pressure a client waiting for a command is dropped after
//!   `stress_command_timeout_secs` (Postfix's stress mode). Pressure begins when three quarters
//!   of `max_connections` are in use and ends when fewer than half are, so idle connections are
//!   cleared well below the limit rather than one at a time at its edge.
//! - A full listener keeps room for a new client: it closes (421) one connection that is
//!   waiting for a command, from the address holding the most connections (or one idle past the
//!   stress timeout), before it refuses anybody. Connections in DATA are never evicted.
//! - Finished connection tasks are reaped as they end, so memory per connection is returned.
//!
//! Shutdown (mini-redis's pattern): a watch channel tells every connection; a connection not
//! in the middle of DATA answers 421 and closes; the listener stops accepting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::audit::event::MessageReceived;
use crate::audit::{AuditEvent, AuditLog};
use crate::config::ServiceConfig;
use crate::live::Live;
use crate::source::smtp::budget::MemoryBudget;
use crate::source::smtp::session::{Action, Session, SessionConfig};
use crate::store::spool::Spool;

/// Bytes read from a socket at a time. Small on purpose: every open connection holds one
/// buffer (500 connections × 16 KiB = 8 MiB), and DATA arrives line by line anyway.
const READ_BUFFER: usize = 16 * 1024;

/// How long a full listener waits for an evicted connection to hand over its slot.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// What intake needs.
pub struct Intake {
    /// Service configuration, replaced on reload; each connection keeps the one it met.
    pub config: Arc<Live<ServiceConfig>>,
    /// The spool.
    pub spool: Arc<Spool>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Wakes pipeline workers.
    pub wake: Arc<Notify>,
    /// STARTTLS, when a certificate is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// With `antivirus.on_unavailable = "tempfail"`: clamd must answer before a message is
    /// accepted (451 4.7.1 otherwise; the client keeps the message and retries).
    pub antivirus_gate: Option<Arc<crate::antivirus::Clamd>>,
    /// Where the accept latency goes.
    pub metrics: Arc<crate::admin::metrics::Metrics>,
}

/// A connection before or after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Marks a connection that is not waiting for a command (DATA, storing, TLS handshake).
const BUSY: u64 = u64::MAX;

/// One open connection, as the listener sees it.
struct Tracked {
    /// The client address, for the per-client count.
    ip: IpAddr,
    /// Milliseconds since [`Shared::epoch`] at which the connection began waiting for its
    /// current command, or [`BUSY`]: only a connection waiting for a command may be evicted.
    waiting_since_ms: AtomicU64,
    /// Already chosen for eviction (so two newcomers do not pick the same one).
    evicted: AtomicBool,
    /// Tells the connection to close with 421 to make room.
    evict: Notify,
}

/// Open connections, per client address.
#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<Tracked>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// State the listener and its connections share.
struct Shared {
    registry: Mutex<Registry>,
    /// Connections holding a slot now.
    active: AtomicUsize,
    /// Stress mode (see the module comment), updated as connections come and go.
    stressed: AtomicBool,
    /// The connection limit the slots were sized with (restart-only).
    max_connections: usize,
    /// The zero point of `waiting_since_ms`.
    epoch: Instant,
}

impl Shared {
    fn under_pressure(&self) -> bool {
        self.stressed.load(Ordering::Relaxed)
    }

    /// Counts a connection in (+1) or out (-1) and moves in or out of stress mode.
    fn count(&self, opened: bool) {
        let active = if opened {
            self.active.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.active
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1)
        };
        if active.saturating_mul(4) >= self.max_connections.saturating_mul(3) {
            if !self.stressed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    active,
                    "SMTP listener under pressure; idle clients get the stress timeout"
                );
            }
        } else if active.saturating_mul(2) < self.max_connections
            && self.stressed.swap(false, Ordering::Relaxed)
        {
            tracing::info!(active, "SMTP listener no longer under pressure");
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(BUSY - 1)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks a connection to close so that a client from `newcomer` can be served: one waiting
    /// for a command whose address holds more connections than the newcomer's, or that has
    /// been waiting longer than `stress`; the most crowded address first, then the longest
    /// wait. None when every connection is busy or belongs to a client no busier than this one.
    fn choose_victim(&self, newcomer: IpAddr, stress: Duration) -> Option<Arc<Tracked>> {
        let registry = self.registry();
        let now = self.millis(Instant::now());
        let stress_ms = u64::try_from(stress.as_millis()).unwrap_or(u64::MAX);
        let own = registry.per_ip.get(&newcomer).copied().unwrap_or(0);
        let victim = registry
            .conns
            .values()
            .filter(|t| !t.evicted.load(Ordering::Relaxed))
            .filter_map(|t| {
                let since = t.waiting_since_ms.load(Ordering::Relaxed);
                if since == BUSY {
                    return None;
                }
                let crowd = registry.per_ip.get(&t.ip).copied().unwrap_or(0);
                let waited = now.saturating_sub(since);
                (crowd > own || waited >= stress_ms).then_some(((crowd, waited), t))
            })
            .max_by_key(|(key, _)| *key)
            .map(|(_, t)| Arc::clone(t))?;
        victim.evicted.store(true, Ordering::Relaxed);
        Some(victim)
    }
}

/// Accepts connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    intake: Arc<Intake>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The connection limit and the memory budget are sized once; changing them needs a restart.
    let first = intake.config.get();
    let max_connections = first.smtp.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let memory = MemoryBudget::new(first.smtp.memory_budget_bytes);
    let shared = Arc::new(Shared {
        registry: Mutex::new(Registry::default()),
        active: AtomicUsize::new(0),
        stressed: AtomicBool::new(false),
        max_connections,
        epoch: Instant::now(),
    });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, peer)) = accepted else { continue };
                let ip = peer.ip();
                let config = intake.config.get();
                if !config.client_networks().iter().any(|n| n.contains(ip)) {
                    tracing::warn!(client = %ip, "client outside the allowed networks");
                    let _ = stream.write_all(b"554 5.7.1 Access denied\r\n").await;
                    continue;
                }
                let crowded = shared.registry().per_ip.get(&ip).copied().unwrap_or(0)
                    >= config.smtp.max_connections_per_client;
                if crowded {
                    let _ = stream.write_all(b"421 4.7.0 Too many connections from your address\r\n").await;
                    continue;
                }
                let stress = Duration::from_secs(config.smtp.stress_command_timeout_secs);
                let permit = match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => match shared.choose_victim(ip, stress) {
                        Some(victim) => {
                            tracing::info!(client = %ip, evicted = %victim.ip, "listener full; closing a waiting connection to make room");
                            victim.evict.notify_one();
                            tokio::time::timeout(EVICTION_WAIT, Arc::clone(&slots).acquire_owned())
                                .await
                                .ok()
                                .and_then(Result::ok)
                        }
                        None => None,
                    },
                };
                let Some(permit) = permit else {
                    let _ = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
                    continue;
                };
                let tracked = Arc::new(Tracked {
                    ip,
                    waiting_since_ms: AtomicU64::new(shared.millis(Instant::now())),
                    evicted: AtomicBool::new(false),
                    evict: Notify::new(),
                });
                let admitted = Admitted::new(Arc::clone(&shared), Arc::clone(&tracked), permit);
                let (intake, shutdown, memory) =
                    (Arc::clone(&intake), shutdown.clone(), Arc::clone(&memory));
                connections.spawn(async move {
                    let link = Link { shared: &admitted.shared, tracked: &tracked, memory };
                    if let Err(e) = connection(stream, peer, &intake, &config, link, shutdown).await {
                        tracing::debug!(client = %peer, error = %e, "connection ended");
                    }
                    drop(admitted);
                });
            }
            // Reap finished connections as they end: a JoinSet keeps every finished task
            // until it is joined (issue #16 B: 2.2 KB per connection, never returned).
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Let sessions finish what they are doing (each closes at its next read).
    while connections.join_next().await.is_some() {}
}

/// A connection's place in the registry and its slot, given back when dropped (also when
/// the connection task panics, so a crash never leaks a slot or a per-client count).
struct Admitted {
    shared: Arc<Shared>,
    id: u64,
    ip: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admitted {
    fn new(
        shared: Arc<Shared>,
        tracked: Arc<Tracked>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        let ip = tracked.ip;
        let id = {
            let mut registry = shared.registry();
            let id = registry.next_id;
            registry.next_id += 1;
            registry.conns.insert(id, tracked);
            *registry.per_ip.entry(ip).or_insert(0) += 1;
            id
        };
        shared.count(true);
        Self {
            shared,
            id,
            ip,
            _permit: permit,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        {
            let mut registry = self.shared.registry();
            registry.conns.remove(&self.id);
            if let Some(c) = registry.per_ip.get_mut(&self.ip) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    registry.per_ip.remove(&self.ip);
                }
            }
        }
        self.shared.count(false);
    }
}

/// What a connection shares with the listener.
struct Link<'a> {
    shared: &'a Shared,
    tracked: &'a Tracked,
    memory: Arc<MemoryBudget>,
}

/// Writes all of `bytes` before `deadline`: a client that sends but never reads must not hold
/// the connection past its deadline by filling the socket buffer.
async fn send(stream: &mut Box<dyn Io>, bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    match tokio::time::timeout_at(deadline, stream.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    intake: &Intake,
    snapshot: &ServiceConfig,
    link: Link<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The configuration this connection was admitted under, kept for its whole life.
    let smtp = &snapshot.smtp;
    let config = SessionConfig {
        hostname: smtp.hostname.clone(),
        max_message_bytes: smtp.max_message_bytes,
        max_recipients: smtp.max_recipients,
        max_line_bytes: smtp.max_line_bytes,
        accepted_domains: smtp
            .accepted_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        bare_line_endings: smtp.bare_line_endings,
        starttls: intake.tls.is_some(),
        hard_error_limit: smtp.hard_error_limit,
        memory: link.memory,
    };
    let command_timeout = Duration::from_secs(smtp.command_timeout_secs);
    let data_timeout = Duration::from_secs(smtp.data_timeout_secs);
    let stress_timeout = Duration::from_secs(smtp.stress_command_timeout_secs);
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = Box::new(tcp);
    let (mut session, greeting) = Session::new(config);
    // When the current command (or DATA phase) began, and when it must be over.
    let mut since = Instant::now();
    let mut deadline = since + command_timeout;
    send(&mut stream, greeting.as_bytes(), deadline).await?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut pending: Vec<Action> = Vec::new();
    loop {
        // Work through what the session asked for; a stored message may release more input.
        let answered = !pending.is_empty();
        while !pending.is_empty() {
            let mut next = Vec::new();
            for action in pending.drain(..) {
                match action {
                    Action::Reply(r) => {
                        // Each write gets the command timeout: a client that pipelines
                        // commands but never reads its replies is dropped then.
                        let write_by = Instant::now() + command_timeout;
                        send(&mut stream, r.as_bytes(), write_by).await?
                    }
                    Action::Close => return Ok(()),
                    Action::StartTls => {
                        let Some(acceptor) = intake.tls.clone() else {
                            return Ok(());
                        };
                        link.tracked.waiting_since_ms.store(BUSY, Ordering::Relaxed);
                        match tokio::time::timeout(command_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                stream = Box::new(tls);
                                session.tls_established();
                            }
                            _ => return Ok(()), // a failed handshake leaves nothing to talk to
                        }
                    }
                    Action::Store(envelope, data) => {
                        link.tracked.waiting_since_ms.store(BUSY, Ordering::Relaxed);
                        let reply =
                            session.message_stored(store(intake, envelope, peer, data).await);
                        let write_by = Instant::now() + command_timeout;
                        send(&mut stream, reply.as_bytes(), write_by).await?;
                        next.extend(session.feed(b""));
                    }
                }
            }
            pending = next;
        }
        let in_data = session.in_data();
        if answered && !in_data {
            // A command was answered: the next one gets its own deadline.
            since = Instant::now();
            deadline = since + command_timeout;
        }
        link.tracked.waiting_since_ms.store(
            if in_data {
                BUSY
            } else {
                link.shared.millis(since)
            },
            Ordering::Relaxed,
        );
        // Wake at the deadline, or (waiting for a command) when the stress timeout would end
        // the wait, and then every second to see whether the listener is under pressure.
        let now = Instant::now();
        let stress_at = since + stress_timeout;
        let wake = if in_data {
            deadline
        } else if now < stress_at {
            deadline.min(stress_at)
        } else {
            deadline.min(now + Duration::from_secs(1))
        };
        tokio::select! {
            read = stream.read(&mut buf) => {
                match read {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        pending = session.feed(&buf[..n]);
                        if session.in_data() && !in_data {
                            // DATA began: the whole phase must end within the data timeout.
                            since = Instant::now();
                            deadline = since + data_timeout;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                let stressed = !in_data && now >= stress_at && link.shared.under_pressure();
                if now >= deadline || stressed {
                    tracing::info!(client = %peer, in_data, stressed, "deadline passed; closing");
                    let _ = send(&mut stream, b"421 4.4.2 Timeout, closing connection\r\n", now + Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
            () = link.tracked.evict.notified(), if !in_data => {
                let _ = send(&mut stream, b"421 4.7.0 Too many connections; closing an idle one\r\n", Instant::now() + Duration::from_secs(1)).await;
                return Ok(());
            }
            _ = shutdown.changed(), if !in_data => {
                send(&mut stream, b"421 4.3.2 Service shutting down\r\n", deadline).await?;
                return Ok(());
            }
        }
    }
}

/// Spool fsync, then the audit record, then 250. Anything failing leaves nothing behind.
async fn store(
    intake: &Intake,
    envelope: crate::envelope::Envelope,
    peer: SocketAddr,
    data: Vec<u8>,
) -> Result<String, String> {
    let spool = Arc::clone(&intake.spool);
    let audit = Arc::clone(&intake.audit);
    let gate = intake.antivirus_gate.clone();
    let client = peer.ip().to_string();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        if let Some(clamd) = gate {
            if let Err(e) = clamd.ping() {
                tracing::warn!(error = %e, "antivirus unavailable; message refused with 451");
                return Err(
                    "451 4.7.1 Antivirus scanning is unavailable; try again later\r\n".to_string(),
                );
            }
        }
        let meta = spool.accept(envelope, &client, &data).map_err(|e| {
            if e.is_no_space() {
                "452 4.3.1 Insufficient system storage\r\n".to_string()
            } else {
                tracing::error!(error = %e, "spool write failed");
                "451 4.3.5 Could not queue the message; try again later\r\n".to_string()
            }
        })?;
        let event = AuditEvent::MessageReceived(MessageReceived {
            queue_id: meta.id.clone(),
            client,
            mail_from: meta.envelope.mail_from.clone(),
            rcpt_to: meta.envelope.rcpt_to.clone(),
            size: meta.size,
            sha256: meta.sha256.clone(),
        });
        if let Err(e) = audit.append(event) {
            // Not recorded means not accepted: remove it and let the client retry.
            tracing::error!(error = %e, "audit log write failed");
            spool.discard(&meta.id);
            return Err("451 4.3.5 Could not record the message; try again later\r\n".to_string());
        }
        Ok(meta.id)
    })
    .await
    .unwrap_or_else(|_| Err("451 4.3.5 Internal error; try again later\r\n".to_string()));
    if result.is_ok() {
        intake.metrics.observe_accept(started.elapsed());
        intake.wake.notify_one();
    }
    result
}
