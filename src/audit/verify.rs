//! `mukaika audit verify` and `mukaika audit search`.
//!
//! Owns: walking every file of the chain in order and reporting the first broken link, gap,
//! reordering, truncation, edited record or HMAC mismatch with its file and line; and reading
//! records back for search.
//! Invariant: verification trusts nothing in the files — every line's hash is recomputed from
//! its bytes. A torn last line counts as recovered only if the next file starts with a
//! `recovery` record naming that exact line and its SHA-256.

use std::fs;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::chain::{self, LineProblem, Record, GENESIS};
use super::log::list_files;
use super::AuditError;

/// The result of a verification run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Records checked.
    pub records: u64,
    /// The first problem found (verification stops there).
    pub problem: Option<Problem>,
    /// Things worth knowing that do not break the chain (recovered torn lines).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when the chain is intact.
    pub fn intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// A break in the chain, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: u64,
    /// `edited`, `broken-link`, `gap`, `reordered`, `bad-timestamp`, `truncated`, `bad-mac`.
    pub kind: String,
    /// Details.
    pub detail: String,
}

/// Verifies every file in `dir` (from the first file of day `from`, `YYYYMMDD`, if given).
///
/// # Errors
/// The directory or a file cannot be read.
pub fn verify(
    dir: &Path,
    key: Option<&[u8]>,
    from: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    let mut files = list_files(dir)?;
    if let Some(day) = from {
        files.retain(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.get(6..14))
                .is_some_and(|d| d >= day)
        });
    }
    let mut report = VerifyReport {
        files: files.len(),
        ..VerifyReport::default()
    };
    let mut prev: Option<(u64, String, u64)> = None;
    // Heads removed by retention: (last removed seq, its hash) from every retention record.
    let expired_heads = retention_heads(&files, key)?;
    // A torn line waiting for the recovery record that must follow it.
    let mut torn: Option<(String, u64, String)> = None;
    for (fi, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = fs::read(path).map_err(|e| AuditError::io(path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let complete = text.is_empty() || text.ends_with('\n');
        for (n, line) in lines.iter().enumerate() {
            let line_no = n as u64 + 1;
            let fail = |kind: &str, detail: String| Problem {
                file: name.clone(),
                line: line_no,
                kind: kind.into(),
                detail,
            };
            let record = match chain::decode(line, key) {
                Ok(r) => r,
                Err(LineProblem::Torn)
                    if n + 1 == lines.len() && (!complete || fi + 1 < files.len()) =>
                {
                    torn = Some((
                        name.clone(),
                        line_no,
                        hex::encode(Sha256::digest(line.as_bytes())),
                    ));
                    continue;
                }
                Err(LineProblem::Torn) => {
                    report.problem = Some(fail("truncated", "not a complete record".into()));
                    return Ok(report);
                }
                Err(LineProblem::Edited) => {
                    report.problem = Some(fail(
                        "edited",
                        "the record's bytes do not match its hash".into(),
                    ));
                    return Ok(report);
                }
                Err(LineProblem::BadMac) => {
                    report.problem = Some(fail(
                        "bad-mac",
                        "the HMAC does not match (wrong key, or the chain was rewritten)".into(),
                    ));
                    return Ok(report);
                }
            };
            if let Some((t_file, t_line, t_sha)) = torn.take() {
                let named = record.event.get("type").and_then(|t| t.as_str()) == Some("recovery")
                    && record.event.get("file").and_then(|v| v.as_str()) == Some(t_file.as_str())
                    && record.event.get("line").and_then(|v| v.as_u64()) == Some(t_line)
                    && record.event.get("sha256").and_then(|v| v.as_str()) == Some(t_sha.as_str());
                if !named {
                    report.problem = Some(Problem {
                        file: t_file,
                        line: t_line,
                        kind: "truncated".into(),
                        detail: "an incomplete record that no recovery record accounts for".into(),
                    });
                    return Ok(report);
                }
                report.notes.push(format!("{t_file}:{t_line}: torn by a crash while writing; recovered at {name}:{line_no}"));
            }
            if prev.is_none() && record.seq != 1 && from.is_none() {
                let accounted = expired_heads
                    .iter()
                    .any(|(seq, hash)| *seq + 1 == record.seq && *hash == record.prev);
                if !accounted {
                    report.problem = Some(Problem {
                        file: name.clone(),
                        line: line_no,
                        kind: "missing-head".into(),
                        detail: format!("the chain starts at record {} and no retention record accounts for the ones before", record.seq),
                    });
                    return Ok(report);
                }
                report.notes.push(format!(
                    "records 1..={} were removed by retention (recorded in the log)",
                    record.seq - 1
                ));
            }
            // The writer only writes readable times: one that is not was written by someone
            // else (the chain without a key proves only the order of records).
            let Some(at) = crate::clock::parse_rfc3339(&record.ts) else {
                report.problem = Some(fail(
                    "bad-timestamp",
                    format!("timestamp {:?} is not an RFC 3339 time", record.ts),
                ));
                return Ok(report);
            };
            if let Some(problem) = check_link(&record, at, prev.as_ref(), &name, line_no) {
                report.problem = Some(problem);
                return Ok(report);
            }
            prev = Some((record.seq, record.hash.clone(), at));
            report.records += 1;
        }
    }
    if let Some((file, line, _)) = torn {
        if complete_final(&files) {
            report.problem = Some(Problem {
                file,
                line,
                kind: "truncated".into(),
                detail: "an incomplete record at the end of a file".into(),
            });
        } else {
            report.notes.push(format!("{file}:{line}: the last record is being written or was torn by a crash; it will be named by a recovery record when mukaika starts"));
        }
    }
    Ok(report)
}

/// `(last_seq, last_hash)` of every `retention_expired` record (they name removed heads).
fn retention_heads(
    files: &[std::path::PathBuf],
    key: Option<&[u8]>,
) -> Result<Vec<(u64, String)>, AuditError> {
    let mut out = Vec::new();
    for path in files {
        let text = fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
        for line in text.lines() {
            if !line.contains("\"retention_expired\"") {
                continue;
            }
            if let Ok(r) = chain::decode(line, key) {
                if let (Some(seq), Some(hash)) = (
                    r.event.get("last_seq").and_then(|v| v.as_u64()),
                    r.event.get("last_hash").and_then(|v| v.as_str()),
                ) {
                    out.push((seq, hash.to_string()));
                }
            }
        }
    }
    Ok(out)
}

/// True when the last file ends with a newline (a torn line there is then not the tail).
fn complete_final(files: &[std::path::PathBuf]) -> bool {
    files
        .last()
        .and_then(|f| fs::read(f).ok())
        .is_some_and(|b| b.is_empty() || b.ends_with(b"\n"))
}

fn check_link(
    record: &Record,
    at: u64,
    prev: Option<&(u64, String, u64)>,
    file: &str,
    line: u64,
) -> Option<Problem> {
    let fail = |kind: &str, detail: String| {
        Some(Problem {
            file: file.into(),
            line,
            kind: kind.into(),
            detail,
        })
    };
    match prev {
        None => {
            if record.seq == 1 && record.prev != GENESIS {
                return fail(
                    "broken-link",
                    "the first record does not start the chain".into(),
                );
            }
            None
        }
        Some((seq, hash, ts)) => {
            if record.seq <= *seq {
                return fail("reordered", format!("sequence {} after {seq}", record.seq));
            }
            if record.seq != seq + 1 {
                return fail(
                    "gap",
                    format!(
                        "sequence jumps from {seq} to {} ({} record(s) missing)",
                        record.seq,
                        record.seq - seq - 1
                    ),
                );
            }
            if record.prev != *hash {
                return fail(
                    "broken-link",
                    format!(
                        "prev {} does not match the hash of record {seq}",
                        &record.prev[..16.min(record.prev.len())]
                    ),
                );
            }
            if at < *ts {
                return fail(
                    "reordered",
                    format!("timestamp {} is earlier than the record before", record.ts),
                );
            }
            None
        }
    }
}

/// Filters for `audit search`. Text filters match anywhere in the event's string fields.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// A Message-ID, queue ID or item ID.
    pub id: Option<String>,
    /// Envelope sender or From address.
    pub sender: Option<String>,
    /// A recipient.
    pub recipient: Option<String>,
    /// A SHA-256 (prefix allowed).
    pub sha256: Option<String>,
    /// A verdict (`sanitized`, `quarantined`, `delivered`…).
    pub verdict: Option<String>,
    /// Records at or after this RFC 3339 time (prefix allowed, e.g. `2026-11-27`).
    pub since: Option<String>,
    /// Records before this RFC 3339 time.
    pub until: Option<String>,
    /// An account that acted or was acted on (`by`, `user`).
    pub user: Option<String>,
}

