//! Copies of the audit records in the cluster's PostgreSQL (`[store] backend = "postgres"`).
//!
//! Owns: the table `audit_records` (one row per record of every node: node, seq, hash, prev,
//! time, event type and the exact JSON line the local log holds), the [`Shipper`] that copies
//! a node's durable records there in batches, search across every node's copies
//! ([`search`]), and checking the copies ([`verify`]): each node's chain recomputed from its
//! copies, and this node's copies against its local log.
//! Invariants:
//! - The local log stays the source of truth; this module only reads it. A copy is the line
//!   byte for byte, so every hash and link can be recomputed from the copies alone.
//! - Only records the local log reports durable are copied (a failed write rolls back and
//!   reuses sequence numbers after it).
//! - A copy is never overwritten: a row already there with a different hash for the same
//!   (node, seq) — two nodes configured with one `[audit] node` name, or an edited copy —
//!   stops the copying for good (until restart) and is logged as an error.
//!
//! Must never: write to the local log's files, or treat a copy as evidence about the local
//! chain (verify judges the local files on their own).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::audit::chain::{self, LineProblem, Record, GENESIS};
use crate::audit::log::list_files;
use crate::audit::verify::{matches, Search};
use crate::audit::AuditError;
use crate::config::StoreSection;
use crate::error::{Error, Result};
use crate::store::postgres::{block_on, Pg};

/// Records sent in one `INSERT` (one round trip).
pub const BATCH: usize = 500;

/// How often the copier looks for new records even when not woken by an append.
pub const COPY_EVERY_SECS: u64 = 5;

/// Copies read back from the database per query while verifying.
const PAGE: i64 = 2000;

/// Problems listed at most (the count goes on).
const MAX_LISTED: usize = 1000;

fn db_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::transient(format!("PostgreSQL: {what}")).with_source(e)
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

/// A place in the local log: the byte after the last record read, and that record's seq.
#[derive(Debug, Clone)]
struct Cursor {
    file: PathBuf,
    offset: u64,
    seq: u64,
}

/// One local record: its line as the file holds it (without the newline) and what it says.
struct Local {
    line: String,
    record: Record,
}

/// The first record's seq of a file (None: no readable first line).
fn first_seq(path: &Path) -> Option<u64> {
    let mut line = String::new();
    BufReader::new(File::open(path).ok()?)
        .read_line(&mut line)
        .ok()?;
    chain::decode(line.trim_end_matches('\n'), None)
        .ok()
        .map(|r| r.seq)
}

/// Forgets this node's copies of records that retention removed from its own log: those
/// before the first record its oldest file holds and at or before the last one a copied
/// `retention_expired` record of this node names. Idempotent (each retention pass calls it),
/// and what it removes verify accepts, since the copied `retention_expired` record names the
/// last one removed. Returns how many copies went.
///
/// # Errors
/// The folder cannot be listed or the database cannot be written.
pub fn forget_expired(pg: &Pg, node: &str, dir: &Path) -> Result<u64> {
    let files = list_files(dir).map_err(|e| Error::transient("audit folder").with_source(e))?;
    let Some(first) = files.first().and_then(|f| first_seq(f)) else {
        return Ok(0);
    };
    if first <= 1 {
        return Ok(0);
    }
    let client = pg.conn()?;
    let first = i64::try_from(first).unwrap_or(i64::MAX);
    // Only as far as this node's own retention records say it expired: files missing for any
    // other reason (removed by hand) must not take the off-node evidence with them.
    block_on(client.execute(
        "DELETE FROM audit_records WHERE node = $1 AND seq < $2
           AND seq <= COALESCE((
               SELECT max(((record::jsonb) -> 'event' ->> 'last_seq')::BIGINT)
               FROM audit_records WHERE node = $1 AND kind = 'retention_expired'), 0)",
        &[&node, &first],
    ))
    .map_err(|e| db_error("forget expired audit copies", e))
}

