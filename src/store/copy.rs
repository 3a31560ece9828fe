//! `mukaika store copy --from sqlite --to postgres`: moves an existing node's state into the
//! cluster's database, so a node that ran alone can join a cluster without losing what it holds.
//!
//! Owns: reading the node's data directory (accounts and release requests from `review.db`,
//! read-only; quarantine items and blobs from its SQLite or file store) and writing them into
//! the shared PostgreSQL (the tables of migrations 1 and 3).
//! Invariants:
//! - Runs under the data directory's lock ([`crate::store::lock_data_dir`]): never beside the
//!   node's own service, which could be holding or removing items meanwhile.
//! - Idempotent: a key already in the database (item ID, account name, request ID) is skipped
//!   and counted, so a second run copies nothing. An account whose name exists with another
//!   password hash is reported, never overwritten (someone must decide which is right).
//! - Every blob copied is hashed while it is read and must match its SHA-256 name, or its item
//!   is not copied (and counted as failed); the node's own copy is left untouched either way.
//! - One audit record ([`crate::audit::event::StoreCopied`]) summarises the run.
//!
//! Must never: delete anything in the node's data directory (the source stays, to fall back
//! on; the one change is the SQLite quarantine taking over file records left beside it, as the
//! node itself does when it starts), or copy login sessions (logging in again on the cluster is cheap;
//! a copied session would outlive the node's own rules for it).

use std::path::Path;

use crate::audit::event::StoreCopied;
use crate::audit::AuditEvent;
use crate::config::{ServiceConfig, StoreBackend};
use crate::error::{Error, Result};
use crate::store::pg_quarantine::PgQuarantine;
use crate::store::postgres::{block_on, Pg};
use crate::store::quarantine::{FsQuarantine, QuarantineStore, SqliteQuarantine};

/// What one run copied.
pub type CopyReport = StoreCopied;

fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::transient(format!("PostgreSQL: {what}")).with_source(e)
}

fn sqlite_error(what: &str, e: rusqlite::Error) -> Error {
    Error::transient(format!("review.db: {what}")).with_source(e)
}

/// Copies the node's quarantine, accounts and release requests (from `config`'s data
/// directory) into the database `config.store` names, and audits the run in the node's log.
///
/// # Errors
/// The configuration does not name PostgreSQL, the data directory is in use (the service
/// runs), or the node's stores or the database cannot be read or written. Items that cannot
/// be copied are not errors: they are listed in the report.
pub fn sqlite_to_postgres(config: &ServiceConfig) -> Result<CopyReport> {
    if config.store.backend != StoreBackend::Postgres {
        return Err(Error::config(
            "store copy: [store] backend must be \"postgres\" (the database to copy into)",
        ));
    }
    let _lock = crate::store::lock_data_dir(config)?;
    let audit = crate::store::open_audit(config)?;
    let pg = Pg::shared(&config.store)?;
    let mut report = StoreCopied {
        from: "sqlite".into(),
        to: "postgres".into(),
        items_copied: 0,
        items_skipped: 0,
        items_failed: Vec::new(),
        bytes_copied: 0,
        users_copied: 0,
        users_skipped: 0,
        users_differing: Vec::new(),
        requests_copied: 0,
        requests_skipped: 0,
        requests_without_item: Vec::new(),
    };
    // Items before the requests that name them: a running node closes an open request whose
    // item the cluster's quarantine lacks as an orphan.
    copy_quarantine(config, &pg, &mut report)?;
    copy_review(&config.data.dir, &pg, &mut report)?;
    audit
        .append(AuditEvent::StoreCopied(report.clone()))
        .map_err(|e| Error::transient(format!("audit log: {e}")))?;
    Ok(report)
}

/// The quarantine: every item the node holds, its blob streamed and hashed on the way.
fn copy_quarantine(
    config: &ServiceConfig,
    pg: &std::sync::Arc<Pg>,
    report: &mut StoreCopied,
) -> Result<()> {
    let root = config.data.dir.join("quarantine");
    if !root.exists() {
        return Ok(());
    }
    // The node's SQLite store (which, as at the node's own start, takes over records a file
    // store left beside it), or a file store alone, read as it is.
    let source: Box<dyn QuarantineStore> = if root.join("quarantine.db").exists() {
        Box::new(SqliteQuarantine::open(&root).map_err(|e| Error::io("the node's quarantine", e))?)
    } else {
        Box::new(FsQuarantine::open(&root).map_err(|e| Error::io("the node's quarantine", e))?)
    };
    let target = PgQuarantine::new(std::sync::Arc::clone(pg), config.audit.node.clone());
    let mut blobs_seen = std::collections::HashSet::new();
    for item in source
        .list()
        .map_err(|e| Error::io("the node's quarantine", e))?
    {
        match target.get(&item.id) {
            Ok(_) => {
                report.items_skipped += 1;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("the cluster's quarantine", e)),
        }
        let hex = item.sha256.len() == 64
            && item
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            tracing::error!(item = %item.id, "store copy: the record's SHA-256 is not a hash");
            report.items_failed.push(item.id.clone());
            continue;
        }
        // Streamed from the blob file, hashed as it is written: the database holds it only
        // if the bytes are the ones the name promises.
        let copied = std::fs::File::open(root.join("blobs").join(&item.sha256))
            .and_then(|blob| target.put_file(&item, &blob));
        match copied {
            Ok(()) => {
                report.items_copied += 1;
                if blobs_seen.insert(item.sha256.clone()) {
                    report.bytes_copied += item.size;
                }
            }
            Err(e) => {
                tracing::error!(item = %item.id, error = %e, "store copy: item not copied");
                report.items_failed.push(item.id.clone());
            }
        }
    }
    Ok(())
}

