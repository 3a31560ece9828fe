//! A small SMTP client for the relay sink.
//!
//! Owns: pooled connections to the LGWAN-side MTA and one transaction per message — MAIL,
//! RCPT… and DATA pipelined in one write when the server offers PIPELINING, the dot-stuffed
//! message and its terminator in one write.
//! Why not lettre (which the issue names): lettre never sets TCP_NODELAY and writes the end of
//! DATA as a separate small segment, so Nagle's algorithm waits for the peer's delayed ACK —
//! about 40 ms per message, which capped relaying at ~180 msg/s against Postfix's ~780 on the
//! same machine. This client sets TCP_NODELAY and never leaves a small tail waiting.
//! With TLS configured the client requires STARTTLS: a relay that does not offer it, or whose
//! certificate does not verify against the configured CA file for the relay's host name, gets
//! no message (a transient failure, so the message waits rather than going out in clear).
//! Invariants: a connection is reused only after a complete, successful transaction; any
//! error drops it; replies are classified by their first digit (4 transient, 5 permanent), and
//! network errors and timeouts are transient; nothing the server sent before the TLS handshake
//! is read after it (a response injected ahead of STARTTLS drops the connection).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// STARTTLS to the relay: the connector (CA roots from config) and the name to verify.
#[derive(Clone)]
pub struct RelayTls {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl RelayTls {
    /// Trusts the PEM certificates in `ca_file` for the relay named `host`.
    ///
    /// # Errors
    /// The file cannot be read, holds no certificate, or `host` is not a valid name.
    pub fn new(ca_file: &std::path::Path, host: &str) -> crate::error::Result<Self> {
        use crate::error::Error;
        let config = crate::tls::client_config(ca_file)
            .map_err(|e| Error::config(format!("delivery.relay_ca_file: {e}")))?;
        let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| Error::config(format!("delivery.relay host {host:?}: {e}")))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }
}

/// Why a relay transaction failed.
#[derive(Debug, Clone)]
pub struct RelayError {
    message: String,
    permanent: bool,
}

impl RelayError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
    fn reply(code: u16, text: &str, during: &str) -> Self {
        Self {
            message: format!("{during}: {code} {text}"),
            permanent: code >= 500,
        }
    }
    /// A 5xx: retrying will not help.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
    /// A 4xx, a timeout or a network error: retry later.
    pub fn is_transient(&self) -> bool {
        !self.permanent
    }
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

struct Conn {
    stream: BufReader<Box<dyn Io>>,
    pipelining: bool,
}

/// Pooled connections to one relay.
pub struct RelayClient {
    host: String,
    port: u16,
    hello: String,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
    tls: Option<RelayTls>,
}

impl RelayClient {
    /// A client for `host:port` that says `hello` in EHLO.
    pub fn new(host: String, port: u16, hello: String, timeout: Duration, max_idle: usize) -> Self {
        Self {
            host,
            port,
            hello,
            timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
            tls: None,
        }
    }