/// Reads the local records with `after < seq <= upto`, at most `limit`, in file order,
/// starting at `cursor` when it stands at `after`; returns them and the place after the last
/// one read. A torn line that a later file follows is skipped (verify judges it); a line
/// still being written (no newline in the newest file) ends the read.
///
/// # Errors
/// A file cannot be read, or a complete line is not a record (run `audit verify`).
fn read_local(
    dir: &Path,
    after: u64,
    upto: u64,
    limit: usize,
    cursor: Option<&Cursor>,
) -> std::result::Result<(Vec<Local>, Cursor), AuditError> {
    let files = list_files(dir)?;
    let (mut index, mut offset) = match cursor.filter(|c| c.seq == after).and_then(|c| {
        files
            .iter()
            .position(|f| *f == c.file)
            .map(|i| (i, c.offset))
    }) {
        Some(at) => at,
        None => {
            // The last file starting at or before the first record wanted.
            let start = files
                .iter()
                .rposition(|f| first_seq(f).is_some_and(|s| s <= after.saturating_add(1)))
                .unwrap_or(0);
            (start, 0)
        }
    };
    let mut out = Vec::new();
    let mut last = after;
    while let Some(path) = files.get(index) {
        let newest = index + 1 == files.len();
        let mut bytes = Vec::new();
        let mut f = File::open(path).map_err(|e| AuditError::io(path, e))?;
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(|e| AuditError::io(path, e))?;
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(end) = bytes[at..].iter().position(|b| *b == b'\n') else {
                if newest {
                    // Being written (or torn, until a restart names it): not yet.
                    return Ok((out, cursor_at(path, offset, at, last)));
                }
                break;
            };
            let raw = &bytes[at..at + end];
            let line = String::from_utf8_lossy(raw);
            let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
            let is_last_line = at + end + 1 >= bytes.len();
            match chain::decode(&line, None) {
                Ok(record) => {
                    if record.seq > upto {
                        return Ok((out, cursor_at(path, offset, at, last)));
                    }
                    if record.seq > after {
                        last = record.seq;
                        out.push(Local { line, record });
                    }
                }
                Err(LineProblem::Torn) if is_last_line && !newest => {}
                Err(_) => {
                    return Err(AuditError::corrupt(format!(
                        "{} (byte {}): not a readable record; run `mukaika audit verify`",
                        path.display(),
                        offset + at as u64
                    )));
                }
            }
            at += end + 1;
            if out.len() >= limit {
                return Ok((out, cursor_at(path, offset, at, last)));
            }
        }
        if newest {
            return Ok((out, cursor_at(path, offset, bytes.len(), last)));
        }
        index += 1;
        offset = 0;
    }
    Ok((
        out,
        Cursor {
            file: PathBuf::new(),
            offset: 0,
            seq: last,
        },
    ))
}

fn cursor_at(path: &Path, offset: u64, at: usize, seq: u64) -> Cursor {
    Cursor {
        file: path.to_path_buf(),
        offset: offset + at as u64,
        seq,
    }
}

/// The highest seq copied for `node` (0: none).
fn highest(pg: &Pg, node: &str) -> Result<u64> {
    let client = pg.conn()?;
    let max: i64 = block_on(client.query_one(
        "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM audit_records WHERE node = $1",
        &[&node],
    ))
    .and_then(|r| r.try_get(0))
    .map_err(|e| db_error("read the last audit copy", e))?;
    Ok(seq_u64(max))
}

/// The stored hash of each of `seqs` for `node`.
fn hashes(pg: &Pg, node: &str, seqs: &[i64]) -> Result<Vec<(u64, String)>> {
    let client = pg.conn()?;
    let rows = block_on(client.query(
        "SELECT seq, hash FROM audit_records WHERE node = $1 AND seq = ANY($2) ORDER BY seq",
        &[&node, &seqs],
    ))
    .map_err(|e| db_error("read audit copies", e))?;
    rows.iter()
        .map(|r| Ok((seq_u64(r.try_get(0)?), r.try_get(1)?)))
        .collect::<std::result::Result<_, tokio_postgres::Error>>()
        .map_err(|e| db_error("read audit copies", e))
}

/// What became of a batch.
struct Inserted {
    /// Rows already there with another hash (nothing of the batch was written then).
    clashes: Vec<i64>,
    /// Rows neither written nor seen clashing: written by someone else meanwhile (their
    /// hashes are read back and compared).
    skipped: Vec<i64>,
    /// Rows written.
    written: u64,
}

