//! The shared quarantine of a cluster: [`QuarantineStore`] on PostgreSQL (`[store] backend =
//! "postgres"`), so an item held via one node is listed, read, released and removed on every
//! node, and survives the loss of the node that held it.
//!
//! Owns: the tables of migration 3 — `quarantine_items` (every [`QuarantineItem`] field and the
//! `[audit] node` that held it), `quarantine_blobs` (one header row per content, named by the
//! SHA-256 of its bytes) and `quarantine_chunks` (the bytes, 1 MiB `bytea` rows in order).
//!
//! Invariants:
//! - The same bytes are stored once, however many items (on however many nodes) hold them.
//! - No item is ever committed pointing at a blob that is being removed: `items.sha256` is a
//!   foreign key to the blob, and both storing (blob, then item) and removing (item, then the
//!   blob when no item refers to it) lock the blob's header row first and do all of it in one
//!   transaction. A put locks it with `INSERT … ON CONFLICT DO UPDATE … WHERE false` (which
//!   locks an existing row without writing it, and tells by returning a row whether the chunks
//!   are ours to write); a removal with `SELECT … FOR UPDATE` and deletes the blob only if no
//!   item refers to it once the lock is held. A put that waited on a removal's lock finds the
//!   row gone and inserts it again, chunks and all.
//! - A write returns only after the server committed it (`synchronous_commit` is forced on
//!   for the transaction whatever the server's default), and only bytes whose SHA-256 is the
//!   item's are stored under that name.
//! - Reading reassembles the chunks in one snapshot and checks their SHA-256 against the
//!   blob's name: altered or missing chunks fail the read (fail closed), never serve other
//!   bytes.
//! - Storing an ID again updates the record but keeps its first `at` (the trait's contract);
//!   a blob the old record used and nothing else does is removed with it.
//!
//! Must never: hold a whole blob in one SQL value, put a value into SQL text, or forward
//! anything — only the quarantine accepts untrusted bytes.
//!
//! Why `bytea` chunks and not large objects: a `bytea` row is part of the transaction that
//! writes the item (a large object is too, but its data lives in `pg_largeobject` apart from
//! the row that names it), is replicated by streaming replication and dumped by `pg_dump`
//! like every other row, and goes with its header row by `ON DELETE CASCADE` — a large object
//! needs an explicit `lo_unlink` on every path that drops its reference, or it is an orphan
//! that only `vacuumlo` finds. Large objects' one advantage, reading and writing in pieces
//! without holding the whole value, the 1 MiB chunks give as well; and no chunk nears
//! `bytea`'s 1 GB limit (nor the protocol's message size).
//! PPAP's unlocked-state database (`ppap.db`) stays node-local; this module holds only items.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use sha2::Digest;
use tokio_postgres::error::SqlState;

use crate::store::postgres::{block_on, Pg};
use crate::store::quarantine::{valid_id, QuarantineItem, QuarantineStore};

/// The size of one stored chunk.
pub const CHUNK: usize = 1 << 20;

/// How often a put or a removal is tried again after the server aborted it for a deadlock
/// (two nodes locking the same blob and item in opposite orders) before the error is given.
const RETRIES: usize = 5;

/// The quarantine in a cluster's PostgreSQL.
pub struct PgQuarantine {
    pg: Arc<Pg>,
    /// This node's `[audit] node` name, recorded with each item it holds.
    node: String,
}

impl std::fmt::Debug for PgQuarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQuarantine")
            .field("node", &self.node)
            .finish()
    }
}

const COLUMNS: &str = "id, source, origin_id, name, reason, detail, sha256, size, at, report, \
                       mail_from, rcpt_to, subject, detected_type";

fn db(what: &str, e: tokio_postgres::Error) -> std::io::Error {
    // The server's own message (a constraint, a lost connection) is what an operator needs;
    // never a value of ours.
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string());
    std::io::Error::other(format!("quarantine (PostgreSQL): {what}: {detail}"))
}

fn retryable(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Retry>())
        .is_some()
}

/// An error the server raised only because of a concurrent transaction (deadlock,
/// serialization): the whole transaction is tried again.
#[derive(Debug)]
struct Retry(String);

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Retry {}

/// As [`db`], but marking a deadlock or serialization failure for another try.
fn tx_db(what: &str, e: tokio_postgres::Error) -> std::io::Error {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            std::io::Error::other(Retry(format!("quarantine (PostgreSQL): {what}: {e}")))
        }
        _ => db(what, e),
    }
}

fn not_found(id: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no quarantined item {id:?}"),
    )
}