/// Returns the records that match every given filter, in chain order.
///
/// # Errors
/// The directory or a file cannot be read.
pub fn search(dir: &Path, filter: &Search) -> Result<Vec<Record>, AuditError> {
    let mut out = Vec::new();
    for path in list_files(dir)? {
        let text = fs::read_to_string(&path).map_err(|e| AuditError::io(&path, e))?;
        for line in text.lines() {
            // Search reads; verify judges. Unreadable lines are skipped here.
            let Ok(record) = chain::decode(line, None) else {
                continue;
            };
            if matches(&record, filter) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// Whether `r` passes every filter of `f` (the PostgreSQL copies are searched with it too).
pub(crate) fn matches(r: &Record, f: &Search) -> bool {
    let fields = |keys: &[&str]| -> Vec<String> {
        keys.iter()
            .filter_map(|k| r.event.get(*k))
            .flat_map(|v| match v {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect::<Vec<_>>(),
                other => other
                    .as_str()
                    .map(str::to_string)
                    .into_iter()
                    .collect::<Vec<_>>(),
            })
            .collect()
    };
    let has = |keys: &[&str], needle: &Option<String>, prefix: bool| match needle {
        None => true,
        Some(n) => fields(keys).iter().any(|v| {
            if prefix {
                v.starts_with(n.as_str())
            } else {
                v.contains(n.as_str())
            }
        }),
    };
    has(
        &[
            "queue_id",
            "message_id",
            "item_id",
            "mukaika_id",
            "origin_id",
            "request_id",
        ],
        &f.id,
        false,
    ) && has(&["mail_from", "from"], &f.sender, false)
        && has(&["rcpt_to", "to"], &f.recipient, false)
        && has(
            &["sha256", "input_sha256", "output_sha256"],
            &f.sha256,
            true,
        )
        && has(&["verdict", "outcome"], &f.verdict, false)
        && has(&["by", "user"], &f.user, false)
        && f.since.as_ref().is_none_or(|s| r.ts.as_str() >= s.as_str())
        && f.until.as_ref().is_none_or(|u| r.ts.as_str() < u.as_str())
}