/// Copies a batch in one statement, committed on its own. A batch that meets a row with the
/// same seq and another hash is not written at all; rows already there with the same hash are
/// left alone.
fn insert(pg: &Pg, node: &str, batch: &[Local]) -> Result<Inserted> {
    let seqs: Vec<i64> = batch.iter().map(|l| seq_i64(l.record.seq)).collect();
    let hash: Vec<&str> = batch.iter().map(|l| l.record.hash.as_str()).collect();
    let prev: Vec<&str> = batch.iter().map(|l| l.record.prev.as_str()).collect();
    let ts: Vec<&str> = batch.iter().map(|l| l.record.ts.as_str()).collect();
    let kind: Vec<&str> = batch
        .iter()
        .map(|l| {
            l.record
                .event
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("")
        })
        .collect();
    let line: Vec<&str> = batch.iter().map(|l| l.line.as_str()).collect();
    let client = pg.conn()?;
    // One round trip: the clash check and the insert see one snapshot; a row another writer
    // commits in between is skipped by ON CONFLICT and compared afterwards.
    let rows = block_on(client.query(
        "WITH incoming AS (
             SELECT * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])
                 AS i (seq, hash, prev, ts, kind, record)
         ), clash AS (
             SELECT i.seq FROM incoming i JOIN audit_records a
                 ON a.node = $1 AND a.seq = i.seq AND a.hash <> i.hash
         ), written AS (
             INSERT INTO audit_records (node, seq, hash, prev, ts, kind, record)
             SELECT $1, i.seq, i.hash, i.prev, i.ts, i.kind, i.record FROM incoming i
             WHERE NOT EXISTS (SELECT 1 FROM clash)
             ON CONFLICT (node, seq) DO NOTHING
             RETURNING seq
         )
         SELECT true, seq FROM clash UNION ALL SELECT false, seq FROM written",
        &[&node, &seqs, &hash, &prev, &ts, &kind, &line],
    ))
    .map_err(|e| db_error("copy audit records", e))?;
    let mut clashes = Vec::new();
    let mut written = std::collections::HashSet::new();
    for r in &rows {
        let clash: bool = r
            .try_get(0)
            .map_err(|e| db_error("copy audit records", e))?;
        let seq: i64 = r
            .try_get(1)
            .map_err(|e| db_error("copy audit records", e))?;
        if clash {
            clashes.push(seq);
        } else {
            written.insert(seq);
        }
    }
    clashes.sort_unstable();
    let skipped = if clashes.is_empty() {
        seqs.into_iter().filter(|s| !written.contains(s)).collect()
    } else {
        Vec::new()
    };
    Ok(Inserted {
        clashes,
        skipped,
        written: written.len() as u64,
    })
}

/// What one pass of the [`Shipper`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    /// Records copied now.
    pub copied: u64,
    /// The highest seq of this node now in the database.
    pub last: u64,
}

/// Copies this node's durable records to PostgreSQL, after the highest seq already there.
/// Run [`Shipper::pass`] on a blocking thread; it keeps its place in the local files between
/// passes, and starts over from the database's highest seq after any failure.
pub struct Shipper {
    dir: PathBuf,
    node: String,
    store: StoreSection,
    pg: Option<Arc<Pg>>,
    copied: Option<u64>,
    cursor: Option<Cursor>,
    conflict: Option<String>,
}

impl Shipper {
    /// A copier of the log in `dir`, written as `node`, to the database `store` names.
    pub fn new(dir: impl Into<PathBuf>, node: impl Into<String>, store: StoreSection) -> Self {
        Self {
            dir: dir.into(),
            node: node.into(),
            store,
            pg: None,
            copied: None,
            cursor: None,
            conflict: None,
        }
    }

    /// Why copying stopped for good (a copy with another hash), if it did.
    pub fn conflict(&self) -> Option<&str> {
        self.conflict.as_deref()
    }

    /// Copies every record with a seq up to `durable` not yet in the database, in batches of
    /// [`BATCH`]. After a conflict it copies nothing (and returns it as an error each time).
    ///
    /// # Errors
    /// The database cannot be reached or written (transient: the next pass catches up), a
    /// local file cannot be read, or a conflict (permanent).
    pub fn pass(&mut self, durable: u64) -> Result<Pass> {
        if let Some(c) = &self.conflict {
            return Err(Error::permanent(c.clone()));
        }
        let pg = match &self.pg {
            Some(pg) => Arc::clone(pg),
            None => {
                let pg = Pg::shared(&self.store)?;
                self.pg = Some(Arc::clone(&pg));
                pg
            }
        };
        let result = self.pass_on(&pg, durable);
        if result.is_err() {
            // Whatever happened, read the database's place again next time.
            self.copied = None;
        }
        result
    }

