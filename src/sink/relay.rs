//! The relay sink: converted mail to the LGWAN-side MTA over SMTP.
//!
//! Owns: workers that lease converted messages from the outgoing spool and send them through
//! [`RelayClient`] (pooled connections), and the retry policy: a 4xx, timeout or network error defers
//! the message with a doubling delay (`first_retry_secs` … `max_retry_secs`); a 5xx, or a
//! message still undelivered after `give_up_hours`, moves to `hold/` with an audit record and
//! an alert in the log. Nothing is ever bounced to the internet sender: forged senders would
//! turn bounces into backscatter.
//! Invariant: only the outgoing spool feeds this sink, and only the pipeline writes to that
//! spool, so only mukaika's own converted messages are ever relayed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::audit::event::{Deferred, Delivered, Held};
use crate::audit::log::{now_millis, now_rfc3339, parse_ts};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::DeliveryConfig;
use crate::sink::relay_client::RelayClient;
use crate::store::spool::{Lease, Spool};

/// The relay sink.
pub struct Relay {
    outgoing: Arc<Spool>,
    audit: Arc<AuditLog>,
    client: RelayClient,
    destination: String,
    config: DeliveryConfig,
    /// Woken when the pipeline queues a converted message.
    pub wake: Arc<Notify>,
}

enum Outcome {
    Sent(String),
    Retry(String),
    Hold(String),
}

impl Relay {
    /// Builds the sink (connections are opened lazily).
    ///
    /// # Errors
    /// No relay configured.
    pub fn new(
        config: &DeliveryConfig,
        hostname: &str,
        outgoing: Arc<Spool>,
        audit: Arc<AuditLog>,
        wake: Arc<Notify>,
    ) -> crate::error::Result<Self> {
        use crate::error::Error;
        let (host, port) = config
            .relay_target()
            .map_err(|e| Error::config(format!("delivery.relay: {e}")))?;
        let mut client = RelayClient::new(
            host.clone(),
            port,
            hostname.to_string(),
            Duration::from_secs(config.relay_timeout_secs),
            config.relay_connections as usize,
        );
        if config.relay_starttls {
            let ca = config.relay_ca_file.as_deref().ok_or_else(|| {
                Error::config("delivery.relay_ca_file: needed with relay_starttls")
            })?;
            client = client.with_tls(
                crate::sink::relay_client::RelayTls::new(ca, &host).map_err(Error::config)?,
            );
        }
        Ok(Self {
            outgoing,
            audit,
            client,
            destination: format!(
                "smtp://{host}:{port}{}",
                if config.relay_starttls {
                    " (STARTTLS)"
                } else {
                    ""
                }
            ),
            config: config.clone(),
            wake,
        })
    }

    /// Runs one relay worker until shutdown.
    pub async fn worker(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let (spool, wake) = (Arc::clone(&self.outgoing), Arc::clone(&self.wake));
        crate::store::spool::lease_loop(spool, wake, shutdown, |lease| {
            let this = Arc::clone(&self);
            async move { this.send(lease).await }
        })
        .await;
    }

    /// Sends one item; false when it could not be settled (the worker backs off).
    async fn send(&self, lease: Lease) -> bool {
        let meta = lease.meta().clone();
        let outcome = match (
            lease.data(),
            envelope_ok(&meta.envelope.mail_from, &meta.envelope.rcpt_to),
        ) {
            // The LGWAN MTA said 250 before a crash or a failed audit write: not sent twice.
            _ if self.outgoing.delivered(&meta.id) => {
                Outcome::Sent("250 (accepted before an interruption; not sent again)".into())
            }
            (Err(e), _) => Outcome::Retry(e.to_string()),
            (_, Err(e)) => Outcome::Hold(format!("envelope not usable: {e}")),
            (Ok(data), Ok(())) => match self
                .client
                .send(&meta.envelope.mail_from, &meta.envelope.rcpt_to, &data)
                .await
            {
                Ok(reply) => Outcome::Sent(reply),
                Err(e) if e.is_permanent() => Outcome::Hold(e.to_string()),
                Err(e) => Outcome::Retry(e.to_string()),
            },
        };
        let audit = Arc::clone(&self.audit);
        let outgoing = Arc::clone(&self.outgoing);
        let (destination, config) = (self.destination.clone(), self.config.clone());
        let settled = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let id = meta.id.clone();
            match outcome {
                Outcome::Sent(reply) => {
                    if let Err(e) = outgoing.mark_delivered(&id) {
                        tracing::warn!(queue_id = %id, error = %e, "delivery marker not written");
                    }
                    audit.append(AuditEvent::Delivered(Delivered { queue_id: id, destination, rcpt_to: meta.envelope.rcpt_to.clone(), reply })).map_err(|e| e.to_string())?;
                    lease.complete().map_err(|e| e.to_string())
                }
                Outcome::Retry(error) => {
                    let age_ms = now_millis().saturating_sub(parse_ts(&meta.received_at));
                    if age_ms > config.give_up_hours * 3_600_000 {
                        return hold(&audit, lease, format!("gave up after {} hours: {error}", config.give_up_hours));
                    }
                    let delay = config.first_retry_secs.saturating_mul(1u64 << meta.attempts.min(20)).min(config.max_retry_secs);
                    let next = now_millis() + delay * 1000;
                    audit.append(AuditEvent::Deferred(Deferred { queue_id: id.clone(), reason: error.clone(), attempt: meta.attempts + 1, next_attempt: crate::audit::log::rfc3339_at(next) })).map_err(|e| e.to_string())?;
                    tracing::warn!(queue_id = %id, error = %error, retry_in_secs = delay, "relay deferred");
                    lease.defer(&error, next).map_err(|e| e.to_string())
                }
                Outcome::Hold(reason) => hold(&audit, lease, reason),
            }
        })
        .await;
        match settled.map_err(|e| e.to_string()) {
            Ok(Ok(())) => true,
            Ok(Err(e)) | Err(e) => {
                tracing::error!(error = %e, "could not settle a relayed message; it stays queued");
                false
            }
        }
    }
}

fn hold(audit: &AuditLog, lease: Lease, reason: String) -> Result<(), String> {
    let id = lease.meta().id.clone();
    audit
        .append(AuditEvent::Held(Held {
            queue_id: id.clone(),
            reason: reason.clone(),
        }))
        .map_err(|e| e.to_string())?;
    // The alert operators watch for: a message that will not go out without them.
    tracing::error!(alert = true, queue_id = %id, reason = %reason, at = %now_rfc3339(), "relay refused a message; moved to hold/");
    lease.hold(&reason).map_err(|e| e.to_string())
}

/// Addresses must be safe to put on a command line: no CR, LF, angle brackets or spaces.
fn envelope_ok(from: &str, to: &[String]) -> Result<(), String> {
    let bad = |a: &str| {
        a.chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>' | ' '))
    };
    if bad(from) {
        return Err(format!("sender {from:?}"));
    }
    if to.is_empty() {
        return Err("no recipients".into());
    }
    match to.iter().find(|t| t.is_empty() || bad(t)) {
        Some(t) => Err(format!("recipient {t:?}")),
        None => Ok(()),
    }
}