fn no_connection() -> std::io::Error {
    std::io::Error::other("quarantine (PostgreSQL): no connection")
}

fn row_item(r: &tokio_postgres::Row) -> Result<QuarantineItem, tokio_postgres::Error> {
    let report: String = r.try_get(9)?;
    Ok(QuarantineItem {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        origin_id: r.try_get(2)?,
        name: r.try_get(3)?,
        reason: r.try_get(4)?,
        detail: r.try_get(5)?,
        sha256: r.try_get(6)?,
        size: u64::try_from(r.try_get::<_, i64>(7)?).unwrap_or(0),
        at: r.try_get(8)?,
        report: crate::store::quarantine::read_report(&report),
        mail_from: r.try_get(10)?,
        rcpt_to: r.try_get(11)?,
        subject: r.try_get(12)?,
        detected_type: r.try_get(13)?,
    })
}

/// Where a put's bytes come from.
enum Source<'a> {
    Memory(&'a [u8]),
    File(&'a File),
}

impl PgQuarantine {
    /// The quarantine in `pg`, holding items as node `node`.
    pub fn new(pg: Arc<Pg>, node: impl Into<String>) -> Self {
        Self {
            pg,
            node: node.into(),
        }
    }

    /// Runs `f` again while the server aborts it for a concurrent transaction.
    fn retrying<T>(&self, mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
        let mut tries = 0;
        loop {
            match f() {
                Err(e) if retryable(&e) && tries < RETRIES => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "quarantine transaction tried again");
                }
                other => return other,
            }
        }
    }

    fn store(&self, item: &QuarantineItem, source: Source<'_>) -> std::io::Result<()> {
        if !valid_id(&item.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("malformed item ID {:?}", item.id),
            ));
        }
        if item.sha256.len() != 64
            || !item
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(std::io::Error::other("the item's SHA-256 is not a hash"));
        }
        if let Source::Memory(bytes) = source {
            // Cheap beside the network, and the name must be the bytes' or reading fails.
            if mukaika_sanitizers::report::sha256_hex(bytes) != item.sha256 {
                return Err(std::io::Error::other(
                    "the bytes do not have the item's SHA-256; not held under it",
                ));
            }
        }
        self.retrying(|| self.store_once(item, &source))
    }

    fn store_once(&self, item: &QuarantineItem, source: &Source<'_>) -> std::io::Result<()> {
        let mut guard = self.pg.client().map_err(std::io::Error::other)?;
        let client = guard.as_mut().ok_or_else(no_connection)?;
        let tx = block_on(client.transaction()).map_err(|e| db("begin", e))?;
        block_on(tx.batch_execute("SET LOCAL synchronous_commit = on"))
            .map_err(|e| db("begin", e))?;
        let size = match source {
            Source::Memory(bytes) => bytes.len() as u64,
            Source::File(file) => file.metadata()?.len(),
        };
        let size_sql = i64::try_from(size).map_err(std::io::Error::other)?;
        // Locks the blob's row, inserted or already there; a row comes back only when it was
        // inserted by us (the `WHERE false` leaves an existing row unwritten but locked).
        let inserted = !block_on(tx.query(
            "INSERT INTO quarantine_blobs (sha256, size, chunks) VALUES ($1, $2, 0)
             ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size WHERE false
             RETURNING sha256",
            &[&item.sha256, &size_sql],
        ))
        .map_err(|e| tx_db("lock the blob", e))?
        .is_empty();
        if inserted {
            let insert = block_on(
                tx.prepare("INSERT INTO quarantine_chunks (sha256, seq, data) VALUES ($1, $2, $3)"),
            )
            .map_err(|e| db("prepare", e))?;
            let mut hasher = sha2::Sha256::new();
            let mut seq: i64 = 0;
            let mut total: u64 = 0;
            let mut write = |chunk: &[u8], seq: &mut i64| -> std::io::Result<()> {
                hasher.update(chunk);
                total += chunk.len() as u64;
                block_on(tx.execute(&insert, &[&item.sha256, &*seq, &chunk]))
                    .map_err(|e| tx_db("store a chunk", e))?;
                *seq += 1;
                Ok(())
            };
            match source {
                Source::Memory(bytes) => {
                    for chunk in bytes.chunks(CHUNK) {
                        write(chunk, &mut seq)?;
                    }
                }
                Source::File(file) => {
                    // Copied from the descriptor the importer checked, hashed on the way: the
                    // file's owner could still write to it, and other bytes must not be held
                    // under the checked hash.
                    let mut reader = *file;
                    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0))?;
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let mut filled = 0;
                        while filled < CHUNK {
                            let n = reader.read(&mut buf[filled..])?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        if filled == 0 {
                            break;
                        }
                        write(&buf[..filled], &mut seq)?;
                        if filled < CHUNK {
                            break;
                        }
                    }
                }
            }
            if hex::encode(hasher.finalize()) != item.sha256 {
                // Dropping the transaction rolls the blob back.
                return Err(std::io::Error::other(
                    "the file changed after it was checked; not held under the checked hash",
                ));
            }
            let total_sql = i64::try_from(total).map_err(std::io::Error::other)?;
            block_on(tx.execute(
                "UPDATE quarantine_blobs SET size = $2, chunks = $3 WHERE sha256 = $1",
                &[&item.sha256, &total_sql, &seq],
            ))
            .map_err(|e| tx_db("record the blob", e))?;
        }
        // The record held before under this ID (its row locked until we commit).
        let before = block_on(tx.query_opt(
            "SELECT sha256 FROM quarantine_items WHERE id = $1 FOR UPDATE",
            &[&item.id],
        ))
        .map_err(|e| tx_db("read the item", e))?
        .map(|r| r.try_get::<_, String>(0))
        .transpose()
        .map_err(|e| db("read the item", e))?;
        let item_size = i64::try_from(item.size).map_err(std::io::Error::other)?;
        block_on(tx.execute(
            &format!(
                "INSERT INTO quarantine_items ({COLUMNS}, node)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source,
                     origin_id = EXCLUDED.origin_id, name = EXCLUDED.name,
                     reason = EXCLUDED.reason, detail = EXCLUDED.detail,
                     sha256 = EXCLUDED.sha256, size = EXCLUDED.size, report = EXCLUDED.report,
                     mail_from = EXCLUDED.mail_from, rcpt_to = EXCLUDED.rcpt_to,
                     subject = EXCLUDED.subject, detected_type = EXCLUDED.detected_type,
                     node = EXCLUDED.node"
            ),
            &[
                &item.id,
                &item.source,
                &item.origin_id,
                &item.name,
                &item.reason,
                &item.detail,
                &item.sha256,
                &item_size,
                &item.at,
                &item.report.to_string(),
                &item.mail_from,
                &item.rcpt_to,
                &item.subject,
                &item.detected_type,
                &self.node,
            ],
        ))
        .map_err(|e| tx_db("store the item", e))?;
        if let Some(old) = before.filter(|old| *old != item.sha256) {
            // Held again with other content: the old blob goes if nothing else holds it.
            drop_if_unreferenced(&tx, &old, false)?;
        }
        block_on(tx.commit()).map_err(|e| tx_db("commit", e))
    }

    fn remove_once(&self, id: &str) -> std::io::Result<()> {
        let mut guard = self.pg.client().map_err(std::io::Error::other)?;
        let client = guard.as_mut().ok_or_else(no_connection)?;
        let tx = block_on(client.transaction()).map_err(|e| db("begin", e))?;
        block_on(tx.batch_execute("SET LOCAL synchronous_commit = on"))
            .map_err(|e| db("begin", e))?;
        loop {
            let sha: String =
                block_on(tx.query_opt("SELECT sha256 FROM quarantine_items WHERE id = $1", &[&id]))
                    .map_err(|e| tx_db("read the item", e))?
                    .ok_or_else(|| not_found(id))?
                    .try_get(0)
                    .map_err(|e| db("read the item", e))?;
            // The blob's lock before the item's, as a put takes them.
            block_on(tx.query(
                "SELECT 1 FROM quarantine_blobs WHERE sha256 = $1 FOR UPDATE",
                &[&sha],
            ))
            .map_err(|e| tx_db("lock the blob", e))?;
            let removed = block_on(tx.execute(
                "DELETE FROM quarantine_items WHERE id = $1 AND sha256 = $2",
                &[&id, &sha],
            ))
            .map_err(|e| tx_db("remove the item", e))?;
            if removed == 0 {
                // Held again meanwhile with other content (or removed): look again.
                continue;
            }
            drop_if_unreferenced(&tx, &sha, true)?;
            return block_on(tx.commit()).map_err(|e| tx_db("commit", e));
        }
    }

    fn read(&self, id: &str) -> std::io::Result<Vec<u8>> {
        if !valid_id(id) {
            return Err(not_found(id));
        }
        let mut guard = self.pg.client().map_err(std::io::Error::other)?;
        let client = guard.as_mut().ok_or_else(no_connection)?;
        // One snapshot: the header and every chunk as of the same instant.
        let tx = block_on(
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )
        .map_err(|e| db("begin", e))?;
        let row = block_on(tx.query_opt(
            "SELECT b.sha256, b.size, b.chunks FROM quarantine_items i
             JOIN quarantine_blobs b ON b.sha256 = i.sha256 WHERE i.id = $1",
            &[&id],
        ))
        .map_err(|e| db("read the item", e))?
        .ok_or_else(|| not_found(id))?;
        let (sha, size, chunks): (String, i64, i64) = (
            row.try_get(0).map_err(|e| db("read the blob", e))?,
            row.try_get(1).map_err(|e| db("read the blob", e))?,
            row.try_get(2).map_err(|e| db("read the blob", e))?,
        );
        let corrupt = || {
            tracing::error!(item = %id, sha256 = %sha, "quarantine blob does not match its hash");
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("quarantined item {id}: the stored bytes do not match their SHA-256"),
            )
        };
        let size = usize::try_from(size).map_err(|_| corrupt())?;
        let select = block_on(
            tx.prepare("SELECT data FROM quarantine_chunks WHERE sha256 = $1 AND seq = $2"),
        )
        .map_err(|e| db("prepare", e))?;
        let mut bytes = Vec::with_capacity(size.min(64 << 20));
        for seq in 0..chunks {
            let data: Vec<u8> = block_on(tx.query_opt(&select, &[&sha, &seq]))
                .map_err(|e| db("read a chunk", e))?
                .ok_or_else(corrupt)?
                .try_get(0)
                .map_err(|e| db("read a chunk", e))?;
            bytes.extend_from_slice(&data);
        }
        if bytes.len() != size || mukaika_sanitizers::report::sha256_hex(&bytes) != sha {
            return Err(corrupt());
        }
        drop(block_on(tx.commit()));
        Ok(bytes)
    }

    fn query_items(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> std::io::Result<Vec<QuarantineItem>> {
        let guard = self.pg.client().map_err(std::io::Error::other)?;
        let client = guard.as_ref().ok_or_else(no_connection)?;
        block_on(client.query(sql, params))
            .map_err(|e| db("list", e))?
            .iter()
            .map(row_item)
            .collect::<Result<_, _>>()
            .map_err(|e| db("list", e))
    }
}

