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
use crate::audit::{AuditEvent, AuditLog};
use crate::clock;
use crate::config::DeliveryConfig;
use crate::sink::relay_client::RelayClient;
use crate::store::spool::{ItemMeta, Lease, Spool};

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

/// A client for the configured relay, and the destination it is recorded as
/// (`smtp://host:port`, with ` (STARTTLS)` when required). Shared by the relay workers and a
/// cluster node's direct release hand-off (`crate::review`).
///
/// # Errors
/// No relay configured, or its TLS settings cannot be used.
pub fn client(
    config: &DeliveryConfig,
    hostname: &str,
) -> crate::error::Result<(RelayClient, String)> {
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
        let ca = config
            .relay_ca_file
            .as_deref()
            .ok_or_else(|| Error::config("delivery.relay_ca_file: needed with relay_starttls"))?;
        client = client.with_tls(crate::sink::relay_client::RelayTls::new(ca, &host)?);
    }
    let tls = if config.relay_starttls {
        " (STARTTLS)"
    } else {
        ""
    };
    Ok((client, format!("smtp://{host}:{port}{tls}")))
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
        let (client, destination) = client(config, hostname)?;
        Ok(Self {
            outgoing,
            audit,
            client,
            destination,
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
        let now_ms = self.outgoing.clock().now_ms();
        let settled = tokio::task::spawn_blocking(move || -> crate::error::Result<()> {
            let id = meta.id.clone();
            match outcome {
                Outcome::Sent(reply) => {
                    if let Err(e) = outgoing.mark_delivered(&id) {
                        tracing::warn!(queue_id = %id, error = %e, "delivery marker not written");
                    }
                    audit.append(AuditEvent::Delivered(Delivered { queue_id: id, destination, rcpt_to: meta.envelope.rcpt_to.clone(), reply }))?;
                    Ok(lease.complete()?)
                }
                Outcome::Retry(error) => match after_failure(&meta, &config, now_ms) {
                    Retry::GiveUp => hold(&audit, lease, format!("gave up after {} hours: {error}", config.give_up_hours)),
                    Retry::At { next_ms, delay_secs } => {
                        audit.append(AuditEvent::Deferred(Deferred { queue_id: id.clone(), reason: error.clone(), attempt: meta.attempts + 1, next_attempt: clock::rfc3339_utc(next_ms) }))?;
                        tracing::warn!(queue_id = %id, error = %error, retry_in_secs = delay_secs, "relay deferred");
                        Ok(lease.defer(&error, next_ms)?)
                    }
                },
                Outcome::Hold(reason) => hold(&audit, lease, reason),
            }
        })
        .await;
        match settled {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, transient = e.is_transient(), "could not settle a relayed message; it stays queued");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "settling a relayed message panicked; it stays queued");
                false
            }
        }
    }
}

/// What happens to a message the relay could not hand on this time.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// Try again at `next_ms`.
    At { next_ms: u64, delay_secs: u64 },
    /// Undelivered for longer than `give_up_hours`: to `hold/`.
    GiveUp,
}

/// The delay before attempt `attempts + 1`: doubling from `first_retry_secs`, at most
/// `max_retry_secs`.
fn retry_delay_secs(config: &DeliveryConfig, attempts: u32) -> u64 {
    config
        .first_retry_secs
        .saturating_mul(1u64 << attempts.min(20))
        .min(config.max_retry_secs)
}