    /// Requires STARTTLS with `tls` on every connection.
    pub fn with_tls(mut self, tls: RelayTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends one message; returns the server's final reply.
    ///
    /// # Errors
    /// Any refusal (classified) or network failure.
    pub async fn send(&self, from: &str, to: &[String], data: &[u8]) -> Result<String, RelayError> {
        let pooled = self.idle.lock().await.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let result = tokio::time::timeout(self.timeout, transaction(&mut conn, from, to, data))
            .await
            .unwrap_or_else(|_| Err(RelayError::transient("relay timed out")));
        if result.is_ok() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        result
    }

    async fn connect(&self) -> Result<Conn, RelayError> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| RelayError::transient("connection to the relay timed out"))?
            .map_err(|e| {
                RelayError::transient(format!(
                    "cannot connect to {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        stream
            .set_nodelay(true)
            .map_err(|e| RelayError::transient(e.to_string()))?;
        let mut conn = Conn {
            stream: BufReader::new(Box::new(stream) as Box<dyn Io>),
            pipelining: false,
        };
        let setup = async {
            expect(&mut conn, 2, "greeting").await?;
            let mut lines = self.ehlo(&mut conn).await?;
            if let Some(tls) = &self.tls {
                if !lines.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                    return Err(RelayError::transient(
                        "the relay does not offer STARTTLS, which the configuration requires",
                    ));
                }
                conn.stream
                    .get_mut()
                    .write_all(b"STARTTLS\r\n")
                    .await
                    .map_err(io)?;
                expect(&mut conn, 2, "STARTTLS").await?;
                if !conn.stream.buffer().is_empty() {
                    return Err(RelayError::transient(
                        "the relay sent data ahead of the TLS handshake",
                    ));
                }
                let plain = std::mem::replace(
                    &mut conn.stream,
                    BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>),
                )
                .into_inner();
                let secured = tls
                    .connector
                    .connect(tls.server_name.clone(), plain)
                    .await
                    .map_err(|e| RelayError::transient(format!("TLS to the relay: {e}")))?;
                conn.stream = BufReader::new(Box::new(secured) as Box<dyn Io>);
                lines = self.ehlo(&mut conn).await?;
            }
            conn.pipelining = lines.iter().any(|l| l.eq_ignore_ascii_case("PIPELINING"));
            Ok::<(), RelayError>(())
        };
        tokio::time::timeout(self.timeout, setup)
            .await
            .map_err(|_| RelayError::transient("relay greeting timed out"))??;
        Ok(conn)
    }

    async fn ehlo(&self, conn: &mut Conn) -> Result<Vec<String>, RelayError> {
        conn.stream
            .get_mut()
            .write_all(format!("EHLO {}\r\n", self.hello).as_bytes())
            .await
            .map_err(io)?;
        let (code, lines) = read_reply(conn).await?;
        if code / 100 != 2 {
            return Err(RelayError::reply(code, &lines.join(" "), "EHLO"));
        }
        Ok(lines)
    }
}

async fn transaction(
    conn: &mut Conn,
    from: &str,
    to: &[String],
    data: &[u8],
) -> Result<String, RelayError> {
    let mut commands = vec![format!("MAIL FROM:<{from}>\r\n")];
    commands.extend(to.iter().map(|t| format!("RCPT TO:<{t}>\r\n")));
    commands.push("DATA\r\n".into());
    if conn.pipelining {
        conn.stream
            .get_mut()
            .write_all(commands.concat().as_bytes())
            .await
            .map_err(io)?;
    }
    let mut failure: Option<RelayError> = None;
    for (i, cmd) in commands.iter().enumerate() {
        if !conn.pipelining {
            conn.stream
                .get_mut()
                .write_all(cmd.as_bytes())
                .await
                .map_err(io)?;
        }
        let (code, lines) = read_reply(conn).await?;
        let want = if i + 1 == commands.len() { 3 } else { 2 };
        if code / 100 != want && failure.is_none() {
            failure = Some(RelayError::reply(code, &lines.join(" "), cmd.trim_end()));
            if !conn.pipelining {
                break;
            }
        }
    }
    if let Some(f) = failure {
        // DATA may have been accepted (354) only if nothing failed; otherwise reset cleanly.
        conn.stream
            .get_mut()
            .write_all(b"RSET\r\n")
            .await
            .map_err(io)?;
        let _ = read_reply(conn).await;
        return Err(f);
    }
    let mut body = Vec::with_capacity(data.len() + data.len() / 50 + 8);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            body.push(b'.');
        }
        body.push(b);
        at_line_start = b == b'\n';
    }
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    conn.stream.get_mut().write_all(&body).await.map_err(io)?;
    let (code, lines) = read_reply(conn).await?;
    if code / 100 != 2 {
        return Err(RelayError::reply(code, &lines.join(" "), "end of DATA"));
    }
    Ok(format!("{code} {}", lines.join(" ")))
}

async fn expect(conn: &mut Conn, class: u16, during: &str) -> Result<(), RelayError> {
    let (code, lines) = read_reply(conn).await?;
    if code / 100 != class {
        return Err(RelayError::reply(code, &lines.join(" "), during));
    }
    Ok(())
}

/// Reads one (possibly multi-line) reply: its code and text lines.
async fn read_reply(conn: &mut Conn) -> Result<(u16, Vec<String>), RelayError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = conn.stream.read_line(&mut line).await.map_err(io)?;
        if n == 0 {
            return Err(RelayError::transient("the relay closed the connection"));
        }
        let line = line.trim_end();
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| RelayError::transient(format!("bad reply: {line}")))?;
        lines.push(line.get(4..).unwrap_or("").to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, lines));
        }
        if lines.len() > 100 {
            return Err(RelayError::transient("reply too long"));
        }
    }
}

fn io(e: std::io::Error) -> RelayError {
    RelayError::transient(e.to_string())
}