    fn stop(&mut self, message: String) -> Error {
        tracing::error!(node = %self.node, problem = %message, "audit copies to PostgreSQL stopped");
        self.conflict = Some(message.clone());
        Error::permanent(message)
    }

    fn pass_on(&mut self, pg: &Pg, durable: u64) -> Result<Pass> {
        let mut copied = match self.copied {
            Some(c) => c,
            None => {
                let c = highest(pg, &self.node)?;
                if c > durable {
                    return Err(self.stop(format!(
                        "PostgreSQL holds copies of node {} up to #{c}, but this node's log ends at \
                         #{durable}: another node is configured with the same [audit] node name",
                        self.node
                    )));
                }
                if c > 0 {
                    // The last copy must be this node's record, or copying on would splice two chains.
                    let (ours, _) = read_local(&self.dir, c - 1, c, 1, None)?;
                    let theirs = hashes(pg, &self.node, &[seq_i64(c)])?;
                    if let (Some(ours), Some((_, hash))) = (ours.first(), theirs.first()) {
                        if ours.record.seq == c && ours.record.hash != *hash {
                            return Err(self.stop(format!(
                                "the copy of node {} #{c} has another hash than the local record: \
                                 another node is configured with the same [audit] node name, or the \
                                 copy was altered",
                                self.node
                            )));
                        }
                    }
                }
                self.copied = Some(c);
                self.cursor = None;
                c
            }
        };
        let mut pass = Pass {
            copied: 0,
            last: copied,
        };
        loop {
            let (batch, cursor) =
                read_local(&self.dir, copied, durable, BATCH, self.cursor.as_ref())?;
            let Some(last) = batch.last().map(|l| l.record.seq) else {
                self.cursor = Some(cursor);
                return Ok(pass);
            };
            let result = insert(pg, &self.node, &batch)?;
            let mut clash = result.clashes.first().map(|s| seq_u64(*s));
            if clash.is_none() && !result.skipped.is_empty() {
                // Already there: the same record (a pass repeated after a lost reply) or not.
                clash = hashes(pg, &self.node, &result.skipped)?
                    .into_iter()
                    .find(|(seq, hash)| {
                        batch
                            .iter()
                            .any(|l| l.record.seq == *seq && l.record.hash != *hash)
                    })
                    .map(|(seq, _)| seq);
            }
            if let Some(seq) = clash {
                return Err(self.stop(format!(
                    "a copy of node {} #{seq} with another hash is already in PostgreSQL: \
                     another node is configured with the same [audit] node name, or the copy \
                     was altered",
                    self.node
                )));
            }
            pass.copied += result.written;
            copied = last;
            pass.last = last;
            self.copied = Some(last);
            self.cursor = Some(cursor);
        }
    }
}

