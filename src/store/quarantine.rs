//! The quarantine store: originals that could not be made safe, kept for administrators.
//!
//! Owns: the [`QuarantineStore`] seam (the cluster's PostgreSQL store is
//! `crate::store::pg_quarantine`; [`open_configured`] picks) and two
//! implementations sharing content-addressed blobs (`blobs/<sha256>`): SQLite item records
//! (`quarantine.db`, the default) and one JSON record per item (`items/<id>.json`).
//! Invariants: `put` returns only after the blob and the record are fsynced; blobs and file
//! records are written through `crate::durable` (a temporary file of its own in `tmp/`, then
//! renamed), so a crash never leaves a partial blob under a hash name and two workers holding
//! the same content never write through one file; the same bytes quarantined twice are stored
//! once. A record is never committed pointing at a blob that is being removed: storing
//! (blob, then record) and removing (record, then the blob if nothing else refers to it) hold
//! the lock of that content's hash ([`blob_lock`]) throughout. Only the quarantine accepts
//! untrusted bytes — nothing here is ever forwarded.
//! rusqlite rather than sqlx: the stores are called from blocking threads, and the two crates
//! cannot link SQLite side by side.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::durable::{self, sync_dir, Temp};

/// The lock of the blob `sha256`, one of a fixed set shared by every store of the process (a
/// process holds the data directory alone, and the CLI and control socket open stores of
/// their own beside the service's): held from the check that a blob exists until the record
/// that refers to it is committed, and from a record's removal until its blob is dropped.
fn blob_lock(sha256: &str) -> MutexGuard<'static, ()> {
    const STRIPES: usize = 64;
    static LOCKS: [Mutex<()>; STRIPES] = [const { Mutex::new(()) }; STRIPES];
    // FNV-1a: any spread will do, the name is already a hash.
    let h = sha256.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Nothing guarded lives in the mutex: a panic elsewhere leaves no broken state.
    LOCKS[(h % STRIPES as u64) as usize]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// One quarantined item's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineItem {
    /// Item ID (shown in notices).
    pub id: String,
    /// `mail` (a whole message or an attachment) or `import`.
    pub source: String,
    /// The queue or import ID it came from.
    pub origin_id: String,
    /// File name, when it had one.
    pub name: Option<String>,
    /// Reason code.
    pub reason: String,
    /// Reason detail.
    pub detail: String,
    /// SHA-256 of the bytes (the blob's name).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was quarantined.
    pub at: String,
    /// The sanitizer or mail report.
    pub report: serde_json::Value,
    /// Envelope sender of the mail it came from.
    #[serde(default)]
    pub mail_from: Option<String>,
    /// Envelope recipients of the mail it came from (where a release goes by default).
    #[serde(default)]
    pub rcpt_to: Vec<String>,
    /// Subject of the mail it came from, decoded.
    #[serde(default)]
    pub subject: Option<String>,
    /// The type detected from content.
    #[serde(default)]
    pub detected_type: Option<String>,
}

impl QuarantineItem {
    /// A file held because it is encrypted (PPAP), not a whole message held for its own
    /// encryption (S/MIME, PGP).
    pub fn is_ppap(&self) -> bool {
        self.reason == "encrypted" && self.detected_type.as_deref() != Some("message/rfc822")
    }

