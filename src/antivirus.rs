//! The clamd client: every original and every unpacked member is streamed to ClamAV's daemon.
//!
//! Owns: [`Clamd`], a [`Scanner`] speaking clamd's null-terminated commands (`zPING`,
//! `zVERSION`, `zINSTREAM` with 4-byte big-endian length-prefixed chunks) over a Unix or TCP
//! socket with a deadline on every read and write. Scans reuse pooled connections held open in
//! clamd's `IDSESSION` mode; a pooled connection clamd has meanwhile closed is replaced once.
//! Invariants: only `stream: OK` is clean; `… FOUND` names the signature; `INSTREAM size limit
//! exceeded` (the input is over clamd's StreamMaxLength) is a refusal, which holds the file;
//! anything else — a refused connection, a timeout, an `ERROR` line — is a transient
//! [`ScanError`], which the registry turns into a hold and the callers into a deferral.
//! Must never: answer "clean" without clamd having said so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use mukaika_sanitizers::scanner::{ScanError, Scanner};

/// Bytes per INSTREAM chunk.
const CHUNK: usize = 256 * 1024;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:/path/to/clamd.sock`
    Unix(PathBuf),
    /// `tcp:127.0.0.1:3310`
    Tcp(SocketAddr),
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Endpoint::Tcp)
                .map_err(|e| format!("antivirus.clamd {s:?}: {e}"));
        }
        Err(format!(
            "antivirus.clamd {s:?}: expected \"unix:/path\" or \"tcp:host:port\""
        ))
    }
}

/// Idle session connections kept for reuse.
const POOL: usize = 8;

/// A clamd client with a small pool of session connections.
pub struct Clamd {
    endpoint: Endpoint,
    timeout: Duration,
    idle: std::sync::Mutex<Vec<Box<dyn Stream>>>,
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl Clamd {
    /// A client for `endpoint` with `timeout` on each read and write.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self {
            endpoint,
            timeout,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A new connection switched to `IDSESSION`.
    fn new_session(&self) -> Result<Box<dyn Stream>, ScanError> {
        let mut s = self.connect()?;
        s.write_all(b"zIDSESSION\0")
            .map_err(|e| ScanError::new(format!("clamd: {e}")))?;
        Ok(s)
    }

    fn give_back(&self, s: Box<dyn Stream>) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL {
                idle.push(s);
            }
        }
    }

    /// One INSTREAM on a session connection: the reply without its `<id>: ` prefix, or the
    /// error and whether the connection itself failed (worth one retry on a fresh one).
    fn instream(s: &mut dyn Stream, bytes: &[u8]) -> Result<String, (ScanError, bool)> {
        let io = |e: std::io::Error| (ScanError::new(format!("clamd INSTREAM: {e}")), true);
        s.write_all(b"zINSTREAM\0").map_err(io)?;
        for chunk in bytes.chunks(CHUNK) {
            s.write_all(&(chunk.len() as u32).to_be_bytes())
                .map_err(io)?;
            if let Err(e) = s.write_all(chunk) {
                // clamd stops reading once StreamMaxLength is passed; its reply says so.
                let reply = read_reply(s).unwrap_or_default();
                let error = format!("clamd INSTREAM: {e} {reply}");
                return Err(if reply.contains("size limit") {
                    (ScanError::refused(error), false)
                } else {
                    (ScanError::new(error), true)
                });
            }
        }
        s.write_all(&0u32.to_be_bytes()).map_err(io)?;
        let reply = read_reply(s).map_err(|e| (e, true))?;
        if reply.is_empty() {
            return Err((ScanError::new("clamd closed the session"), true));
        }
        Ok(match reply.split_once(": ") {
            Some((id, rest)) if id.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
            _ => reply,
        })
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ScanError> {
        let fail = |e: std::io::Error| ScanError::new(format!("clamd {:?}: {e}", self.endpoint));
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).map_err(fail)?;
                s.set_read_timeout(Some(self.timeout)).map_err(fail)?;
                s.set_write_timeout(Some(self.timeout)).map_err(fail)?;
                Ok(Box::new(s))
            }
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, self.timeout).map_err(fail)?;
                s.set_read_timeout(Some(self.timeout)).map_err(fail)?;
                s.set_write_timeout(Some(self.timeout)).map_err(fail)?;
                Ok(Box::new(s))
            }
        }
    }

    fn command(&self, command: &[u8]) -> Result<String, ScanError> {
        let mut s = self.connect()?;
        s.write_all(command)
            .map_err(|e| ScanError::new(format!("clamd: {e}")))?;
        read_reply(&mut s)
    }

    /// `PONG` when clamd answers.
    ///
    /// # Errors
    /// No answer in time.
    pub fn ping(&self) -> Result<(), ScanError> {
        match self.command(b"zPING\0")?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::new(format!("clamd answered {other:?} to PING"))),
        }
    }

    /// clamd's version line (`ClamAV 1.4.6/27…/date` with the signature date).
    ///
    /// # Errors
    /// No answer in time.
    pub fn version(&self) -> Result<String, ScanError> {
        self.command(b"zVERSION\0")
    }
}

fn read_reply(s: &mut dyn Stream) -> Result<String, ScanError> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == 0 => break,
            Ok(_) => {
                reply.push(byte[0]);
                if reply.len() > 4096 {
                    return Err(ScanError::new("clamd reply too long"));
                }
            }
            Err(e) => return Err(ScanError::new(format!("clamd: {e}"))),
        }
    }
    Ok(String::from_utf8_lossy(&reply).trim().to_string())
}

impl Scanner for Clamd {
    fn scan(&self, bytes: &[u8]) -> Result<Option<String>, ScanError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (mut s, reused) = match pooled {
            Some(s) => (s, true),
            None => (self.new_session()?, false),
        };
        let reply = match Self::instream(s.as_mut(), bytes) {
            Ok(reply) => reply,
            // clamd closes idle sessions: a stale pooled connection is replaced once.
            Err((_, true)) if reused => {
                s = self.new_session()?;
                Self::instream(s.as_mut(), bytes).map_err(|(e, _)| e)?
            }
            Err((e, _)) => return Err(e),
        };
        let result = parse_scan_reply(&reply);
        if result.is_ok() {
            self.give_back(s);
        }
        result
    }
}

/// `stream: OK`, `stream: Eicar-Signature FOUND`, or an error line.
fn parse_scan_reply(reply: &str) -> Result<Option<String>, ScanError> {
    let body = reply
        .strip_prefix("stream:")
        .map(str::trim)
        .unwrap_or(reply);
    if body == "OK" {
        return Ok(None);
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        return Ok(Some(signature.trim().to_string()));
    }
    if body.contains("size limit exceeded") {
        return Err(ScanError::refused(format!("clamd: {reply}")));
    }
    Err(ScanError::new(format!("clamd: {reply}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_strictly() {
        assert_eq!(parse_scan_reply("stream: OK").unwrap(), None);
        assert_eq!(
            parse_scan_reply("stream: Eicar-Signature FOUND").unwrap(),
            Some("Eicar-Signature".into())
        );
        let limit = parse_scan_reply("INSTREAM size limit exceeded. ERROR").unwrap_err();
        assert!(
            !limit.is_transient(),
            "over the stream limit is held, not retried forever"
        );
        assert!(parse_scan_reply("stream: Can't allocate memory ERROR")
            .unwrap_err()
            .is_transient());
        assert!(parse_scan_reply("").is_err());
        assert!("unix:/run/clamd.sock".parse::<Endpoint>().is_ok());
        assert!("tcp:127.0.0.1:3310".parse::<Endpoint>().is_ok());
        assert!("clamd.sock".parse::<Endpoint>().is_err());
    }
}