/// True when `needle` appears unchanged in a JSON line wherever a string field holds it
/// (serde_json escapes only quotes, backslashes and control characters).
fn json_safe(needle: &str) -> bool {
    !needle
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// Every node's copied records that match `filter` (the same filters as the local search),
/// oldest first (by time, then node and seq). A copy that fails its hash is skipped here, as
/// local search skips an unreadable line: `audit verify` reports it.
///
/// # Errors
/// The database cannot be reached or read.
pub fn search(pg: &Pg, filter: &Search) -> Result<Vec<Record>> {
    let mut sql = String::from("SELECT record FROM audit_records WHERE true");
    let mut params: Vec<String> = Vec::new();
    if let Some(s) = &filter.since {
        params.push(s.clone());
        sql.push_str(&format!(" AND ts >= ${}", params.len()));
    }
    if let Some(u) = &filter.until {
        params.push(u.clone());
        sql.push_str(&format!(" AND ts < ${}", params.len()));
    }
    // A cheap necessary condition in the database; the exact filter runs on each record below.
    for needle in [
        &filter.id,
        &filter.sender,
        &filter.recipient,
        &filter.sha256,
        &filter.verdict,
        &filter.user,
    ]
    .into_iter()
    .flatten()
    .filter(|n| json_safe(n))
    {
        params.push(needle.clone());
        sql.push_str(&format!(" AND strpos(record, ${}) > 0", params.len()));
    }
    sql.push_str(" ORDER BY ts, node, seq");
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let client = pg.conn()?;
    let rows = block_on(client.query(sql.as_str(), &refs))
        .map_err(|e| db_error("search audit copies", e))?;
    let mut out = Vec::new();
    for row in &rows {
        let line: String = row
            .try_get(0)
            .map_err(|e| db_error("search audit copies", e))?;
        if let Ok(record) = chain::decode(&line, None) {
            if matches(&record, filter) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// One node's copies, as found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeCopies {
    /// The node name the copies are filed under.
    pub node: String,
    /// Copies checked.
    pub records: u64,
    /// The lowest seq.
    pub first: u64,
    /// The highest seq.
    pub last: u64,
    /// Copies carrying an HMAC that could not be checked (the key is not this node's).
    pub mac_unchecked: u64,
}

/// A copy that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyProblem {
    /// The node it is filed under.
    pub node: String,
    /// Its seq (for `missing`, the first one missing).
    pub seq: u64,
    /// `altered` (bytes, HMAC or columns do not match, or it differs from the local record),
    /// `broken-link` (its prev is not the hash of the copy before), `missing` (no copy of a
    /// record), `extra` (a copy of a record this node does not hold).
    pub kind: String,
    /// Details.
    pub detail: String,
}

impl CopyProblem {
    /// The kind, in Japanese.
    pub fn kind_ja(&self) -> &'static str {
        match self.kind.as_str() {
            "altered" => "改ざん",
            "broken-link" => "連鎖の断絶",
            "missing" => "欠落",
            "extra" => "余分な写し",
            _ => "問題",
        }
    }
}

/// The result of checking the copies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopiesReport {
    /// This node's name.
    pub this_node: String,
    /// Every node with copies.
    pub nodes: Vec<NodeCopies>,
    /// What is wrong (at most 1,000 listed; `problem_count` counts them all).
    pub problems: Vec<CopyProblem>,
    /// Every problem found.
    pub problem_count: u64,
    /// This node's local records after its last copy (not copied yet).
    pub not_copied: u64,
    /// Things worth knowing that are not problems.
    pub notes: Vec<String>,
}

impl CopiesReport {
    /// True when no copy is altered, missing or extra.
    pub fn intact(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, node: &str, seq: u64, kind: &str, detail: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(CopyProblem {
                node: node.into(),
                seq,
                kind: kind.into(),
                detail,
            });
        }
    }

    fn has(&self, node: &str, seq: u64) -> bool {
        self.problems.iter().any(|p| p.node == node && p.seq == seq)
    }
}

/// A copy as read back.
struct Copy {
    seq: u64,
    hash: String,
    prev: String,
    ts: String,
    line: String,
}

/// Reads `node`'s copies in seq order, a page at a time.
struct Copies<'a> {
    pg: &'a Pg,
    node: String,
    after: i64,
    page: std::collections::VecDeque<Copy>,
    done: bool,
}

impl<'a> Copies<'a> {
    fn new(pg: &'a Pg, node: &str) -> Self {
        Self {
            pg,
            node: node.into(),
            after: -1,
            page: Default::default(),
            done: false,
        }
    }

    fn next(&mut self) -> Result<Option<Copy>> {
        if self.page.is_empty() && !self.done {
            let client = self.pg.conn()?;
            let rows = block_on(client.query(
                "SELECT seq, hash, prev, ts, record FROM audit_records
                 WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&self.node, &self.after, &PAGE],
            ))
            .map_err(|e| db_error("read audit copies", e))?;
            self.done = (rows.len() as i64) < PAGE;
            for r in &rows {
                let seq: i64 = r.try_get(0).map_err(|e| db_error("read audit copies", e))?;
                self.after = seq;
                self.page.push_back(Copy {
                    seq: seq_u64(seq),
                    hash: r.try_get(1).map_err(|e| db_error("read audit copies", e))?,
                    prev: r.try_get(2).map_err(|e| db_error("read audit copies", e))?,
                    ts: r.try_get(3).map_err(|e| db_error("read audit copies", e))?,
                    line: r.try_get(4).map_err(|e| db_error("read audit copies", e))?,
                });
            }
        }
        Ok(self.page.pop_front())
    }
}

