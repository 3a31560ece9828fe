//! The import folder shared by the nodes of a cluster (`[store] backend = "postgres"`): the
//! claims in PostgreSQL that make two or more nodes watching one folder (a shared SMB/NFS
//! path) process each file once.
//!
//! Owns: the `import_claims` and `import_names` tables (migration 5). A node claims a file
//! ([`Claims::claim`]) before it reads it: one row per file, named by [`FileIdentity`], holding
//! the claimant and a lease on the database's clock that a thread of the claimant renews while
//! it works on that file. The row later carries the import ID (before any temporary export is
//! written, so the sweep of another node knows those files as someone's work) and the ledger
//! entry (before the renames it names). Finishing marks the row done; it stays as a tombstone
//! for [`TOMBSTONE_DAYS`]. A pair's name is what the nodes agree on: the same name on every
//! node means one shared folder.
//! Invariants:
//! - Only one node wins a file: an `INSERT … ON CONFLICT DO NOTHING` on the file's identity and
//!   on its name among unfinished claims, or a `FOR UPDATE SKIP LOCKED` take-over of a claim
//!   whose lease ran out ([`Claims::take_over`]).
//! - A claimant writes the import ID and the ledger entry only while the claim is still its
//!   own (the statements say so): a node that lost its lease before its ledger entry stops
//!   before it renames anything; after it, the node that took over renames the same temporary
//!   files to the same names, so neither makes a second copy.
//!   "Its own" is this run of the node (a random incarnation per process), so two processes
//!   that were given one node name never act on each other's claims.
//! - Only the claim being worked on is renewed: a claim left by a failure (its ledger entry
//!   written, a rename failed) runs out and is taken over like a dead node's. A take-over
//!   takes one claim at a time and makes it the renewed one, so a claim is never held
//!   under a lease nobody renews while an earlier one is worked through.
//! - Every destructive step on the files (sweeping a claim's temporaries, renaming, retiring
//!   the original) is preceded by [`Claims::confirm`]: the claim is still this run's, its
//!   lease had not run out, and it now holds a fresh one. A node that was too slow (stalled,
//!   paused, cut off from the database) stops instead of acting on a claim another node may
//!   be working on.
//! - An export name is reserved in `import_names` before it is used and stays reserved until
//!   the claim is finished, so two nodes never choose one name.
//! - Every write is one autocommitted statement or one transaction: it returns only after the
//!   server committed it.
//!
//! Must never: decide anything from the device number (each NFS client numbers the mount
//! itself), or take over a claim whose lease has not run out.

use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreSection;
use crate::error::{Error, Result};
use crate::store::postgres::{block_on, Pg};

/// How long a claim holds without being renewed: the time after which another node takes the
/// file of a node that died over (or this node, after a restart or a failure, its own).
pub const LEASE_SECS: i64 = 60;

/// How long a finished claim stays, so that a node whose listing of the folder lags behind
/// the file server does not take the same file again.
pub const TOMBSTONE_DAYS: i64 = 7;

/// "This file" on a shared folder, as every node sees it: the pair, the path below the import
/// folder, and what the file server reports (not the client's device number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    /// The pair's name.
    pub pair: String,
    /// The path below the import folder (`/`-separated, NFC).
    pub path: String,
    /// The inode (NFS file ID, SMB server inode number).
    pub ino: i64,
    /// Its size.
    pub size: i64,
    /// Its modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Its change time (set by the server on creation; a copy tool cannot set it), nanoseconds.
    pub ctime_ns: i64,
}

impl FileIdentity {
    /// The identity of a file as `fstat` described it.
    pub fn of(pair: &str, path: &str, meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileIdentity {
            pair: pair.to_string(),
            path: path.to_string(),
            ino: meta.ino() as i64,
            size: meta.size() as i64,
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A claim another node (or this one, before a restart) left unfinished, now this node's.
#[derive(Debug, Clone)]
pub struct TakenOver {
    /// The claim's row.
    pub claim: i64,
    /// The file it is about.
    pub file: FileIdentity,
    /// The node that held it.
    pub previous: String,
    /// The import ID, once the previous holder had read the file.
    pub import_id: Option<String>,
    /// The ledger entry, once the previous holder had exported under temporary names.
    pub entry: Option<String>,
}

/// This node's side of the claims.
pub struct Claims {
    pg: Arc<Pg>,
    node: String,
    /// This run of the node.
    incarnation: String,
    lease_secs: i64,
    /// The claim being worked on (the one the renewing thread renews).
    current: Arc<std::sync::Mutex<Option<i64>>>,
    /// Ends the renewing thread when dropped.
    _stop: std::sync::mpsc::Sender<()>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").field("node", &self.node).finish()
    }
}

fn db_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::transient(format!("PostgreSQL: {what}")).with_source(e)
}

impl Claims {
    /// The claims of node `node` in the database `store` names, with a lease of
    /// [`LEASE_SECS`] renewed every quarter of it while this value lives.
    ///
    /// # Errors
    /// As [`Pg::shared`].
    pub fn open(store: &StoreSection, node: &str) -> Result<Claims> {
        Claims::with_lease(store, node, LEASE_SECS)
    }

