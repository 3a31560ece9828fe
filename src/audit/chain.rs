//! The on-disk record format and its hash chain.
//!
//! Owns: turning an event into one JSON line and back, and the checks a line must pass.
//! Format: `{"seq":N,"ts":"…","node":"…","prev":"<sha256 of the previous record>","event":{…},"hash":"<sha256 of everything before ,"hash">","mac":"<HMAC-SHA256(key, hash)>"}`.
//! The hash covers the exact bytes written (the line up to `,"hash"` plus the closing brace),
//! so any edited byte changes it; the optional HMAC means rewriting the whole chain needs the
//! key.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::AuditEvent;

/// The `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a str,
    node: &'a str,
    prev: &'a str,
    event: &'a AuditEvent,
}

#[derive(Deserialize)]
struct OwnedBody {
    seq: u64,
    ts: String,
    node: String,
    prev: String,
    event: serde_json::Value,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Sequence number (1, 2, 3… across files).
    pub seq: u64,
    /// UTC timestamp, RFC 3339 with milliseconds.
    pub ts: String,
    /// The gateway node that wrote it.
    pub node: String,
    /// Hash of the previous record.
    pub prev: String,
    /// The event, as JSON (so that verify and search read any version's events).
    pub event: serde_json::Value,
    /// This record's hash.
    pub hash: String,
}

/// Why a line failed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Not a complete record (torn write or cut file).
    Torn,
    /// The bytes do not hash to the stored hash: edited.
    Edited,
    /// The HMAC does not match (or is missing while a key is configured).
    BadMac,
}

/// Encodes one record; returns the line (with its newline) and its hash.
pub fn encode(
    seq: u64,
    ts: &str,
    node: &str,
    prev: &str,
    event: &AuditEvent,
    key: Option<&[u8]>,
) -> (String, String) {
    let body = serde_json::to_string(&Body {
        seq,
        ts,
        node,
        prev,
        event,
    })
    .unwrap_or_else(|_| "{}".into());
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let mut line = String::with_capacity(body.len() + 160);
    line.push_str(&body[..body.len() - 1]);
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push('"');
    if let Some(key) = key {
        line.push_str(",\"mac\":\"");
        line.push_str(&mac(key, &hash));
        line.push('"');
    }
    line.push_str("}\n");
    (line, hash)
}

fn mac(key: &[u8], hash: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new_from_slice(b"\0").expect("hmac"));
    m.update(hash.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Decodes and checks one line (without its newline).
pub fn decode(line: &str, key: Option<&[u8]>) -> Result<Record, LineProblem> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let inner = line.strip_suffix('}').ok_or(LineProblem::Torn)?;
    let at = inner.rfind(",\"hash\":\"").ok_or(LineProblem::Torn)?;
    let tail = &inner[at + 9..];
    // `get`, not indexing: a tampered line may put a multi-byte character anywhere.
    let (Some(stored), Some("\""), Some(rest)) = (tail.get(..64), tail.get(64..65), tail.get(65..))
    else {
        return Err(LineProblem::Torn);
    };
    let stored_mac = match rest {
        "" => None,
        r => Some(
            r.strip_prefix(",\"mac\":\"")
                .and_then(|m| m.strip_suffix('"'))
                .ok_or(LineProblem::Torn)?,
        ),
    };
    let body = format!("{}}}", &inner[..at]);
    let parsed: OwnedBody = serde_json::from_str(&body).map_err(|_| LineProblem::Edited)?;
    if hex::encode(Sha256::digest(body.as_bytes())) != stored {
        return Err(LineProblem::Edited);
    }
    if let Some(key) = key {
        if stored_mac != Some(mac(key, stored).as_str()) {
            return Err(LineProblem::BadMac);
        }
    }
    Ok(Record {
        seq: parsed.seq,
        ts: parsed.ts,
        node: parsed.node,
        prev: parsed.prev,
        event: parsed.event,
        hash: stored.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_tampered_with_a_multibyte_character_is_torn_not_a_panic() {
        let line = format!("{{\"seq\":1,\"hash\":\"{}\u{3042}b\"}}", "a".repeat(63));
        assert!(matches!(
            super::decode(&line, None),
            Err(super::LineProblem::Torn)
        ));
    }
}
