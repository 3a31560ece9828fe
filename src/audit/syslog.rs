//! Forwarding audit records to a SIEM as RFC 5424 syslog messages, over UDP or TCP.
//!
//! Owns: formatting one record as an RFC 5424 message (facility "log audit", the record's own
//! timestamp, the node as HOSTNAME, the event type as MSGID, sequence and hash as structured
//! data, the JSON line as MSG) and sending it, with RFC 6587 octet-counting framing on TCP.
//! Invariants: forwarding runs on its own thread behind a channel, after the record is
//! durable on disk: a slow or absent SIEM never delays or blocks the audit log. Failures are
//! counted (for health and metrics) and TCP reconnects on the next record.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Where records are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTarget {
    /// RFC 5426 (one message per datagram).
    Udp(SocketAddr),
    /// RFC 6587 octet counting.
    Tcp(SocketAddr),
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;
    /// `udp://host:port` or `tcp://host:port` (an IP address; names are resolved by the caller).
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, addr) = s
            .split_once("://")
            .ok_or_else(|| format!("{s}: expected udp://ip:port or tcp://ip:port"))?;
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        match scheme {
            "udp" => Ok(SyslogTarget::Udp(addr)),
            "tcp" => Ok(SyslogTarget::Tcp(addr)),
            other => Err(format!("{s}: unknown scheme {other}")),
        }
    }
}

/// A running forwarder. Dropping it stops the thread after the queue drains.
pub struct Forwarder {
    queue: Sender<String>,
    failures: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Forwarder {
    /// Starts the forwarding thread.
    pub fn start(target: SyslogTarget) -> Self {
        let (queue, rx) = mpsc::channel::<String>();
        let failures = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (f, s) = (Arc::clone(&failures), Arc::clone(&sent));
        std::thread::Builder::new()
            .name("audit-syslog".into())
            .spawn(move || {
                let udp = UdpSocket::bind(match target {
                    SyslogTarget::Udp(a) if a.is_ipv6() => "[::]:0",
                    _ => "0.0.0.0:0",
                })
                .ok();
                let mut tcp: Option<TcpStream> = None;
                for message in rx {
                    let ok = match target {
                        SyslogTarget::Udp(addr) => udp
                            .as_ref()
                            .is_some_and(|u| u.send_to(message.as_bytes(), addr).is_ok()),
                        SyslogTarget::Tcp(addr) => {
                            if tcp.is_none() {
                                tcp =
                                    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok();
                                if let Some(t) = &tcp {
                                    let _ = t.set_write_timeout(Some(Duration::from_secs(3)));
                                }
                            }
                            let framed = format!("{} {message}", message.len());
                            let result = tcp.as_mut().map(|t| t.write_all(framed.as_bytes()));
                            if !matches!(result, Some(Ok(()))) {
                                tcp = None;
                            }
                            matches!(result, Some(Ok(())))
                        }
                    };
                    if ok {
                        s.fetch_add(1, Ordering::Relaxed);
                    } else {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .ok();
        Self {
            queue,
            failures,
            sent,
        }
    }

    /// Queues the records of a durable batch (one JSON line each).
    pub fn forward_batch(&self, batch: &[u8]) {
        for line in String::from_utf8_lossy(batch).lines() {
            if let Some(message) = format_record(line) {
                if self.queue.send(message).is_err() {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Messages that could not be delivered.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Messages sent.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// One record as an RFC 5424 message.
pub fn format_record(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let kind = v["event"]["type"].as_str().unwrap_or("-");
    // Held and quarantined items are notices worth an operator's eye; the rest is information.
    let severity = match kind {
        "held" | "quarantined" | "recovery" | "retention_expired" => 5,
        "import_failed" => 4,
        "admin_login" if v["event"]["outcome"] != "success" => 4,
        _ => 6,
    };
    let pri = 13 * 8 + severity;
    let field = |s: &str, max: usize| -> String {
        let t: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if t.is_empty() {
            "-".into()
        } else {
            t
        }
    };
    let sd_escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    Some(format!(
        "<{pri}>1 {} {} mukaika {} {} [mukaika@32473 seq=\"{}\" hash=\"{}\"] \u{FEFF}{}",
        field(v["ts"].as_str().unwrap_or("-"), 64),
        field(v["node"].as_str().unwrap_or("-"), 255),
        std::process::id(),
        field(kind, 32),
        v["seq"].as_u64().unwrap_or(0),
        sd_escape(v["hash"].as_str().unwrap_or("")),
        line
    ))
}