    /// As [`Claims::open`] with a lease of `lease_secs` (tests).
    ///
    /// # Errors
    /// As [`Pg::shared`].
    pub fn with_lease(store: &StoreSection, node: &str, lease_secs: i64) -> Result<Claims> {
        let pg = Pg::shared(store)?;
        let lease_secs = lease_secs.max(1);
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| Error::transient(format!("import claims: no randomness: {e}")))?;
        let incarnation = format!("{}-{}", std::process::id(), hex::encode(random));
        let current = Arc::new(std::sync::Mutex::new(None));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewing = (
            Arc::clone(&pg),
            node.to_string(),
            incarnation.clone(),
            Arc::clone(&current),
        );
        let every = Duration::from_millis((lease_secs as u64 * 1000 / 4).max(250));
        std::thread::Builder::new()
            .name("mukaika-import-lease".into())
            .spawn(move || {
                // Until the claims are dropped (the sender with them).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let (pg, node, incarnation, current) = &renewing;
                    let Some(claim) = *current.lock().unwrap_or_else(|p| p.into_inner()) else {
                        continue;
                    };
                    if let Err(e) = renew(pg, node, incarnation, claim, lease_secs) {
                        tracing::warn!(error = %e, "import claims could not be renewed");
                    }
                }
            })
            .map_err(|e| Error::io("import lease thread", e))?;
        Ok(Claims {
            pg,
            node: node.to_string(),
            incarnation,
            lease_secs,
            current,
            _stop: stop,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Makes `claim` (or none) the one the renewing thread keeps alive.
    fn working_on(&self, claim: Option<i64>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = claim;
    }

    /// Stops renewing `claim` (left for a take-over after its lease: its ledger entry is
    /// written but could not be completed now).
    pub fn let_lapse(&self, claim: i64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current == Some(claim) {
            *current = None;
        }
    }

    /// Claims `file` for this node: `Some(claim)` if this node won it, `None` when another
    /// claim holds its name or this very file was finished already.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn claim(&self, file: &FileIdentity) -> Result<Option<i64>> {
        let client = self.pg.conn()?;
        let rows = block_on(client.query(
            "INSERT INTO import_claims
                 (pair, path, ino, size, mtime_ns, ctime_ns, node, incarnation, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, now() + make_interval(secs => $8))
             ON CONFLICT DO NOTHING RETURNING id",
            &[
                &file.pair,
                &file.path,
                &file.ino,
                &file.size,
                &file.mtime_ns,
                &file.ctime_ns,
                &self.node,
                &(self.lease_secs as f64),
                &self.incarnation,
            ],
        ))
        .map_err(|e| db_error("claim an import", e))?;
        let won: Option<i64> = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| db_error("claim an import", e))?;
        if won.is_some() {
            self.working_on(won);
        }
        Ok(won)
    }