/// Removes the blob `sha` (its chunks go with it) if no item refers to it; locks it first
/// (unless `locked`: the transaction holds the lock already), so a put that holds its lock has
/// committed its item (seen here) or not yet begun (and will insert the blob again).
fn drop_if_unreferenced(
    tx: &tokio_postgres::Transaction<'_>,
    sha: &str,
    locked: bool,
) -> std::io::Result<()> {
    if !locked {
        block_on(tx.query(
            "SELECT 1 FROM quarantine_blobs WHERE sha256 = $1 FOR UPDATE",
            &[&sha],
        ))
        .map_err(|e| tx_db("lock the blob", e))?;
    }
    block_on(tx.execute(
        "DELETE FROM quarantine_blobs b WHERE b.sha256 = $1
         AND NOT EXISTS (SELECT 1 FROM quarantine_items i WHERE i.sha256 = $1)",
        &[&sha],
    ))
    .map_err(|e| tx_db("remove the blob", e))?;
    Ok(())
}

impl QuarantineStore for PgQuarantine {
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()> {
        self.store(item, Source::Memory(bytes))
    }

    fn put_file(&self, item: &QuarantineItem, file: &File) -> std::io::Result<()> {
        self.store(item, Source::File(file))
    }

    fn list(&self) -> std::io::Result<Vec<QuarantineItem>> {
        self.query_items(
            &format!("SELECT {COLUMNS} FROM quarantine_items ORDER BY at, id"),
            &[],
        )
    }

    fn list_since(&self, at: &str) -> std::io::Result<Vec<QuarantineItem>> {
        self.query_items(
            &format!("SELECT {COLUMNS} FROM quarantine_items WHERE at > $1 ORDER BY at, id"),
            &[&at],
        )
    }

    fn get(&self, id: &str) -> std::io::Result<QuarantineItem> {
        if !valid_id(id) {
            return Err(not_found(id));
        }
        self.query_items(
            &format!("SELECT {COLUMNS} FROM quarantine_items WHERE id = $1"),
            &[&id],
        )?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(id))
    }

    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>> {
        self.read(id)
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        if !valid_id(id) {
            return Err(not_found(id));
        }
        self.retrying(|| self.remove_once(id))
    }
}
