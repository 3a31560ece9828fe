//! Commands for running the service under a supervisor: `mukaika health`, which a container's
//! HEALTHCHECK (or a monitoring script) runs against the live service.
//!
//! Owns: asking the admin listener the configuration names for `/healthz` and turning the
//! answer into an exit code.
//! Invariants: exit 0 only for an HTTP 200 from the service itself (over HTTPS when the admin
//! listener has a certificate, verified against that certificate chain); anything else —
//! refused, timed out, 503, an unverifiable certificate — exits 1 with the reason on stderr.
//! Must never: write anything, or wait longer than a few seconds.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long `health` waits to connect and for the whole answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `mukaika health`.
pub fn health(config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let (config, _) = match crate::service_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut addr = config.admin.listen;
    if addr.port() == 0 {
        eprintln!("mukaika: admin.listen のポートが 0 のため接続先が分かりません (admin.listen has port 0)");
        return Ok(ExitCode::from(2));
    }
    // A service listening on every address answers on loopback too.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let answer = match &config.admin.tls_cert_file {
        Some(chain) => ask_tls(addr, chain, config.admin.hostnames.first()),
        None => connect(addr).and_then(ask),
    };
    match answer {
        Ok((200, _)) => {
            crate::stdout_line(format_args!("ok"));
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            eprintln!("mukaika: 不健全です (HTTP {status}): {}", body.trim());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("mukaika: サービスが応答しません ({addr}): {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `TcpStream::connect_timeout` with both I/O timeouts set.
fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// Sends `GET /healthz` on `s` and returns the status and body.
fn ask<S: Read + Write>(mut s: S) -> std::io::Result<(u16, String)> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    // The answer is a few lines; cap what a confused peer can make us read.
    if let Err(e) = s.take(64 * 1024).read_to_end(&mut raw) {
        // A TLS peer that closes without close_notify still said what it had to say.
        if raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`ask`] over HTTPS, trusting the admin listener's own certificate chain (the file the
/// service serves), for the first of `admin.hostnames` or `localhost`.
fn ask_tls(
    addr: SocketAddr,
    chain: &std::path::Path,
    name: Option<&String>,
) -> std::io::Result<(u16, String)> {
    let client = mukaika::tls::client_config(chain).map_err(std::io::Error::other)?;
    let name = rustls::pki_types::ServerName::try_from(
        name.map_or("localhost", String::as_str).to_string(),
    )
    .map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(client, name).map_err(std::io::Error::other)?;
    ask(rustls::StreamOwned::new(conn, connect(addr)?))
}