/// Checks the copies: for every node (or only this one), the chain over its copies — each
/// copy's bytes hash to its hash (and its HMAC verifies, where `key` is the one it was made
/// with), each prev names the copy before, no seq is missing — and for this node, every copy
/// equals the local record of `dir`, and how many local records are not copied yet.
///
/// # Errors
/// The database or a local file cannot be read.
pub fn verify(
    pg: &Pg,
    this_node: &str,
    dir: &Path,
    key: Option<&[u8]>,
    only_this_node: bool,
) -> Result<CopiesReport> {
    let mut report = CopiesReport {
        this_node: this_node.into(),
        ..CopiesReport::default()
    };
    let names: Vec<String> = if only_this_node {
        vec![this_node.to_string()]
    } else {
        let client = pg.conn()?;
        let rows =
            block_on(client.query("SELECT DISTINCT node FROM audit_records ORDER BY node", &[]))
                .map_err(|e| db_error("read audit copies", e))?;
        let mut names = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(|e| db_error("read audit copies", e))?;
        if !names.iter().any(|n| n == this_node) {
            names.push(this_node.to_string());
        }
        // Every node that ever reported in has records; one whose copies are all gone (deleted
        // in the database) is a finding, not a node that never was.
        let seen = block_on(client.query("SELECT name FROM nodes ORDER BY name", &[]))
            .map_err(|e| db_error("read the nodes", e))?;
        for row in &seen {
            let name: String = row.try_get(0).map_err(|e| db_error("read the nodes", e))?;
            if !names.contains(&name) {
                report.problem(
                    &name,
                    1,
                    "missing",
                    "the node reported in to the cluster but none of its audit records is copied"
                        .into(),
                );
            }
        }
        names
    };
    for node in &names {
        let this = node == this_node;
        let found = chain_pass(pg, node, key, this, &mut report)?;
        if found.mac_unchecked > 0 {
            report.notes.push(format!(
                "ノード {node} の写しは別の HMAC 鍵で記録されているため、ハッシュと連鎖のつながりのみ確認しました / node {node}'s copies are HMAC-keyed with a key that is not this node's: only hashes and linkage were checked"
            ));
        }
        if found.records > 0 {
            report.nodes.push(found);
        }
        if this {
            compare_local(pg, node, dir, &mut report)?;
        }
    }
    Ok(report)
}