    /// What the report lists of an encrypted file without its password: the member names and
    /// declared sizes (empty when the names are encrypted too, or the format has none), and
    /// whether the names could be seen.
    pub fn encrypted_members(&self) -> (Vec<(String, u64)>, bool) {
        let listing = &self.report["encrypted"];
        let visible = listing["names_visible"].as_bool().unwrap_or(false);
        let members = listing["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| {
                        Some((
                            x["name"].as_str()?.to_string(),
                            x["size"].as_u64().unwrap_or(0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (members, visible)
    }
}

/// The key of the report a store gives an item whose stored report it cannot read: the
/// report is what the release check looks into for a virus inside a container, so an
/// unreadable one must not read as an empty one (`crate::review` never releases such an item).
pub const UNREADABLE_REPORT: &str = "unreadable_report";

/// An item's stored report (JSON text) as a value; text that does not parse becomes
/// `{"unreadable_report": true}`, never `null`.
pub fn read_report(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({ UNREADABLE_REPORT: true }))
}

/// The unlocked state of a PPAP item (a row of `ppap.db`, kept by `crate::ppap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unlocked {
    /// The item.
    pub item_id: String,
    /// How the password was given.
    pub way: String,
    /// What the registry made of the content.
    pub verdict: String,
    /// When (RFC 3339).
    pub at: String,
    /// Where the message went.
    pub destination: String,
}

/// Where quarantined originals go.
pub trait QuarantineStore: Send + Sync {
    /// Stores the bytes and the record durably. Storing an ID again (a message converted a
    /// second time after its delivery was deferred) updates the record but keeps the time
    /// it was first held, so retention and the administrators' notices count from then and
    /// it is not announced twice.
    ///
    /// # Errors
    /// Nothing may be acknowledged as quarantined unless this succeeded.
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()>;
    /// Every item, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn list(&self) -> std::io::Result<Vec<QuarantineItem>>;
    /// Items quarantined after `at` (RFC 3339), oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn list_since(&self, at: &str) -> std::io::Result<Vec<QuarantineItem>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|i| i.at.as_str() > at)
            .collect())
    }
    /// One item's record.
    ///
    /// # Errors
    /// Unknown item (`NotFound`) or an unreadable store.
    fn get(&self, id: &str) -> std::io::Result<QuarantineItem>;
    /// The bytes of an item.
    ///
    /// # Errors
    /// Unknown item or unreadable blob.
    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>>;
    /// Stores a file's bytes (streamed: an import may be larger than memory should hold).
    ///
    /// # Errors
    /// As [`QuarantineStore::put`].
    fn put_file(&self, item: &QuarantineItem, file: &File) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let mut bytes = Vec::new();
        let mut reader = file;
        reader.seek(std::io::SeekFrom::Start(0))?;
        reader.read_to_end(&mut bytes)?;
        self.put(item, &bytes)
    }
    /// Deletes an item (and its blob once no other item shares it). The caller audits first.
    ///
    /// # Errors
    /// Unknown item, or the store cannot be written.
    fn remove(&self, id: &str) -> std::io::Result<()>;
}

/// Opens the quarantine `config` names: the cluster's shared one in PostgreSQL when `[store]
/// backend = "postgres"` (through the process's one [`crate::store::postgres::Pg`]; `[quarantine]
/// store` is then not used, and `files` is refused by the configuration check), otherwise
/// the node's own under `<data dir>/quarantine` as [`open`].
///
/// # Errors
/// The store cannot be opened (the database is unreachable or its schema is not this
/// binary's).
pub fn open_configured(
    config: &crate::config::ServiceConfig,
) -> std::io::Result<std::sync::Arc<dyn QuarantineStore>> {
    match config.store.backend {
        crate::config::StoreBackend::Postgres => {
            let pg =
                crate::store::postgres::Pg::shared(&config.store).map_err(std::io::Error::other)?;
            Ok(std::sync::Arc::new(
                crate::store::pg_quarantine::PgQuarantine::new(pg, config.audit.node.clone()),
            ))
        }
        crate::config::StoreBackend::Sqlite => {
            open(config.data.dir.join("quarantine"), config.quarantine.store)
        }
    }
}

/// Opens the node-local store of the given kind under `root`.
///
/// # Errors
/// The store cannot be opened.
pub fn open(
    root: impl Into<PathBuf>,
    backend: crate::config::QuarantineBackend,
) -> std::io::Result<std::sync::Arc<dyn QuarantineStore>> {
    Ok(match backend {
        crate::config::QuarantineBackend::Sqlite => {
            std::sync::Arc::new(SqliteQuarantine::open(root)?)
        }
        crate::config::QuarantineBackend::Files => std::sync::Arc::new(FsQuarantine::open(root)?),
    })
}

/// The file-system store.
pub struct FsQuarantine {
    root: PathBuf,
}

impl FsQuarantine {
    /// Opens (creating) the store.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs"))?;
        fs::create_dir_all(root.join("items"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root })
    }

    /// Writes `dir/name` durably, its temporary file in `tmp/` (never in `items/`, whose
    /// listing reads every file there).
    fn write_synced(&self, name: &str, dir: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut temp = Temp::create(&self.root.join("tmp"))?;
        temp.file().write_all(bytes)?;
        temp.commit(&self.root.join(dir).join(name), durable::Mode::Replace)
            .map(|_| ())
    }
}

impl QuarantineStore for FsQuarantine {
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()> {
        let _blob = blob_lock(&item.sha256);
        self.put_blob(&item.sha256, bytes)?;
        self.put_record(item)
    }

