//! Forwarding audit records to a SIEM as RFC 5424 syslog messages, over UDP, TCP or TLS.
//!
//! Owns: formatting one record as an RFC 5424 message (facility "log audit", the record's own
//! timestamp, the node as HOSTNAME, the event type as MSGID, sequence and hash as structured
//! data, the JSON line as MSG) and sending it, with octet-counting framing (`LEN SP MSG`) on
//! TCP (RFC 6587) and TLS (RFC 5425).
//! Invariants: forwarding runs on its own thread behind a channel, after the record is
//! durable on disk: a slow or absent SIEM never delays or blocks the audit log. Failures are
//! counted (for health and metrics) and TCP and TLS reconnect on the next record. A `tls://`
//! target verifies the SIEM's certificate against the configured CA file only.
//! Must never: send a record in the clear to a `tls://` target — a failed handshake or an
//! unverifiable certificate is a failed send, never a fallback to plain TCP.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// Where records are forwarded.
#[derive(Debug, Clone)]
pub enum SyslogTarget {
    /// RFC 5426 (one message per datagram).
    Udp(SocketAddr),
    /// RFC 6587 octet counting.
    Tcp(SocketAddr),
    /// RFC 5425: TLS, octet counting.
    Tls {
        /// The SIEM's address.
        addr: SocketAddr,
        /// The name its certificate must carry (its IP address unless configured).
        name: ServerName<'static>,
        /// Trusts only the configured CA file.
        config: Arc<rustls::ClientConfig>,
    },
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;
    /// `udp://ip:port` or `tcp://ip:port` (an IP address; names are resolved by the caller).
    /// `tls://` needs a CA file: see [`target`].
    fn from_str(s: &str) -> Result<Self, String> {
        target(s, None, None)
    }
}

/// The target `url` names: `udp://ip:port`, `tcp://ip:port` or `tls://ip:port`. A `tls://`
/// target needs `ca_file` (PEM: the CA that signed the SIEM's certificate); `server_name` is
/// the name to verify in that certificate, the IP address when absent.
///
/// # Errors
/// A malformed URL, `tls://` without a usable CA file, or a CA file for a plain target.
pub fn target(
    url: &str,
    ca_file: Option<&std::path::Path>,
    server_name: Option<&str>,
) -> Result<SyslogTarget, String> {
    let (scheme, addr) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: expected udp://ip:port, tcp://ip:port or tls://ip:port"))?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{url}: {e}"))?;
    if scheme != "tls" && (ca_file.is_some() || server_name.is_some()) {
        return Err(format!(
            "{url}: a CA file or server name is only for tls:// targets"
        ));
    }
    match scheme {
        "udp" => Ok(SyslogTarget::Udp(addr)),
        "tcp" => Ok(SyslogTarget::Tcp(addr)),
        "tls" => {
            let ca = ca_file.ok_or_else(|| {
                format!("{url}: tls:// needs syslog_ca_file (the CA of the SIEM's certificate)")
            })?;
            let config = crate::tls::client_config(ca).map_err(|e| e.to_string())?;
            let name = match server_name {
                Some(n) => ServerName::try_from(n.to_string())
                    .map_err(|e| format!("syslog_server_name {n:?}: {e}"))?,
                None => ServerName::IpAddress(addr.ip().into()),
            };
            Ok(SyslogTarget::Tls { addr, name, config })
        }
        other => Err(format!("{url}: unknown scheme {other}")),
    }
}

