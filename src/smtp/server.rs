//! The SMTP listener: sockets, timeouts, connection limits and the durable-write handshake.
//!
//! Owns: accepting connections (clients outside the configured networks get 554 and are
//! closed; over the total or per-client limit, 421), driving a [`Session`] per connection with
//! the command and data timeouts, and answering a finished DATA only after the spool's fsync
//! and the audit record are durable (451 4.3.5 or 452 4.3.1 otherwise, and nothing is kept).
//! Shutdown (mini-redis's pattern): a watch channel tells every connection; a connection not
//! in the middle of DATA answers 421 and closes; the listener stops accepting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use crate::audit::event::MessageReceived;
use crate::audit::{AuditEvent, AuditLog};
use crate::config::ServiceConfig;
use crate::live::Live;
use crate::smtp::session::{Action, Session, SessionConfig};
use crate::spool::Spool;

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
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A connection before or after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    intake: Arc<Intake>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The connection limit sizes a semaphore once; changing it needs a restart.
    let slots = Arc::new(Semaphore::new(intake.config.get().smtp.max_connections));
    let per_client: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::new(Mutex::new(HashMap::new()));
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
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    let _ = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
                    continue;
                };
                let admitted = {
                    let mut map = per_client.lock().unwrap_or_else(|p| p.into_inner());
                    let count = map.entry(ip).or_insert(0);
                    let ok = *count < config.smtp.max_connections_per_client;
                    if ok {
                        *count += 1;
                    }
                    ok
                };
                if !admitted {
                    let _ = stream.write_all(b"421 4.7.0 Too many connections from your address\r\n").await;
                    continue;
                }
                let (intake, per_client, shutdown) = (Arc::clone(&intake), Arc::clone(&per_client), shutdown.clone());
                connections.spawn(async move {
                    if let Err(e) = connection(stream, peer, &intake, &config, shutdown).await {
                        tracing::debug!(client = %peer, error = %e, "connection ended");
                    }
                    let mut map = per_client.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(c) = map.get_mut(&ip) {
                        *c -= 1;
                        if *c == 0 {
                            map.remove(&ip);
                        }
                    }
                    drop(permit);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    // Let sessions finish what they are doing (each closes at its next read).
    while connections.join_next().await.is_some() {}
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    intake: &Intake,
    snapshot: &ServiceConfig,
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
    };
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = Box::new(tcp);
    let (mut session, greeting) = Session::new(config);
    stream.write_all(greeting.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<Action> = Vec::new();
    loop {
        // Work through what the session asked for; a stored message may release more input.
        while !pending.is_empty() {
            let mut next = Vec::new();
            for action in pending.drain(..) {
                match action {
                    Action::Reply(r) => stream.write_all(r.as_bytes()).await?,
                    Action::Close => return Ok(()),
                    Action::StartTls => {
                        let Some(acceptor) = intake.tls.clone() else {
                            return Ok(());
                        };
                        let limit = Duration::from_secs(smtp.command_timeout_secs);
                        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                stream = Box::new(tls);
                                session.tls_established();
                            }
                            _ => return Ok(()), // a failed handshake leaves nothing to talk to
                        }
                    }
                    Action::Store(envelope, data) => {
                        let reply =
                            session.message_stored(store(intake, envelope, peer, data).await);
                        stream.write_all(reply.as_bytes()).await?;
                        next.extend(session.feed(b""));
                    }
                }
            }
            pending = next;
        }
        let limit = Duration::from_secs(if session.in_data() {
            smtp.data_timeout_secs
        } else {
            smtp.command_timeout_secs
        });
        tokio::select! {
            read = tokio::time::timeout(limit, stream.read(&mut buf)) => {
                match read {
                    Err(_) => {
                        stream.write_all(b"421 4.4.2 Timeout, closing connection\r\n").await?;
                        return Ok(());
                    }
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => pending = session.feed(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                }
            }
            _ = shutdown.changed(), if !session.in_data() => {
                stream.write_all(b"421 4.3.2 Service shutting down\r\n").await?;
                return Ok(());
            }
        }
    }
}

/// Builds the STARTTLS acceptor from PEM files (rustls with the ring provider only).
///
/// # Errors
/// Unreadable or unusable certificate or key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Spool fsync, then the audit record, then 250. Anything failing leaves nothing behind.
async fn store(
    intake: &Intake,
    envelope: crate::smtp::session::Envelope,
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