    fn list(&self) -> std::io::Result<Vec<QuarantineItem>> {
        let mut items: Vec<QuarantineItem> = fs::read_dir(self.root.join("items"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        items.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(items)
    }

    fn get(&self, id: &str) -> std::io::Result<QuarantineItem> {
        self.item(id)
    }

    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>> {
        let item = self.item(id)?;
        fs::read(self.blob_path(&item.sha256))
    }

    fn put_file(&self, item: &QuarantineItem, file: &File) -> std::io::Result<()> {
        let _blob = blob_lock(&item.sha256);
        self.put_blob_file(&item.sha256, file)?;
        self.put_record(item)
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        loop {
            let sha256 = self.item(id)?.sha256;
            let _blob = blob_lock(&sha256);
            // Held again meanwhile with other content: lock that content's blob instead.
            if self.item(id)?.sha256 != sha256 {
                continue;
            }
            fs::remove_file(self.item_path(id))?;
            sync_dir(&self.root.join("items"))?;
            let shared = self.list()?.iter().any(|other| other.sha256 == sha256);
            if !shared {
                self.drop_blob(&sha256)?;
            }
            return Ok(());
        }
    }
}

impl FsQuarantine {
    /// The record path of an item; IDs are reduced to `[A-Za-z0-9-]` so none names a path.
    fn item_path(&self, id: &str) -> PathBuf {
        let safe: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.root.join("items").join(format!("{safe}.json"))
    }

    fn item(&self, id: &str) -> std::io::Result<QuarantineItem> {
        if !valid_id(id) {
            return Err(not_found(id));
        }
        serde_json::from_slice(&fs::read(self.item_path(id))?).map_err(std::io::Error::other)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(sha256)
    }

    /// Stores a blob from memory (once per content). The caller holds [`blob_lock`].
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        if self.blob_path(sha256).exists() {
            return Ok(());
        }
        self.write_synced(sha256, "blobs", bytes)
    }

    /// Stores a blob streamed from a file (once per content), hashing it on the way. The
    /// caller holds [`blob_lock`].
    fn put_blob_file(&self, sha256: &str, file: &File) -> std::io::Result<()> {
        if self.blob_path(sha256).exists() {
            return Ok(());
        }
        // Copied from the descriptor the importer checked (not by path, which could have been
        // swapped since), into a file of our own mode rather than the original's.
        // The blob is named by the hash of the bytes the importer checked; the file's owner can
        // still write to it, so the copy is hashed as it goes and must match that name, or a
        // later file with the checked hash would be served these other bytes.
        use sha2::Digest;
        use std::io::Read;
        let mut reader = file;
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0))?;
        let mut temp = Temp::create(&self.root.join("tmp"))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            temp.file().write_all(&buf[..n])?;
        }
        if hex::encode(hasher.finalize()) != sha256 {
            // Dropping the temporary file removes it.
            return Err(std::io::Error::other(
                "the file changed after it was checked; not held under the checked hash",
            ));
        }
        temp.commit(&self.blob_path(sha256), durable::Mode::Replace)
            .map(|_| ())
    }

    /// Removes a blob no item refers to any more. The caller holds [`blob_lock`].
    fn drop_blob(&self, sha256: &str) -> std::io::Result<()> {
        match fs::remove_file(self.blob_path(sha256)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.root.join("blobs"))
    }

    fn put_record(&self, item: &QuarantineItem) -> std::io::Result<()> {
        let first_held = self.item(&item.id).ok().map(|old| old.at);
        let item = match first_held {
            Some(at) => &QuarantineItem { at, ..item.clone() },
            None => item,
        };
        let json = serde_json::to_vec_pretty(item).map_err(std::io::Error::other)?;
        self.write_synced(&format!("{}.json", item.id), "items", &json)
    }
}

/// The SQLite store: item records in `quarantine.db` (WAL, `synchronous = FULL`, so a
/// committed insert survives a crash), content-addressed blobs beside it as in
/// [`FsQuarantine`]. Records a file store left behind are taken over at open.
pub struct SqliteQuarantine {
    files: FsQuarantine,
    db: std::sync::Mutex<rusqlite::Connection>,
}