/// The retry decision after a temporary failure at `now_ms`.
///
/// A `received_at` that cannot be read gives no age. Taking it for the epoch (as an old
/// parser did) made such a message look decades old and go to `hold/` on its first failure;
/// taking it for "now" would retry it forever. Instead the message keeps being retried, and
/// its age is taken as the least the retries so far can have taken (the sum of their delays),
/// so it still goes to `hold/` once that alone passes `give_up_hours`.
fn after_failure(meta: &ItemMeta, config: &DeliveryConfig, now_ms: u64) -> Retry {
    let give_up_ms = config.give_up_hours.saturating_mul(3_600_000);
    let age_ms = match clock::parse_rfc3339(&meta.received_at) {
        Some(received) => now_ms.saturating_sub(received),
        None => {
            let waited_ms = (0..meta.attempts).fold(0u64, |sum, n| {
                sum.saturating_add(retry_delay_secs(config, n).saturating_mul(1000))
            });
            tracing::warn!(queue_id = %meta.id, received_at = %meta.received_at, attempts = meta.attempts, "received_at unreadable; age taken from the retries so far");
            waited_ms
        }
    };
    if age_ms > give_up_ms {
        return Retry::GiveUp;
    }
    let delay_secs = retry_delay_secs(config, meta.attempts);
    Retry::At {
        next_ms: now_ms.saturating_add(delay_secs.saturating_mul(1000)),
        delay_secs,
    }
}

fn hold(audit: &AuditLog, lease: Lease, reason: String) -> crate::error::Result<()> {
    let id = lease.meta().id.clone();
    audit.append(AuditEvent::Held(Held {
        queue_id: id.clone(),
        reason: reason.clone(),
    }))?;
    // The alert operators watch for: a message that will not go out without them.
    tracing::error!(alert = true, queue_id = %id, reason = %reason, at = %clock::now_rfc3339(), "relay refused a message; moved to hold/");
    Ok(lease.hold(&reason)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, TestClock};
    use crate::envelope::Envelope;

    const T0: u64 = 1_796_406_775_843; // 2026-12-04T17:52:55.843Z

    fn meta(received_at: &str, attempts: u32) -> ItemMeta {
        ItemMeta {
            id: "Q1".into(),
            envelope: Envelope {
                helo: "h".into(),
                mail_from: "a@example.jp".into(),
                rcpt_to: vec!["b@example.lg.jp".into()],
                eight_bit: false,
                smtputf8: false,
            },
            client: "192.0.2.1".into(),
            received_at: received_at.into(),
            size: 1,
            sha256: String::new(),
            attempts,
            next_attempt_ms: None,
            last_error: None,
            converted: false,
        }
    }

    fn delivery() -> DeliveryConfig {
        // first 60 s, at most 3600 s, give up after 120 h.
        crate::config::ServiceConfig::default_config().delivery
    }

    #[test]
    fn defers_with_doubling_delay_until_give_up_hours_pass_on_the_clock() {
        let config = delivery();
        let clock = TestClock::at(T0);
        let received = clock::rfc3339_utc(clock.now_ms());
        assert_eq!(
            after_failure(&meta(&received, 0), &config, clock.now_ms()),
            Retry::At {
                next_ms: T0 + 60_000,
                delay_secs: 60
            }
        );
        assert_eq!(
            after_failure(&meta(&received, 3), &config, clock.now_ms()),
            Retry::At {
                next_ms: T0 + 480_000,
                delay_secs: 480
            }
        );
        clock.advance(Duration::from_secs(120 * 3600));
        assert!(matches!(
            after_failure(&meta(&received, 9), &config, clock.now_ms()),
            Retry::At {
                delay_secs: 3600,
                ..
            }
        ));
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            after_failure(&meta(&received, 9), &config, clock.now_ms()),
            Retry::GiveUp
        );
    }

    #[test]
    fn unreadable_received_at_is_retried_not_held_at_once() {
        let config = delivery();
        for garbage in ["", "garbage", "2026-13-45T99:00:00Z"] {
            assert_eq!(
                after_failure(&meta(garbage, 0), &config, T0),
                Retry::At {
                    next_ms: T0 + 60_000,
                    delay_secs: 60
                },
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn unreadable_received_at_still_goes_to_hold_once_the_retries_alone_pass_give_up_hours() {
        let config = delivery();
        // 60+120+…+1920 s, then 3600 s each: 124 retries have waited 119 h 3 min at least,
        // 125 retries 120 h 3 min.
        assert!(matches!(
            after_failure(&meta("garbage", 124), &config, T0),
            Retry::At { .. }
        ));
        assert_eq!(
            after_failure(&meta("garbage", 125), &config, T0),
            Retry::GiveUp
        );
    }
}