/// Accounts and release requests from `review.db` (opened read-only; an old one may lack the
/// columns added later, which then copy as their defaults).
fn copy_review(data: &Path, pg: &Pg, report: &mut StoreCopied) -> Result<()> {
    let path = data.join("review.db");
    if !path.exists() {
        return Ok(());
    }
    let db = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error("open", e))?;
    let has = |table: &str, column: &str| -> Result<bool> {
        db.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))
        .and_then(|mut st| st.exists([column]))
        .map_err(|e| sqlite_error("read the schema", e))
    };
    let optional = |table: &str, column: &str| -> Result<String> {
        Ok(if has(table, column)? {
            column.to_string()
        } else {
            "0".to_string()
        })
    };
    let user_sql = format!(
        "SELECT name, role, hash, must_change, locked_until, failed, failed_since_login,
                last_login_at, last_login_from, created_at, {}, {} FROM users ORDER BY name",
        optional("users", "disabled")?,
        optional("users", "epoch")?
    );
    struct User {
        name: String,
        role: String,
        hash: String,
        ints: [i64; 4],
        last_login_at: Option<String>,
        last_login_from: Option<String>,
        created_at: String,
        disabled: i64,
        epoch: i64,
    }
    let users: Vec<User> = if has("users", "name")? {
        let mut st = db
            .prepare(&user_sql)
            .map_err(|e| sqlite_error("read accounts", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    hash: r.get(2)?,
                    ints: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                    last_login_at: r.get(7)?,
                    last_login_from: r.get(8)?,
                    created_at: r.get(9)?,
                    disabled: r.get(10)?,
                    epoch: r.get(11)?,
                })
            })
            .map_err(|e| sqlite_error("read accounts", e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| sqlite_error("read accounts", e))?;
        rows
    } else {
        Vec::new()
    };
    type Request = [Option<String>; 11];
    let requests: Vec<Request> = if has("requests", "id")? {
        let mut st = db
            .prepare(
                "SELECT id, item_id, requester, target, reason, state, decided_by,
                        decision_reason, requested_at, decided_at, delivery
                 FROM requests ORDER BY requested_at, id",
            )
            .map_err(|e| sqlite_error("read release requests", e))?;
        let rows = st
            .query_map([], |r| {
                let mut row: Request = Default::default();
                for (n, cell) in row.iter_mut().enumerate() {
                    *cell = r.get(n)?;
                }
                Ok(row)
            })
            .map_err(|e| sqlite_error("read release requests", e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| sqlite_error("read release requests", e))?;
        rows
    } else {
        Vec::new()
    };
    drop(db);

    let client = pg.conn()?;
    for u in &users {
        let [must_change, locked_until, failed, failed_since_login] = u.ints;
        let inserted = block_on(client.execute(
            "INSERT INTO users (name, role, hash, must_change, locked_until, failed,
                 failed_since_login, last_login_at, last_login_from, created_at, disabled, epoch)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (name) DO NOTHING",
            &[
                &u.name,
                &u.role,
                &u.hash,
                &must_change,
                &locked_until,
                &failed,
                &failed_since_login,
                &u.last_login_at,
                &u.last_login_from,
                &u.created_at,
                &u.disabled,
                &u.epoch,
            ],
        ))
        .map_err(|e| pg_error("copy an account", e))?;
        if inserted == 1 {
            report.users_copied += 1;
            continue;
        }
        let there: String =
            block_on(client.query_one("SELECT hash FROM users WHERE name = $1", &[&u.name]))
                .and_then(|r| r.try_get(0))
                .map_err(|e| pg_error("read an account", e))?;
        if there == u.hash {
            report.users_skipped += 1;
        } else {
            report.users_differing.push(u.name.clone());
        }
    }
    for r in &requests {
        // An open request only with its item there (else the nodes would close it).
        let inserted = block_on(client.execute(
            "INSERT INTO requests (id, item_id, requester, target, reason, state, decided_by,
                 decision_reason, requested_at, decided_at, delivery)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
             WHERE $6::TEXT NOT IN ('pending', 'approved')
                OR EXISTS (SELECT 1 FROM quarantine_items WHERE id = $2::TEXT)
             ON CONFLICT (id) DO NOTHING",
            &[
                &r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7], &r[8], &r[9], &r[10],
            ],
        ))
        .map_err(|e| pg_error("copy a release request", e))?;
        let there = || {
            block_on(client.query_opt("SELECT 1 FROM requests WHERE id = $1", &[&r[0]]))
                .map(|row| row.is_some())
                .map_err(|e| pg_error("read a release request", e))
        };
        if inserted == 1 {
            report.requests_copied += 1;
        } else if there()? {
            report.requests_skipped += 1;
        } else {
            report
                .requests_without_item
                .push(r[0].clone().unwrap_or_default());
        }
    }
    Ok(())
}