/// A stream connection to the SIEM: plain TCP or TLS.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects to a TCP or TLS target (None for UDP or on failure).
    fn connect(target: &SyslogTarget) -> Option<Stream> {
        let addr = match target {
            SyslogTarget::Udp(_) => return None,
            SyslogTarget::Tcp(a) | SyslogTarget::Tls { addr: a, .. } => *a,
        };
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
        tcp.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        match target {
            SyslogTarget::Tls { name, config, .. } => {
                let mut conn =
                    rustls::ClientConnection::new(Arc::clone(config), name.clone()).ok()?;
                let mut tcp = tcp;
                // Handshake now, so a refused certificate fails here and nothing is written.
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp).ok()?;
                }
                Some(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
            }
            _ => Some(Stream::Tcp(tcp)),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(t) => t.write_all(bytes),
            Stream::Tls(t) => t.write_all(bytes).and_then(|()| t.flush()),
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
                let mut stream: Option<Stream> = None;
                for message in rx {
                    let ok = match &target {
                        SyslogTarget::Udp(addr) => udp
                            .as_ref()
                            .is_some_and(|u| u.send_to(message.as_bytes(), addr).is_ok()),
                        SyslogTarget::Tcp(_) | SyslogTarget::Tls { .. } => {
                            if stream.is_none() {
                                stream = Stream::connect(&target);
                            }
                            // Octet counting: the length is in bytes (RFC 6587 3.4.1, RFC 5425 4.3).
                            let framed = format!("{} {message}", message.len());
                            let sent = stream
                                .as_mut()
                                .is_some_and(|s| s.send(framed.as_bytes()).is_ok());
                            if !sent {
                                stream = None;
                            }
                            sent
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// One JSON audit line as the log writes it.
    fn record(seq: u64) -> String {
        format!(
            r#"{{"seq":{seq},"ts":"2026-12-05T00:00:00Z","node":"mukaika-1","event":{{"type":"message_received","queue_id":"Q{seq}"}},"hash":"ab"}}"#
        )
    }

    /// Reads one `LEN SP MSG` frame.
    fn frame(r: &mut impl Read) -> String {
        let mut len = Vec::new();
        let mut b = [0u8; 1];
        loop {
            r.read_exact(&mut b).unwrap();
            if b[0] == b' ' {
                break;
            }
            assert!(b[0].is_ascii_digit(), "MSG-LEN digit, got {:?}", b[0]);
            len.push(b[0]);
        }
        let len: usize = String::from_utf8(len).unwrap().parse().unwrap();
        let mut msg = vec![0u8; len];
        r.read_exact(&mut msg).unwrap();
        String::from_utf8(msg).unwrap()
    }

    /// A SIEM's TLS side presenting `cert`.
    fn tls_server(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> rustls::ServerConfig {
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn tls_targets_send_octet_counted_frames_over_tls_only() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let server = tls_server(&cert);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let siem = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The first byte on the wire opens a TLS handshake record, not a syslog frame.
            let mut first = [0u8; 1];
            assert_eq!(tcp.peek(&mut first).unwrap(), 1);
            assert_eq!(first[0], 0x16, "plain bytes on a tls:// target");
            let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            [frame(&mut tls), frame(&mut tls)]
        });
        let target = target(&format!("tls://{addr}"), Some(&ca), None).unwrap();
        let forwarder = Forwarder::start(target);
        forwarder.forward_batch(format!("{}\n{}\n", record(1), record(2)).as_bytes());
        let [one, two] = siem.join().unwrap();
        assert!(
            one.starts_with("<110>1 2026-12-05T00:00:00Z mukaika-1 mukaika "),
            "{one}"
        );
        assert!(
            one.contains("seq=\"1\"") && one.ends_with(&record(1)),
            "{one}"
        );
        assert!(
            two.contains("seq=\"2\"") && two.ends_with(&record(2)),
            "{two}"
        );
    }

    #[test]
    fn an_unverifiable_siem_certificate_gets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, trusted.cert.pem()).unwrap();
        let server = tls_server(&other);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let siem = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got);
            got
        });
        let forwarder =
            Forwarder::start(target(&format!("tls://{addr}"), Some(&ca), None).unwrap());
        forwarder.forward_batch(format!("{}\n", record(1)).as_bytes());
        assert!(siem.join().unwrap().is_empty());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while forwarder.failures() == 0 {
            assert!(std::time::Instant::now() < deadline, "no failure counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(forwarder.sent(), 0);
    }

    #[test]
    fn a_tls_target_without_a_ca_file_is_refused() {
        assert!(target("tls://127.0.0.1:6514", None, None)
            .unwrap_err()
            .contains("syslog_ca_file"));
        assert!("tls://127.0.0.1:6514".parse::<SyslogTarget>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        assert!(target("tls://127.0.0.1:6514", Some(&ca), None).is_err());
        assert!(target("tcp://127.0.0.1:6514", Some(&ca), None).is_err());
        assert!(matches!(
            target("tcp://127.0.0.1:601", None, None),
            Ok(SyslogTarget::Tcp(_))
        ));
    }
}