/// The chain over one node's copies.
fn chain_pass(
    pg: &Pg,
    node: &str,
    key: Option<&[u8]>,
    this: bool,
    report: &mut CopiesReport,
) -> Result<NodeCopies> {
    let mut found = NodeCopies {
        node: node.into(),
        ..NodeCopies::default()
    };
    let mut copies = Copies::new(pg, node);
    let mut prev: Option<(u64, String)> = None;
    // Heads removed by retention, as the copies' retention records name them.
    let mut heads: Vec<(u64, String)> = Vec::new();
    while let Some(copy) = copies.next()? {
        if found.records == 0 {
            found.first = copy.seq;
        }
        found.records += 1;
        found.last = copy.seq;
        // The hash alone needs no key; the HMAC is checked with ours where it is ours.
        let decoded = match chain::decode(&copy.line, None) {
            Ok(r) => {
                let has_mac = copy.line.contains(",\"mac\":\"");
                match (has_mac, key) {
                    (false, Some(_)) if this => {
                        Err("it has no HMAC, though this node's log is keyed".to_string())
                    }
                    (true, Some(k)) if chain::decode(&copy.line, Some(k)).is_err() => {
                        if this {
                            Err("its HMAC does not match this node's key".to_string())
                        } else {
                            found.mac_unchecked += 1;
                            Ok(r)
                        }
                    }
                    (true, None) => {
                        found.mac_unchecked += 1;
                        Ok(r)
                    }
                    _ => Ok(r),
                }
            }
            Err(LineProblem::Edited) => Err("its bytes do not match its hash".to_string()),
            Err(_) => Err("it is not a complete record".to_string()),
        };
        let record = match decoded {
            Ok(r)
                if r.seq == copy.seq
                    && r.hash == copy.hash
                    && r.prev == copy.prev
                    && r.ts == copy.ts =>
            {
                Some(r)
            }
            Ok(_) => {
                report.problem(
                    node,
                    copy.seq,
                    "altered",
                    "the row's seq, hash, prev or time does not match its record".into(),
                );
                None
            }
            Err(why) => {
                report.problem(node, copy.seq, "altered", why);
                None
            }
        };
        if let Some(r) = &record {
            if r.event.get("type").and_then(|t| t.as_str()) == Some("retention_expired") {
                if let (Some(seq), Some(hash)) = (
                    r.event.get("last_seq").and_then(|v| v.as_u64()),
                    r.event.get("last_hash").and_then(|v| v.as_str()),
                ) {
                    heads.push((seq, hash.to_string()));
                }
            }
        }
        match &prev {
            None if copy.seq == 1 && copy.prev != GENESIS => {
                report.problem(
                    node,
                    1,
                    "broken-link",
                    "the first record does not start the chain".into(),
                );
            }
            None => {}
            Some((p, _)) if copy.seq != p + 1 => {
                report.problem(
                    node,
                    p + 1,
                    "missing",
                    format!(
                        "no copies of records #{}–#{} ({} record(s))",
                        p + 1,
                        copy.seq.saturating_sub(1),
                        // A tampered row (seq at or below the one before) reads as none.
                        copy.seq.saturating_sub(p + 1)
                    ),
                );
            }
            Some((p, hash)) if copy.prev != *hash && !report.has(node, *p) => {
                report.problem(
                    node,
                    copy.seq,
                    "broken-link",
                    format!("its prev does not match the hash of the copy of #{p}"),
                );
            }
            Some(_) => {}
        }
        prev = Some((copy.seq, copy.hash.clone()));
    }
    // A chain that starts late: fine where a retention record names the record before its
    // first copy (as local verify accepts); this node's head is compared with the local log.
    if !this && found.records > 0 && found.first > 1 {
        let first_prev = {
            let theirs = hashes_prev(pg, node, found.first)?;
            theirs.unwrap_or_default()
        };
        let accounted = heads
            .iter()
            .any(|(seq, hash)| seq + 1 == found.first && *hash == first_prev);
        if accounted {
            report.notes.push(format!(
                "ノード {node} の #1–#{} は保存期間により削除済み / node {node}'s records #1–#{} were removed by retention (on record)",
                found.first - 1,
                found.first - 1
            ));
        } else {
            report.problem(
                node,
                1,
                "missing",
                format!(
                    "the copies start at #{} and no retention record accounts for the ones before",
                    found.first
                ),
            );
        }
    }
    Ok(found)
}

/// The prev of `node`'s copy `seq`.
fn hashes_prev(pg: &Pg, node: &str, seq: u64) -> Result<Option<String>> {
    let client = pg.conn()?;
    let row = block_on(client.query_opt(
        "SELECT prev FROM audit_records WHERE node = $1 AND seq = $2",
        &[&node, &seq_i64(seq)],
    ))
    .map_err(|e| db_error("read audit copies", e))?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| db_error("read audit copies", e))
}

