//! The SMTP session: a sans-IO state machine.
//!
//! Owns: turning the bytes a client sends into replies and, at the end of DATA, a complete
//! message for the server to make durable. No sockets, no clock: the server feeds bytes in and
//! writes replies out, which is how the transcript tests drive it.
//! Invariants:
//! - Only `<CRLF>.<CRLF>` ends DATA, and it always does: a bare LF or bare CR anywhere in DATA
//!   (including the `\n.\n`, `\r.\r` and `\r\r\n` smuggling forms) never ends or splits a
//!   message, and never hides the real end either: the whole message is rejected with
//!   550 5.5.2, or normalised to CRLF, by configuration (CVE-2023-51764/5/6).
//! - Message bytes are taken from the shared [`MemoryBudget`] before they are allocated (twice:
//!   the buffer and the spool's copy while writing it); past the budget the rest of the DATA is
//!   read and dropped and the reply is 452 4.3.1, so memory across sessions stays bounded.
//! - A non-ASCII address needs SMTPUTF8 on MAIL (RFC 6531 §3.4: 553 5.6.7 otherwise).
//! - `hard_error_limit` error replies without a delivered message end the session with 421
//!   (Postfix's `smtpd_hard_error_limit`): a client cannot probe or spin forever.
//! - A message over the size limit is read to its end and discarded (552); the session stays
//!   usable. Pipelined commands after DATA wait until the server reports the durable write.
//! - 250 for DATA is never produced here: the server answers only after the spool's fsync.

pub use crate::envelope::Envelope;
use std::collections::VecDeque;

use smtp_proto::{Error as ParseError, Request, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8};

use crate::config::BareLineEndings;
use crate::source::smtp::budget::{MemoryBudget, Reservation};

/// The smallest buffer a DATA phase starts with: small messages need no regrowth.
const FIRST_DATA_CAPACITY: usize = 64 * 1024;

/// Limits and identity for a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Greeting and EHLO name.
    pub hostname: String,
    /// Largest message, bytes.
    pub max_message_bytes: u64,
    /// Most recipients.
    pub max_recipients: usize,
    /// Longest line, bytes.
    pub max_line_bytes: usize,
    /// Accepted recipient domains (lower case); empty accepts any.
    pub accepted_domains: Vec<String>,
    /// Reject or normalise bare CR/LF in DATA.
    pub bare_line_endings: BareLineEndings,
    /// STARTTLS is offered (a certificate is configured).
    pub starttls: bool,
    /// Error replies allowed before the session is closed with 421.
    pub hard_error_limit: u32,
    /// Message bytes all sessions together may hold.
    pub memory: std::sync::Arc<MemoryBudget>,
}

/// What the server must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes.
    Reply(String),
    /// Make this message durable, then call [`Session::message_stored`] for the reply.
    Store(Envelope, Vec<u8>),
    /// Close the connection (after sending any reply before it).
    Close,
    /// Start TLS now (after sending the 220 before it), then call
    /// [`Session::tls_established`]. Input buffered before the handshake has been discarded.
    StartTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Data,
    /// Waiting for the server to store a message; input is buffered.
    Storing,
    Closed,
}

/// Why a DATA phase cannot be accepted.
#[derive(Debug, Clone, Copy)]
struct DataFlaws {
    bare: bool,
    oversize: bool,
    long_line: bool,
    /// The memory budget could not spare the bytes: 452, try later.
    no_memory: bool,
    /// The previous line ended in a real CRLF: only then can `.CRLF` end the data
    /// (`\n.\r\n` is the smuggling form that an LF-tolerant reader would end early).
    after_crlf: bool,
}

impl Default for DataFlaws {
    fn default() -> Self {
        Self {
            bare: false,
            oversize: false,
            long_line: false,
            no_memory: false,
            after_crlf: true,
        }
    }
}