impl SqliteQuarantine {
    /// Opens (creating) the store under `root`.
    ///
    /// # Errors
    /// The directories or the database cannot be opened.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        let files = FsQuarantine::open(&root)?;
        let db = rusqlite::Connection::open(root.join("quarantine.db")).map_err(sql)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS items (
                 id TEXT PRIMARY KEY,
                 source TEXT NOT NULL,
                 origin_id TEXT NOT NULL,
                 name TEXT,
                 reason TEXT NOT NULL,
                 detail TEXT NOT NULL,
                 sha256 TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 at TEXT NOT NULL,
                 report TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS items_at ON items (at);
             CREATE INDEX IF NOT EXISTS items_sha256 ON items (sha256);",
        )
        .map_err(sql)?;
        // Columns added after the first release: a database from before gains them empty.
        let has_envelope: bool = db
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('items') WHERE name = 'envelope'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql)?
            > 0;
        if !has_envelope {
            db.execute_batch("ALTER TABLE items ADD COLUMN envelope TEXT NOT NULL DEFAULT '{}';")
                .map_err(sql)?;
        }
        let store = Self {
            files,
            db: std::sync::Mutex::new(db),
        };
        // A file store used before: its records move into the database (blobs stay put).
        for item in store.files.list()? {
            store.insert(&item)?;
            fs::remove_file(store.files.item_path(&item.id))?;
        }
        Ok(store)
    }

    fn insert(&self, item: &QuarantineItem) -> std::io::Result<()> {
        let db = self
            .db
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?;
        db.execute(
            "INSERT INTO items (id, source, origin_id, name, reason, detail, sha256, size, at, report, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET source = excluded.source,
                 origin_id = excluded.origin_id, name = excluded.name, reason = excluded.reason,
                 detail = excluded.detail, sha256 = excluded.sha256, size = excluded.size,
                 report = excluded.report, envelope = excluded.envelope",
            rusqlite::params![
                item.id,
                item.source,
                item.origin_id,
                item.name,
                item.reason,
                item.detail,
                item.sha256,
                item.size as i64,
                item.at,
                item.report.to_string(),
                serde_json::json!({
                    "mail_from": item.mail_from,
                    "rcpt_to": item.rcpt_to,
                    "subject": item.subject,
                    "detected_type": item.detected_type,
                })
                .to_string(),
            ],
        )
        .map_err(sql)?;
        Ok(())
    }
}

/// Whether `id` has the shape of an item ID (`[A-Za-z0-9-]`, 1–64 characters): anything else,
/// path-like IDs above all, is refused before it reaches a store.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn not_found(id: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no quarantined item {id:?}"),
    )
}

fn sql(e: rusqlite::Error) -> std::io::Error {
    std::io::Error::other(format!("quarantine database: {e}"))
}