    /// Renews the claim this node is working on, if any.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn renew(&self) -> Result<()> {
        let current = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current {
            Some(claim) => renew(
                &self.pg,
                &self.node,
                &self.incarnation,
                claim,
                self.lease_secs,
            )
            .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Runs `sql` (parameters `$1` claim, `$2` node, `$3` incarnation, then `more`) on a
    /// claim that must still be this run's; an error when it is not.
    fn mine(
        &self,
        what: &str,
        sql: &str,
        claim: i64,
        more: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<()> {
        let client = self.pg.conn()?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&claim, &self.node, &self.incarnation];
        params.extend_from_slice(more);
        let n = block_on(client.execute(sql, &params)).map_err(|e| db_error(what, e))?;
        if n == 1 {
            Ok(())
        } else {
            Err(Error::transient(format!(
                "import claim {claim} is no longer this node's ({what})"
            )))
        }
    }

    /// Records the import ID of the claimed file (before any temporary export is written).
    ///
    /// # Errors
    /// The claim is no longer this node's, or the database cannot be reached.
    pub fn set_import_id(&self, claim: i64, import_id: &str) -> Result<()> {
        self.mine(
            "record the import ID",
            "UPDATE import_claims SET import_id = $4, lease_until = now() + make_interval(secs => $5)
             WHERE id = $1 AND node = $2 AND incarnation = $3 AND done_at IS NULL",
            claim,
            &[&import_id, &(self.lease_secs as f64)],
        )
    }

    /// Records the ledger entry (committed before this returns, so before the renames).
    ///
    /// # Errors
    /// The claim is no longer this node's, or the database cannot be reached.
    pub fn write_entry(&self, claim: i64, entry: &str) -> Result<()> {
        self.mine(
            "record the ledger entry",
            "UPDATE import_claims SET entry = $4, lease_until = now() + make_interval(secs => $5)
             WHERE id = $1 AND node = $2 AND incarnation = $3 AND done_at IS NULL",
            claim,
            &[&entry, &(self.lease_secs as f64)],
        )
    }

    /// Reserves the export name `path` (below the pair's export folder) for `claim`: false
    /// when another claim holds it.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn reserve(&self, claim: i64, pair: &str, path: &str) -> Result<bool> {
        let client = self.pg.conn()?;
        let n = block_on(client.execute(
            "INSERT INTO import_names (pair, path, claim) VALUES ($1, $2, $3)
             ON CONFLICT (pair, path) DO UPDATE SET claim = EXCLUDED.claim
             WHERE import_names.claim = EXCLUDED.claim",
            &[&pair, &path, &claim],
        ))
        .map_err(|e| db_error("reserve an export name", e))?;
        Ok(n == 1)
    }

    /// Finishes a claim whose original was retired: done (a tombstone), its names free.
    ///
    /// # Errors
    /// The database cannot be reached, or the claim is no longer this node's.
    pub fn finish(&self, claim: i64) -> Result<()> {
        let mut client = self.pg.conn()?;
        let tx = block_on(client.transaction()).map_err(|e| db_error("begin", e))?;
        let n = block_on(tx.execute(
            "UPDATE import_claims SET done_at = now()
             WHERE id = $1 AND node = $2 AND incarnation = $3 AND done_at IS NULL",
            &[&claim, &self.node, &self.incarnation],
        ))
        .map_err(|e| db_error("finish an import claim", e))?;
        if n != 1 {
            return Err(Error::transient(format!(
                "import claim {claim} is no longer this node's (finish)"
            )));
        }
        block_on(tx.execute("DELETE FROM import_names WHERE claim = $1", &[&claim]))
            .map_err(|e| db_error("free the export names", e))?;
        block_on(tx.commit()).map_err(|e| db_error("finish an import claim", e))?;
        self.let_lapse(claim);
        Ok(())
    }