/// One SMTP session.
pub struct Session {
    config: SessionConfig,
    state: State,
    input: VecDeque<u8>,
    helo: Option<String>,
    mail_from: Option<String>,
    eight_bit: bool,
    smtputf8: bool,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
    flaws: DataFlaws,
    /// What `data` (and the spool's copy of it) holds of the shared memory budget.
    reservation: Reservation,
    /// Error replies since the last delivered message.
    errors: u32,
    tls: bool,
}

impl Session {
    /// Starts a session; returns it and the greeting to send.
    pub fn new(config: SessionConfig) -> (Self, String) {
        let greeting = format!("220 {} ESMTP mukaika\r\n", config.hostname);
        let reservation = Reservation::new(std::sync::Arc::clone(&config.memory));
        let session = Session {
            config,
            state: State::Command,
            input: VecDeque::new(),
            helo: None,
            mail_from: None,
            eight_bit: false,
            smtputf8: false,
            rcpt_to: Vec::new(),
            data: Vec::new(),
            flaws: DataFlaws::default(),
            reservation,
            errors: 0,
            tls: false,
        };
        (session, greeting)
    }

    /// True while a DATA phase is open (the server uses the longer data timeout).
    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    /// Feeds bytes from the client and returns what to do, in order. Stops after a `Store`
    /// action until [`Session::message_stored`] is called.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.input.extend(bytes);
        let mut actions = Vec::new();
        loop {
            match self.state {
                State::Closed | State::Storing => break,
                State::Command => {
                    let Some(line) = self.take_line() else { break };
                    let before = actions.len();
                    match line {
                        Line::TooLong { .. } => {
                            actions.push(Action::Reply("500 5.5.2 Line too long\r\n".into()))
                        }
                        Line::Complete(line) => self.command(&line, &mut actions),
                    }
                    self.count_errors(&mut actions, before);
                }
                State::Data => {
                    let Some(line) = self.take_line() else { break };
                    let before = actions.len();
                    if let Some(action) = self.data_line(line) {
                        actions.push(action);
                    }
                    self.count_errors(&mut actions, before);
                }
            }
            if matches!(
                actions.last(),
                Some(Action::Close) | Some(Action::Store(..))
            ) {
                break;
            }
        }
        actions
    }

    /// Counts the error replies among `actions[from..]`; at the limit, closes with 421.
    fn count_errors(&mut self, actions: &mut Vec<Action>, from: usize) {
        let errors = actions[from..]
            .iter()
            .filter(|a| matches!(a, Action::Reply(r) if r.starts_with(['4', '5'])))
            .count();
        if errors == 0 {
            return;
        }
        self.errors = self
            .errors
            .saturating_add(u32::try_from(errors).unwrap_or(u32::MAX));
        if self.errors >= self.config.hard_error_limit && self.state != State::Closed {
            tracing::info!(errors = self.errors, "too many errors; closing the session");
            actions.push(Action::Reply(
                "421 4.7.0 Too many errors, closing connection\r\n".into(),
            ));
            self.state = State::Closed;
            actions.push(Action::Close);
        }
    }

    /// The TLS handshake finished: RFC 3207 says to forget everything learnt before it, so the
    /// client must say EHLO again.
    pub fn tls_established(&mut self) {
        self.tls = true;
        self.helo = None;
        self.reset_transaction();
        self.input.clear();
        self.state = State::Command;
    }

    /// The server stored the message (`Ok(queue_id)`) or could not (`Err(reply)`, a 4xx/5xx
    /// reply line). Returns the reply; buffered pipelined input is processed by the next `feed`.
    pub fn message_stored(&mut self, result: Result<String, String>) -> String {
        self.state = State::Command;
        self.reset_transaction();
        match result {
            Ok(id) => {
                // Postfix's rule: the error limit counts errors made without delivering mail.
                self.errors = 0;
                format!("250 2.0.0 Ok: queued as {id}\r\n")
            }
            Err(reply) => reply,
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.data = Vec::new();
        self.reservation.release();
        self.flaws = DataFlaws::default();
        self.eight_bit = false;
        self.smtputf8 = false;
    }

    /// Takes one line (with its terminator) from the input, or reports it too long. In
    /// command mode a line ends at LF; in DATA mode too — whether its ending was a proper
    /// CRLF is judged by the caller.
    fn take_line(&mut self) -> Option<Line> {
        let pos = self.input.iter().position(|&b| b == b'\n');
        match pos {
            Some(p) if p < self.config.max_line_bytes + 2 || self.state == State::Data => {
                let line: Vec<u8> = self.input.drain(..=p).collect();
                if line.len() > self.config.max_line_bytes + 2 {
                    return Some(Line::TooLong {
                        crlf: line.ends_with(b"\r\n"),
                    });
                }
                Some(Line::Complete(line))
            }
            Some(p) => {
                let crlf = p > 0 && self.input.get(p - 1) == Some(&b'\r');
                self.input.drain(..=p);
                Some(Line::TooLong { crlf })
            }
            None if self.input.len() > self.config.max_line_bytes + 2 => {
                // Keep the tail: a CR at the very end may be half of a CRLF.
                let keep = usize::from(self.input.back() == Some(&b'\r'));
                let cut = self.input.len() - keep;
                self.input.drain(..cut);
                Some(Line::TooLong { crlf: false })
            }
            None => None,
        }
    }

    fn data_line(&mut self, line: Line) -> Option<Action> {
        let line = match line {
            Line::TooLong { crlf } => {
                self.flaws.long_line = true;
                self.flaws.after_crlf = crlf;
                return None;
            }
            Line::Complete(l) => l,
        };
        let proper = line.ends_with(b"\r\n");
        let body = if proper {
            &line[..line.len() - 2]
        } else {
            &line[..line.len() - 1]
        };
        let bare_cr_inside = body.contains(&b'\r');
        if proper && body == b"." && self.flaws.after_crlf {
            return Some(self.end_of_data());
        }
        // A line that ends in a real CRLF puts the stream right after a CRLF, whatever bare CR
        // it held inside: `hello\rworld\r\n.\r\n` does contain CRLF.CRLF, and a reader that
        // did not end there would leave the client waiting for a reply that never comes.
        self.flaws.after_crlf = proper;
        if !proper || bare_cr_inside {
            self.flaws.bare = true;
        }
        // Dot-stuffing: a leading dot was doubled by the client.
        let content = body.strip_prefix(b".").unwrap_or(body);
        if self.data.len() as u64 + content.len() as u64 + 2 > self.config.max_message_bytes {
            self.flaws.oversize = true;
            self.drop_data();
        }
        // Nothing is kept once the message is known to be refused.
        let mut refused = self.flaws.oversize
            || self.flaws.no_memory
            || (self.flaws.bare && self.config.bare_line_endings == BareLineEndings::Reject);
        if !refused {
            // Normalising turns each bare CR into CRLF: one byte more each.
            let extra = if self.config.bare_line_endings == BareLineEndings::Normalize {
                content.iter().filter(|&&b| b == b'\r').count()
            } else {
                0
            };
            if !self.make_room(content.len() + extra + 2) {
                tracing::warn!(
                    budget_used = self.config.memory.used(),
                    "SMTP memory budget exhausted; this message will get 452"
                );
                self.flaws.no_memory = true;
                self.drop_data();
                refused = true;
            }
        }
        if !refused {
            if self.config.bare_line_endings == BareLineEndings::Normalize && bare_cr_inside {
                for chunk in content.split(|&b| b == b'\r') {
                    self.data.extend_from_slice(chunk);
                    self.data.extend_from_slice(b"\r\n");
                }
                self.data.truncate(self.data.len() - 2);
            } else {
                self.data.extend_from_slice(content);
            }
            self.data.extend_from_slice(b"\r\n");
        }
        None
    }

    /// Forgets the message bytes and gives their memory back.
    fn drop_data(&mut self) {
        self.data = Vec::new();
        self.reservation.release();
    }

    /// Makes room in `data` for `add` more bytes, taking the memory from the budget first.
    /// Capacity doubles (from [`FIRST_DATA_CAPACITY`], never past the size limit unless one
    /// line needs it) so a large message costs a few budget checks, not one per line. Each
    /// byte of capacity is taken twice: the spool writes the message through a copy of it.
    /// False when the budget cannot spare it; nothing is allocated then.
    fn make_room(&mut self, add: usize) -> bool {
        let need = self.data.len().saturating_add(add);
        let capacity = self.data.capacity();
        if need <= capacity {
            return true;
        }
        let cap_limit = usize::try_from(self.config.max_message_bytes).unwrap_or(usize::MAX);
        let target = need.max(
            capacity
                .saturating_mul(2)
                .max(FIRST_DATA_CAPACITY)
                .min(cap_limit),
        );
        let want = (target as u64).saturating_mul(2);
        let held = self.reservation.held();
        if want > held && !self.reservation.grow(want - held) {
            return false;
        }
        self.data.reserve_exact(target - self.data.len());
        true
    }

    fn end_of_data(&mut self) -> Action {
        let flaws = self.flaws;
        let reply = if flaws.oversize {
            Some("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
        } else if flaws.long_line {
            Some("500 5.5.2 Line too long\r\n")
        } else if flaws.bare && self.config.bare_line_endings == BareLineEndings::Reject {
            Some("550 5.5.2 Bare CR or LF in message; line endings must be CRLF\r\n")
        } else if flaws.no_memory {
            Some("452 4.3.1 Insufficient system storage\r\n")
        } else {
            None
        };
        if let Some(reply) = reply {
            self.state = State::Command;
            self.reset_transaction();
            return Action::Reply(reply.into());
        }
        self.state = State::Storing;
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.mail_from.clone().unwrap_or_default(),
            rcpt_to: self.rcpt_to.clone(),
            eight_bit: self.eight_bit,
            smtputf8: self.smtputf8,
        };
        Action::Store(envelope, std::mem::take(&mut self.data))
    }

    fn command(&mut self, line: &[u8], actions: &mut Vec<Action>) {
        let mut reply = |s: &str| actions.push(Action::Reply(s.to_string()));
        // Commands must end in CRLF too; a bare LF here is tolerated (it cannot smuggle
        // anything), but a NUL or bare CR inside the command is not.
        let mut normalized = line.to_vec();
        if normalized.ends_with(b"\r\n") {
            normalized.truncate(normalized.len() - 2);
            normalized.push(b'\n');
        }
        if normalized[..normalized.len() - 1]
            .iter()
            .any(|&b| b == b'\r' || b == 0)
        {
            reply("500 5.5.2 Syntax error\r\n");
            return;
        }
        let request = Request::parse(&mut normalized.iter());
        match request {
            Ok(Request::Ehlo { host }) => {
                self.helo = Some(host.to_string());
                self.reset_transaction();
                let starttls = if self.config.starttls && !self.tls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                reply(&format!(
                    "250-{} greets {}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n{starttls}250 ENHANCEDSTATUSCODES\r\n",
                    self.config.hostname, host, self.config.max_message_bytes
                ));
            }
            Ok(Request::Helo { host }) => {
                self.helo = Some(host.to_string());
                self.reset_transaction();
                reply(&format!("250 {}\r\n", self.config.hostname));
            }
            Ok(Request::Mail { from }) => {
                if self.helo.is_none() {
                    reply("503 5.5.1 Say EHLO first\r\n");
                } else if self.mail_from.is_some() {
                    reply("503 5.5.1 Sender already given\r\n");
                } else if from.size as u64 > self.config.max_message_bytes {
                    reply("552 5.3.4 Message size exceeds fixed maximum message size\r\n");
                } else if (from.size as u64).saturating_mul(2) > self.config.memory.available() {
                    // RFC 1870: a declared size that cannot be held now is a temporary 452.
                    reply("452 4.3.1 Insufficient system storage\r\n");
                } else if !from.address.is_ascii() && from.flags & MAIL_SMTPUTF8 == 0 {
                    reply("553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
                } else {
                    self.mail_from = Some(from.address.to_string());
                    self.eight_bit = from.flags & MAIL_BODY_8BITMIME != 0;
                    self.smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
                    reply("250 2.1.0 Ok\r\n");
                }
            }
            Ok(Request::Rcpt { to }) => {
                let address = to.address.to_string();
                let domain = address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                if self.mail_from.is_none() {
                    reply("503 5.5.1 Need MAIL before RCPT\r\n");
                } else if !address.is_ascii() && !self.smtputf8 {
                    reply("553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
                } else if self.rcpt_to.len() >= self.config.max_recipients {
                    reply("452 4.5.3 Too many recipients\r\n");
                } else if !self.config.accepted_domains.is_empty()
                    && !self.config.accepted_domains.contains(&domain)
                {
                    reply("550 5.7.1 Relaying denied\r\n");
                } else {
                    self.rcpt_to.push(address);
                    reply("250 2.1.5 Ok\r\n");
                }
            }
            Ok(Request::Data) => {
                if self.mail_from.is_none() {
                    reply("503 5.5.1 Need MAIL command\r\n");
                } else if self.rcpt_to.is_empty() {
                    reply("554 5.5.1 No valid recipients\r\n");
                } else {
                    self.state = State::Data;
                    reply("354 End data with <CR><LF>.<CR><LF>\r\n");
                }
            }
            Ok(Request::Rset) => {
                self.reset_transaction();
                reply("250 2.0.0 Ok\r\n");
            }
            Ok(Request::Noop { .. }) => reply("250 2.0.0 Ok\r\n"),
            Ok(Request::Quit) => {
                reply("221 2.0.0 Bye\r\n");
                self.state = State::Closed;
                actions.push(Action::Close);
            }
            Ok(Request::Vrfy { .. }) => reply("252 2.5.0 VRFY is disabled\r\n"),
            Ok(Request::Help { .. }) => reply("214 2.0.0 See RFC 5321\r\n"),
            Ok(Request::StartTls) if !self.config.starttls => {
                reply("502 5.5.1 STARTTLS is not configured\r\n")
            }
            Ok(Request::StartTls) if self.tls => reply("503 5.5.1 TLS is already active\r\n"),
            Ok(Request::StartTls) => {
                reply("220 2.0.0 Ready to start TLS\r\n");
                // Anything the client sent after STARTTLS in the same packet was plaintext
                // meant to run inside TLS (CVE-2011-0411 command injection): drop it.
                self.input.clear();
                actions.push(Action::StartTls);
            }
            Ok(Request::Bdat { .. }) => reply("502 5.5.1 CHUNKING is not offered\r\n"),
            Ok(_) => reply("502 5.5.1 Command not implemented\r\n"),
            Err(ParseError::UnknownCommand) => reply("500 5.5.1 Unknown command\r\n"),
            Err(ParseError::InvalidSenderAddress) => {
                reply("501 5.1.7 Bad sender address syntax\r\n")
            }
            Err(ParseError::InvalidRecipientAddress) => {
                reply("501 5.1.3 Bad recipient address syntax\r\n")
            }
            Err(ParseError::UnsupportedParameter { .. }) => {
                reply("555 5.5.4 Unsupported parameter\r\n")
            }
            Err(_) => reply("501 5.5.2 Syntax error\r\n"),
        }
    }
}

enum Line {
    Complete(Vec<u8>),
    /// Over the limit; `crlf` when the (discarded) line did end in CRLF.
    TooLong {
        crlf: bool,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: "gw.test".into(),
            max_message_bytes: 10_000,
            max_recipients: 3,
            max_line_bytes: 1000,
            accepted_domains: vec!["city.example".into()],
            bare_line_endings: BareLineEndings::Reject,
            starttls: false,
            hard_error_limit: 20,
            memory: MemoryBudget::new(1 << 30),
        }
    }

    /// Runs a transcript: feeds the client bytes, storing every message as `Q1`, `Q2`…;
    /// returns the replies and the stored messages.
    fn run(config: SessionConfig, client: &[u8]) -> (String, Vec<(Envelope, Vec<u8>)>) {
        let (mut s, greeting) = Session::new(config);
        let mut out = greeting;
        let mut stored = Vec::new();
        let mut actions = s.feed(client);
        loop {
            let mut again = false;
            for a in actions.drain(..) {
                match a {
                    Action::Reply(r) => out.push_str(&r),
                    Action::Store(e, d) => {
                        stored.push((e, d));
                        out.push_str(&s.message_stored(Ok(format!("Q{}", stored.len()))));
                        again = true;
                    }
                    Action::Close | Action::StartTls => {}
                }
            }
            if !again {
                break;
            }
            actions = s.feed(b"");
        }
        (out, stored)
    }

    fn codes(replies: &str) -> Vec<&str> {
        replies
            .split("\r\n")
            .filter(|l| l.len() >= 3 && l.as_bytes()[3] != b'-')
            .map(|l| &l[..3])
            .collect()
    }

    const HEAD: &[u8] =
        b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@city.example>\r\nDATA\r\n";

    #[test]
    fn accepts_a_message_and_unstuffs_dots() {
        let mut t = HEAD.to_vec();
        t.extend_from_slice(b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n");
        let (out, stored) = run(config(), &t);
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"],
            "{out}"
        );
        assert!(out.contains("250-SIZE 10000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES"));
        assert_eq!(stored[0].1, b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
        assert_eq!(stored[0].0.rcpt_to, ["b@city.example"]);
    }

    #[test]
    fn pipelined_commands_wait_for_the_stored_reply() {
        let mut t = HEAD.to_vec();
        t.extend_from_slice(b"one\r\n.\r\nMAIL FROM:<c@sender.test>\r\nRCPT TO:<d@city.example>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n");
        let (out, stored) = run(config(), &t);
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"],
            "{out}"
        );
        assert_eq!(stored.len(), 2);
        assert!(out.contains("queued as Q1") && out.contains("queued as Q2"));
    }

    #[test]
    fn smuggling_variants_never_end_or_split_a_message() {
        for smuggle in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r\n.\r\r\n",
            b"\n.\r\n",
            b"\r\n.\n",
        ] {
            let mut t = HEAD.to_vec();
            t.extend_from_slice(b"first line");
            t.extend_from_slice(smuggle);
            t.extend_from_slice(b"MAIL FROM:<evil@sender.test>\r\nRCPT TO:<victim@city.example>\r\nDATA\r\nforged\r\n.\r\n");
            let (out, stored) = run(config(), &t);
            assert!(stored.is_empty(), "{smuggle:?} stored something: {out}");
            assert_eq!(codes(&out).last(), Some(&"550"), "{smuggle:?}: {out}");
            assert_eq!(
                codes(&out).iter().filter(|c| **c == "354").count(),
                1,
                "the smuggled DATA never started: {out}"
            );
        }
    }

    #[test]
    fn normalises_bare_line_endings_when_configured() {
        let mut t = HEAD.to_vec();
        t.extend_from_slice(b"a\nb\rc\r\n.\n.\r\nend\r\n.\r\n");
        let (out, stored) = run(
            SessionConfig {
                bare_line_endings: BareLineEndings::Normalize,
                ..config()
            },
            &t,
        );
        assert_eq!(codes(&out).last(), Some(&"250"), "{out}");
        // One message, normalised. Neither the bare ".\n" nor the ".\r\n" after it ended the
        // data (only a literal CRLF.CRLF does, as in Postfix's normalize mode); both stayed
        // data and, like every data line, lost their leading dot to unstuffing.
        assert_eq!(stored[0].1, b"a\r\nb\r\nc\r\n\r\n\r\nend\r\n");
    }

    #[test]
    fn oversized_data_is_drained_then_refused_and_the_session_goes_on() {
        let mut t = HEAD.to_vec();
        for _ in 0..300 {
            t.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        t.extend_from_slice(b".\r\nNOOP\r\n");
        let (out, stored) = run(config(), &t);
        assert!(stored.is_empty());
        assert_eq!(codes(&out)[5..], ["552", "250"], "{out}");
    }

    #[test]
    fn refuses_oversize_declared_at_mail_relaying_and_too_many_recipients() {
        let (out, _) = run(config(), b"EHLO c\r\nMAIL FROM:<a@s.test> SIZE=20000\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<1@city.example>\r\nRCPT TO:<2@city.example>\r\nRCPT TO:<3@city.example>\r\nRCPT TO:<4@city.example>\r\n");
        assert_eq!(
            codes(&out),
            ["220", "250", "552", "250", "550", "250", "250", "250", "452"],
            "{out}"
        );
        assert!(out.contains("550 5.7.1 Relaying denied"));
    }

    #[test]
    fn enforces_command_order_and_answers_every_verb() {
        let (out, _) = run(config(), b"MAIL FROM:<a@s.test>\r\nHELO c\r\nRCPT TO:<b@city.example>\r\nDATA\r\nVRFY root\r\nNOOP\r\nRSET\r\nHELP\r\nSTARTTLS\r\nFOO\r\nQUIT\r\nNOOP\r\n");
        assert_eq!(
            codes(&out),
            ["220", "503", "250", "503", "503", "252", "250", "250", "214", "502", "500", "221"],
            "{out}"
        );
    }

    #[test]
    fn starttls_discards_plaintext_sent_after_it() {
        let (mut s, _) = Session::new(SessionConfig {
            starttls: true,
            ..config()
        });
        let a = s.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@s.test>\r\n");
        assert!(matches!(&a[0], Action::Reply(r) if r.contains("250-STARTTLS")));
        assert_eq!(
            a[1],
            Action::Reply("220 2.0.0 Ready to start TLS\r\n".into())
        );
        assert_eq!(a[2], Action::StartTls);
        assert_eq!(a.len(), 3);
        s.tls_established();
        let after = s.feed(b"MAIL FROM:<a@s.test>\r\n");
        assert_eq!(
            after,
            [Action::Reply("503 5.5.1 Say EHLO first\r\n".into())],
            "nothing from before the handshake survives"
        );
        let again = s.feed(b"EHLO c\r\nSTARTTLS\r\n");
        assert!(matches!(&again[0], Action::Reply(r) if !r.contains("STARTTLS")));
        assert_eq!(
            again[1],
            Action::Reply("503 5.5.1 TLS is already active\r\n".into())
        );
    }

    #[test]
    fn long_lines_are_refused_in_commands_and_data() {
        let mut t = b"EHLO c\r\n".to_vec();
        t.extend(std::iter::repeat_n(b'A', 3000));
        t.extend_from_slice(b"\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@city.example>\r\nDATA\r\n");
        t.extend(std::iter::repeat_n(b'B', 3000));
        t.extend_from_slice(b"\r\n.\r\n");
        let (out, stored) = run(config(), &t);
        assert!(stored.is_empty());
        assert_eq!(
            codes(&out),
            ["220", "250", "500", "250", "250", "354", "500"],
            "{out}"
        );
    }

    #[test]
    fn a_bare_cr_inside_data_is_refused_at_the_real_end_of_data() {
        // Issue #16 D: the `.` after a line holding a bare CR was taken as data, and the client
        // waited for a reply until the data timeout.
        let mut t = HEAD.to_vec();
        t.extend_from_slice(b"hello\rworld\r\n.\r\nNOOP\r\n");
        let (out, stored) = run(config(), &t);
        assert!(stored.is_empty(), "{out}");
        assert_eq!(codes(&out)[4..], ["354", "550", "250"], "{out}");
        assert!(out.contains("550 5.5.2 Bare CR"), "{out}");
    }

    #[test]
    fn non_ascii_addresses_need_smtputf8() {
        let (out, _) = run(
            config(),
            "EHLO c\r\nMAIL FROM:<山田@送信.test>\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<総務@city.example>\r\nRSET\r\nMAIL FROM:<山田@送信.test> SMTPUTF8\r\nRCPT TO:<総務@city.example>\r\n"
                .as_bytes(),
        );
        assert_eq!(
            codes(&out),
            ["220", "250", "553", "250", "553", "250", "250", "250"],
            "{out}"
        );
        assert!(out.contains("553 5.6.7 "), "{out}");
    }

    #[test]
    fn too_many_errors_close_the_session_with_421() {
        let (out, _) = run(config(), &b"FOO\r\n".repeat(30));
        let c = codes(&out);
        assert_eq!(c.len(), 1 + 20 + 1, "{out}");
        assert!(c[1..21].iter().all(|c| *c == "500"), "{out}");
        assert_eq!(c[21], "421", "{out}");
        assert!(out.ends_with("421 4.7.0 Too many errors, closing connection\r\n"));
    }

    #[test]
    fn a_delivered_message_resets_the_error_count() {
        let mut t = b"FOO\r\n".repeat(19);
        t.extend_from_slice(HEAD);
        t.extend_from_slice(b"x\r\n.\r\n");
        t.extend_from_slice(&b"FOO\r\n".repeat(19));
        t.extend_from_slice(b"QUIT\r\n");
        let (out, stored) = run(config(), &t);
        assert_eq!(stored.len(), 1);
        assert_eq!(codes(&out).last(), Some(&"221"), "{out}");
    }

    #[test]
    fn data_past_the_memory_budget_gets_452_and_gives_the_memory_back() {
        let budget = MemoryBudget::new(300_000);
        let big = SessionConfig {
            max_message_bytes: 1_000_000,
            memory: Arc::clone(&budget),
            ..config()
        };
        // A first session holds part of the budget with an unfinished message.
        let (mut first, _) = Session::new(big.clone());
        first.feed(HEAD);
        first.feed(&b"0123456789012345678901234567890123456789\r\n".repeat(1000));
        let held = budget.used();
        assert!(held > 0 && held <= 300_000, "{held}");
        // A second one cannot get what it needs: its message is drained and refused with 452.
        let mut t = HEAD.to_vec();
        t.extend_from_slice(&b"0123456789012345678901234567890123456789\r\n".repeat(3000));
        t.extend_from_slice(b".\r\nNOOP\r\n");
        let (out, stored) = run(big.clone(), &t);
        assert!(stored.is_empty());
        assert_eq!(codes(&out)[4..], ["354", "452", "250"], "{out}");
        assert!(out.contains("452 4.3.1 "), "{out}");
        assert_eq!(
            budget.used(),
            held,
            "the refused session gave everything back"
        );
        // A declared size the budget cannot hold is refused at MAIL (RFC 1870).
        let (out, _) = run(
            big.clone(),
            b"EHLO c\r\nMAIL FROM:<a@s.test> SIZE=200000\r\n",
        );
        assert_eq!(codes(&out), ["220", "250", "452"], "{out}");
        // The first message finishes and is stored; then its memory is free again.
        let actions = first.feed(b".\r\n");
        assert!(matches!(actions[..], [Action::Store(..)]), "{actions:?}");
        assert_eq!(budget.used(), held, "held until the spool has written it");
        first.message_stored(Ok("Q1".into()));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn input_split_anywhere_gives_the_same_transcript() {
        let mut t = HEAD.to_vec();
        t.extend_from_slice(b"x\r\n.y\r\n.\r\nQUIT\r\n");
        let (whole, _) = run(config(), &t);
        for split in 1..t.len() {
            let (mut s, mut out) = Session::new(config());
            for chunk in [&t[..split], &t[split..]] {
                for a in s.feed(chunk) {
                    match a {
                        Action::Reply(r) => out.push_str(&r),
                        Action::Store(..) => {
                            out.push_str(&s.message_stored(Ok("Q1".into())));
                            for a in s.feed(b"") {
                                if let Action::Reply(r) = a {
                                    out.push_str(&r);
                                }
                            }
                        }
                        Action::Close | Action::StartTls => {}
                    }
                }
            }
            assert_eq!(out, whole, "split at {split}");
        }
    }
}