fn row_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineItem> {
    let report: String = row.get(9)?;
    let envelope: serde_json::Value =
        serde_json::from_str(&row.get::<_, String>(10)?).unwrap_or_default();
    let text = |key: &str| envelope[key].as_str().map(str::to_string);
    Ok(QuarantineItem {
        mail_from: text("mail_from"),
        rcpt_to: envelope["rcpt_to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        subject: text("subject"),
        detected_type: text("detected_type"),
        id: row.get(0)?,
        source: row.get(1)?,
        origin_id: row.get(2)?,
        name: row.get(3)?,
        reason: row.get(4)?,
        detail: row.get(5)?,
        sha256: row.get(6)?,
        size: row.get::<_, i64>(7)? as u64,
        at: row.get(8)?,
        report: read_report(&report),
    })
}

const COLUMNS: &str =
    "id, source, origin_id, name, reason, detail, sha256, size, at, report, envelope";

impl QuarantineStore for SqliteQuarantine {
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()> {
        let _blob = blob_lock(&item.sha256);
        self.files.put_blob(&item.sha256, bytes)?;
        self.insert(item)
    }

    fn put_file(&self, item: &QuarantineItem, file: &File) -> std::io::Result<()> {
        let _blob = blob_lock(&item.sha256);
        self.files.put_blob_file(&item.sha256, file)?;
        self.insert(item)
    }

    fn list(&self) -> std::io::Result<Vec<QuarantineItem>> {
        let db = self
            .db
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?;
        let mut stmt = db
            .prepare(&format!("SELECT {COLUMNS} FROM items ORDER BY at, id"))
            .map_err(sql)?;
        let items = stmt
            .query_map([], row_item)
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(items)
    }

    fn list_since(&self, at: &str) -> std::io::Result<Vec<QuarantineItem>> {
        let db = self
            .db
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?;
        let mut stmt = db
            .prepare(&format!(
                "SELECT {COLUMNS} FROM items WHERE at > ?1 ORDER BY at, id"
            ))
            .map_err(sql)?;
        let items = stmt
            .query_map([at], row_item)
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(items)
    }

    fn get(&self, id: &str) -> std::io::Result<QuarantineItem> {
        let db = self
            .db
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?;
        db.query_row(
            &format!("SELECT {COLUMNS} FROM items WHERE id = ?1"),
            [id],
            row_item,
        )
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => not_found(id),
            other => sql(other),
        })
    }

    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>> {
        let sha: String = {
            let db = self
                .db
                .lock()
                .map_err(|_| std::io::Error::other("lock poisoned"))?;
            db.query_row("SELECT sha256 FROM items WHERE id = ?1", [id], |r| r.get(0))
                .map_err(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => {
                        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no item {id}"))
                    }
                    other => sql(other),
                })?
        };
        fs::read(self.files.blob_path(&sha))
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        let sha_of = |db: &rusqlite::Connection| -> std::io::Result<String> {
            db.query_row("SELECT sha256 FROM items WHERE id = ?1", [id], |r| r.get(0))
                .map_err(sql)
        };
        let lock = || {
            self.db
                .lock()
                .map_err(|_| std::io::Error::other("lock poisoned"))
        };
        // The blob's lock before the database's, as `put` takes them.
        let (_blob, db, sha) = loop {
            let sha = sha_of(&*lock()?)?;
            let blob = blob_lock(&sha);
            let db = lock()?;
            // Held again meanwhile with other content: lock that content's blob instead.
            if sha_of(&db)? == sha {
                break (blob, db, sha);
            }
        };
        db.execute("DELETE FROM items WHERE id = ?1", [id])
            .map_err(sql)?;
        let shared: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM items WHERE sha256 = ?1",
                [&sha],
                |r| r.get(0),
            )
            .map_err(sql)?;
        drop(db);
        if shared == 0 {
            self.files.drop_blob(&sha)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    fn item(id: &str, at: &str, body: &[u8]) -> QuarantineItem {
        QuarantineItem {
            id: id.into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: Some("見積書.zip".into()),
            reason: "encrypted".into(),
            detail: "PPAP".into(),
            sha256: mukaika_sanitizers::report::sha256_hex(body),
            size: body.len() as u64,
            at: at.into(),
            report: serde_json::json!({"verdict": "quarantined"}),
            mail_from: Some("sender@example.com".into()),
            rcpt_to: vec!["staff@city.example.lg.jp".into()],
            subject: Some("見積書の送付".into()),
            detected_type: Some("zip".into()),
        }
    }

    /// The behaviour every store must have.
    fn exercise(store: &dyn QuarantineStore) {
        store
            .put(&item("b", "2026-01-02T00:00:00.000Z", b"same"), b"same")
            .unwrap();
        store
            .put(&item("a", "2026-01-01T00:00:00.000Z", b"same"), b"same")
            .unwrap();
        store
            .put(&item("c", "2026-01-03T00:00:00.000Z", b"other"), b"other")
            .unwrap();
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["a", "b", "c"], "oldest first");
        let later: Vec<String> = store
            .list_since("2026-01-01T00:00:00.000Z")
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(later, ["b", "c"]);
        // Held again (a retried conversion): the record updates, the first time stays.
        let mut again = item("a", "2026-01-09T00:00:00.000Z", b"same");
        again.detail = "PPAP (retried)".into();
        store.put(&again, b"same").unwrap();
        let a = store.get("a").unwrap();
        assert_eq!(
            (a.at.as_str(), a.detail.as_str()),
            ("2026-01-01T00:00:00.000Z", "PPAP (retried)")
        );
        assert_eq!(
            store.list_since("2026-01-03T00:00:00.000Z").unwrap().len(),
            0
        );
        assert_eq!(store.bytes("a").unwrap(), b"same");
        let listed = &store.list().unwrap()[0];
        assert_eq!(listed.name.as_deref(), Some("見積書.zip"));
        assert_eq!(listed.report["verdict"], "quarantined");
        assert_eq!(listed.rcpt_to, ["staff@city.example.lg.jp"]);
        assert_eq!(listed.subject.as_deref(), Some("見積書の送付"));
        assert_eq!(
            store.get("c").unwrap().detected_type.as_deref(),
            Some("zip")
        );
        assert!(store.get("../a").is_err());
        // A shared blob stays until its last item goes.
        store.remove("a").unwrap();
        assert_eq!(store.bytes("b").unwrap(), b"same");
        store.remove("b").unwrap();
        assert!(store.bytes("b").is_err());
        assert!(store.remove("nope").is_err());
    }

    #[test]
    fn a_file_changed_after_it_was_checked_is_not_held_under_the_checked_hash() {
        let dir = tempfile::tempdir().unwrap();
        let checked = dir.path().join("checked.bin");
        fs::write(&checked, b"checked bytes").unwrap();
        let held = item("I1", "2026-01-01T00:00:00.000Z", b"checked bytes");
        // The owner rewrites the same inode between the check and the copy.
        fs::write(&checked, b"other bytes!!").unwrap();
        let file = File::open(&checked).unwrap();
        for store in [
            open(
                dir.path().join("files"),
                crate::config::QuarantineBackend::Files,
            )
            .unwrap(),
            open(
                dir.path().join("sqlite"),
                crate::config::QuarantineBackend::Sqlite,
            )
            .unwrap(),
        ] {
            assert!(store.put_file(&held, &file).is_err());
            assert!(store.get("I1").is_err(), "no record without its blob");
            assert!(store.bytes("I1").is_err());
        }
    }

    fn both_stores(dir: &std::path::Path) -> [std::sync::Arc<dyn QuarantineStore>; 2] {
        [
            open(dir.join("files"), crate::config::QuarantineBackend::Files).unwrap(),
            open(dir.join("sqlite"), crate::config::QuarantineBackend::Sqlite).unwrap(),
        ]
    }

    #[test]
    fn workers_holding_the_same_attachment_at_once_store_one_intact_blob() {
        // Large enough that the writes overlap; every worker starts at the same instant.
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let from_file = dir.path().join("attachment.bin");
        fs::write(&from_file, &body).unwrap();
        for (n, store) in both_stores(dir.path()).into_iter().enumerate() {
            let barrier = std::sync::Barrier::new(8);
            let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|w| {
                        let (store, barrier, body) = (&store, &barrier, &body);
                        let from_file = &from_file;
                        s.spawn(move || {
                            let held = item(&format!("W{w}"), "2026-01-01T00:00:00.000Z", body);
                            barrier.wait();
                            if w % 2 == 0 {
                                store.put(&held, body)
                            } else {
                                store.put_file(&held, &File::open(from_file).unwrap())
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in &results {
                assert!(r.is_ok(), "store {n}: {r:?}");
            }
            for w in 0..8 {
                assert!(
                    store.bytes(&format!("W{w}")).unwrap() == body,
                    "store {n}: torn blob"
                );
            }
            let root = dir.path().join(["files", "sqlite"][n]);
            let left: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
            assert!(left.is_empty(), "store {n}: temporary files left: {left:?}");
        }
    }

    #[test]
    fn a_record_is_never_committed_pointing_at_a_blob_being_removed() {
        // Each worker holds an item and removes it again, all with the same content: a
        // removal that sees no other record drops the blob, and must not do so while another
        // worker is between finding the blob present and committing its record.
        let dir = tempfile::tempdir().unwrap();
        for (n, store) in both_stores(dir.path()).into_iter().enumerate() {
            let missing = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for w in 0..4 {
                    let (store, missing) = (&store, &missing);
                    s.spawn(move || {
                        for i in 0..60 {
                            let id = format!("R{w}-{i}");
                            let held = item(&id, "2026-01-01T00:00:00.000Z", b"shared");
                            store.put(&held, b"shared").unwrap();
                            if store.bytes(&id).is_err() {
                                missing.lock().unwrap().push(id.clone());
                            }
                            store.remove(&id).unwrap();
                        }
                    });
                }
            });
            let missing = missing.into_inner().unwrap();
            assert!(
                missing.is_empty(),
                "store {n}: records without a blob: {missing:?}"
            );
            assert!(store.list().unwrap().is_empty());
        }
    }

    #[test]
    fn file_and_sqlite_stores_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&FsQuarantine::open(dir.path().join("files")).unwrap());
        exercise(&SqliteQuarantine::open(dir.path().join("sqlite")).unwrap());
    }

    #[test]
    fn sqlite_store_survives_reopening_and_takes_over_file_records() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("q");
        let files = FsQuarantine::open(&root).unwrap();
        files
            .put(&item("old", "2025-01-01T00:00:00.000Z", b"x"), b"x")
            .unwrap();
        drop(files);
        let store = SqliteQuarantine::open(&root).unwrap();
        store
            .put(&item("new", "2026-01-01T00:00:00.000Z", b"y"), b"y")
            .unwrap();
        drop(store);
        let store = SqliteQuarantine::open(&root).unwrap();
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["old", "new"]);
        assert_eq!(store.bytes("old").unwrap(), b"x");
        assert!(
            !root.join("items/old.json").exists(),
            "the record moved into the database"
        );
    }
}