    /// Whether a claim of this node holds a ledger entry (then it is to be completed, not
    /// given up).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn entry_of(&self, claim: i64) -> Result<bool> {
        let client = self.pg.conn()?;
        let row = block_on(client.query_opt(
            "SELECT entry IS NOT NULL FROM import_claims
             WHERE id = $1 AND node = $2 AND incarnation = $3",
            &[&claim, &self.node, &self.incarnation],
        ))
        .map_err(|e| db_error("read an import claim", e))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|b| b.unwrap_or(false))
            .map_err(|e| db_error("read an import claim", e))
    }

    /// Gives a claim up (the file stays in the folder for the next pass, of any node): the
    /// row and its names go.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn release(&self, claim: i64) -> Result<()> {
        self.let_lapse(claim);
        let client = self.pg.conn()?;
        block_on(client.execute(
            "DELETE FROM import_claims
             WHERE id = $1 AND node = $2 AND incarnation = $3 AND done_at IS NULL",
            &[&claim, &self.node, &self.incarnation],
        ))
        .map(|_| ())
        .map_err(|e| db_error("release an import claim", e))
    }

    /// Takes over, for this node, one unfinished claim of `pairs` whose lease ran out (a dead
    /// node's, or one a failure left, this node's included), and makes it the claim the
    /// renewing thread keeps alive. Rows locked by another node taking them over right now are
    /// skipped. Also drops tombstones older than [`TOMBSTONE_DAYS`].
    ///
    /// One at a time: a batch would sit under leases nobody renews while its first claims are
    /// worked through, and run out again under this node's feet (another node then takes the
    /// same claim over at the same time). The caller works on it, then finishes, releases or
    /// lets it lapse before it takes the next.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn take_over(&self, pairs: &[String]) -> Result<Option<TakenOver>> {
        let mut client = self.pg.conn()?;
        block_on(client.execute(
            "DELETE FROM import_claims WHERE done_at < now() - make_interval(days => $1)",
            &[&(TOMBSTONE_DAYS as i32)],
        ))
        .map_err(|e| db_error("drop old import tombstones", e))?;
        let tx = block_on(client.transaction()).map_err(|e| db_error("begin", e))?;
        let row = block_on(tx.query_opt(
            "SELECT id, pair, path, ino, size, mtime_ns, ctime_ns, node, import_id, entry
             FROM import_claims
             WHERE done_at IS NULL AND pair = ANY($1) AND lease_until < now()
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&pairs],
        ))
        .map_err(|e| db_error("find abandoned import claims", e))?;
        let Some(r) = row else {
            return Ok(None);
        };
        let read = || -> std::result::Result<TakenOver, tokio_postgres::Error> {
            Ok(TakenOver {
                claim: r.try_get(0)?,
                file: FileIdentity {
                    pair: r.try_get(1)?,
                    path: r.try_get(2)?,
                    ino: r.try_get(3)?,
                    size: r.try_get(4)?,
                    mtime_ns: r.try_get(5)?,
                    ctime_ns: r.try_get(6)?,
                },
                previous: r.try_get(7)?,
                import_id: r.try_get(8)?,
                entry: r.try_get(9)?,
            })
        };
        let taken = read().map_err(|e| db_error("read an import claim", e))?;
        block_on(tx.execute(
            "UPDATE import_claims
             SET node = $2, incarnation = $4, lease_until = now() + make_interval(secs => $3)
             WHERE id = $1",
            &[
                &taken.claim,
                &self.node,
                &(self.lease_secs as f64),
                &self.incarnation,
            ],
        ))
        .map_err(|e| db_error("take an import claim over", e))?;
        block_on(tx.commit()).map_err(|e| db_error("take an import claim over", e))?;
        self.working_on(Some(taken.claim));
        Ok(Some(taken))
    }

    /// Before a destructive step on `claim`'s files: an error unless the claim is still this
    /// run's, unfinished, and its lease had not run out; then it holds a fresh lease (a whole
    /// [`LEASE_SECS`] for the step). A lease that ran out is refused even when nobody took the
    /// claim over yet: another node may be taking it right now (its `FOR UPDATE` makes this
    /// statement wait, then find the row no longer this node's).
    ///
    /// # Errors
    /// The claim is no longer this node's, its lease ran out, or the database cannot be
    /// reached.
    pub fn confirm(&self, claim: i64) -> Result<()> {
        self.mine(
            "confirm the claim",
            "UPDATE import_claims SET lease_until = now() + make_interval(secs => $4)
             WHERE id = $1 AND node = $2 AND incarnation = $3 AND done_at IS NULL
               AND lease_until > now()",
            claim,
            &[&(self.lease_secs as f64)],
        )
    }

    /// Which of `ids` are the import IDs of unfinished claims (some node's work in progress,
    /// whose temporary exports are not to be swept).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn working(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let client = self.pg.conn()?;
        let rows = block_on(client.query(
            "SELECT import_id FROM import_claims WHERE done_at IS NULL AND import_id = ANY($1)",
            &[&ids],
        ))
        .map_err(|e| db_error("read import claims", e))?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error("read import claims", e))
    }
}

fn renew(pg: &Pg, node: &str, incarnation: &str, claim: i64, lease_secs: i64) -> Result<u64> {
    let client = pg.conn()?;
    block_on(client.execute(
        "UPDATE import_claims SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $4 AND node = $1 AND incarnation = $3 AND done_at IS NULL",
        &[&node, &(lease_secs as f64), &incarnation, &claim],
    ))
    .map_err(|e| db_error("renew import claims", e))
}