/// This node's copies against its local log, in one merge over both (seq order).
fn compare_local(pg: &Pg, node: &str, dir: &Path, report: &mut CopiesReport) -> Result<()> {
    let mut copies = Copies::new(pg, node);
    let mut copy = copies.next()?;
    let first_copy = copy.as_ref().map(|c| c.seq);
    let mut first_local: Option<u64> = None;
    let mut cursor: Option<Cursor> = None;
    let mut after = 0u64;
    loop {
        let (batch, next) = read_local(dir, after, u64::MAX, 5000, cursor.as_ref())?;
        if batch.is_empty() {
            // A copy past the last local record read. On a running node it may be of a record
            // written and copied since that read (a page of copies fetched later): the file
            // had it before the copy existed, so the read above, made after this copy was
            // fetched, settles it.
            let Some(c) = copy.take() else { break };
            report.problem(
                node,
                c.seq,
                "extra",
                "a copy beyond this node's last local record".into(),
            );
            copy = copies.next()?;
            continue;
        }
        after = batch.last().map_or(after, |l| l.record.seq);
        cursor = Some(next);
        for local in batch {
            let seq = local.record.seq;
            first_local.get_or_insert(seq);
            // Copies of records before this one that the log does not hold.
            while let Some(c) = copy.as_ref().filter(|c| c.seq < seq) {
                if first_local.is_some_and(|f| c.seq >= f) {
                    report.problem(
                        node,
                        c.seq,
                        "extra",
                        "a copy of a record this node's log does not hold".into(),
                    );
                }
                copy = copies.next()?;
            }
            match copy.as_ref() {
                Some(c) if c.seq == seq => {
                    if c.line != local.line && !report.has(node, seq) {
                        report.problem(
                            node,
                            seq,
                            "altered",
                            "the copy differs from the local record".into(),
                        );
                    }
                    copy = copies.next()?;
                }
                // Later copies exist: this record's is missing (the chain pass names gaps
                // between copies; this names a missing head).
                Some(_) if first_copy.is_some_and(|f| seq < f) => {
                    report.problem(
                        node,
                        seq,
                        "missing",
                        "no copy of this local record, though later ones are copied".into(),
                    );
                }
                Some(_) => {}
                None => report.not_copied += 1,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::ConfigLoaded;
    use crate::audit::{AuditConfig, AuditEvent, AuditLog};

    fn event(i: usize) -> AuditEvent {
        AuditEvent::ConfigLoaded(ConfigLoaded {
            source: format!("test-{i}"),
            sha256: "0".repeat(64),
        })
    }

    fn seqs(records: &[Local]) -> Vec<u64> {
        records.iter().map(|l| l.record.seq).collect()
    }

    #[test]
    fn reads_on_from_its_place_across_rotated_files_and_never_past_the_durable_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AuditConfig::new(dir.path(), "n1");
        // A new file every few records.
        config.max_file_bytes = 600;
        config.checkpoint_every = 0;
        let log = AuditLog::open(config).unwrap();
        for i in 0..10 {
            log.append(event(i)).unwrap();
        }
        assert!(list_files(dir.path()).unwrap().len() > 2);
        let (first, cursor) = read_local(dir.path(), 0, 4, 100, None).unwrap();
        assert_eq!(seqs(&first), [1, 2, 3, 4]);
        let (next, cursor) = read_local(dir.path(), 4, 10, 3, Some(&cursor)).unwrap();
        assert_eq!(seqs(&next), [5, 6, 7]);
        for i in 10..12 {
            log.append(event(i)).unwrap();
        }
        let (rest, cursor) = read_local(dir.path(), 7, u64::MAX, 100, Some(&cursor)).unwrap();
        assert_eq!(seqs(&rest), [8, 9, 10, 11, 12]);
        // The same from scratch, and nothing new from the end.
        let (again, _) = read_local(dir.path(), 7, u64::MAX, 100, None).unwrap();
        assert_eq!(seqs(&again), [8, 9, 10, 11, 12]);
        let (none, _) = read_local(dir.path(), 12, u64::MAX, 100, Some(&cursor)).unwrap();
        assert!(none.is_empty());
        // Each line is the file's, byte for byte.
        let text: String = list_files(dir.path())
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert!(text.contains(&format!("{}\n", rest[0].line)));
    }

    #[test]
    fn a_line_still_being_written_is_left_for_later_and_a_torn_one_before_a_new_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(AuditConfig::new(dir.path(), "n1")).unwrap();
        log.append(event(0)).unwrap();
        drop(log);
        let file = list_files(dir.path()).unwrap().pop().unwrap();
        // Half a record at the end of the newest file: not read, and the place stays before it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":2,\"ts\""))
            .unwrap();
        let (read, cursor) = read_local(dir.path(), 0, u64::MAX, 100, None).unwrap();
        assert_eq!(seqs(&read), [1]);
        // After a restart the log names the torn line in a new file: read on past it.
        let log = AuditLog::open(AuditConfig::new(dir.path(), "n1")).unwrap();
        log.append(event(1)).unwrap();
        let (read, _) = read_local(dir.path(), 1, u64::MAX, 100, Some(&cursor)).unwrap();
        let types: Vec<&str> = read
            .iter()
            .filter_map(|l| l.record.event.get("type").and_then(|t| t.as_str()))
            .collect();
        assert_eq!(types, ["recovery", "config_loaded"]);
    }

    #[test]
    fn search_needles_go_to_the_database_only_when_json_leaves_them_unchanged() {
        assert!(json_safe("sasaki@example.lg.jp"));
        assert!(json_safe("佐々木"));
        assert!(!json_safe("a\"b"));
        assert!(!json_safe("a\\b"));
        assert!(!json_safe("a\tb"));
    }
}
