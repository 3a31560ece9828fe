//! The spool: the durable queue between SMTP intake and the pipeline.
//!
//! Owns: directories `tmp/ incoming/ active/ deferred/ hold/ corrupt/`, each item being
//! `<id>.eml` (the message exactly as received) and `<id>.json` (envelope, hash, attempts).
//! Invariants (Postfix qmgr and stalwart's queue are the models):
//! - Intake writes both files to `tmp/`, fsyncs them, renames the message and then its
//!   metadata into `incoming/` and fsyncs the directory; only then may SMTP answer 250. The
//!   `.json` is the commit marker: a message without one was never acknowledged.
//! - The directory is the truth; channels only wake workers. A worker claims an item by
//!   renaming its `.json` into `active/` (the rename is atomic, so two workers never share
//!   one); a [`Lease`] dropped without an outcome puts the item back — completion defaults to
//!   failure, never to loss.
//! - On open, items left in `active/` go back to `incoming/`; unreadable metadata goes to
//!   `corrupt/` and is reported.
//!
//! Must never: delete an acknowledged item except after its outcome is durable elsewhere.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::smtp::session::Envelope;

const STATES: [&str; 6] = ["tmp", "incoming", "active", "deferred", "hold", "corrupt"];

/// The metadata of one spooled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// Queue ID.
    pub id: String,
    /// SMTP envelope.
    pub envelope: Envelope,
    /// Client address.
    pub client: String,
    /// When it was received (RFC 3339 UTC).
    pub received_at: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the message as received.
    pub sha256: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (milliseconds since the epoch), for deferred items.
    pub next_attempt_ms: Option<u64>,
    /// The last error, for deferred and held items.
    pub last_error: Option<String>,
}

/// Why the spool could not do something.
#[derive(Debug)]
pub struct SpoolError {
    message: String,
    no_space: bool,
}

impl SpoolError {
    fn io(what: &str, path: &Path, e: std::io::Error) -> Self {
        Self {
            message: format!("{what} {}: {e}", path.display()),
            no_space: false,
        }
    }
    /// The disk is (nearly) full: intake answers 452 4.3.1.
    pub fn is_no_space(&self) -> bool {
        self.no_space
    }
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpoolError {}

/// Item counts per state (for metrics and health).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Depths {
    /// Waiting for a worker.
    pub incoming: usize,
    /// Being processed.
    pub active: usize,
    /// Waiting for a retry.
    pub deferred: usize,
    /// Given up; waiting for an operator.
    pub hold: usize,
    /// Unreadable.
    pub corrupt: usize,
}

/// The spool.
pub struct Spool {
    root: PathBuf,
    min_free_bytes: u64,
    counter: AtomicU64,
}

impl Spool {
    /// Opens (creating) the spool and recovers from a crash: `active/` goes back to
    /// `incoming/`, half-written intake is removed (it was never acknowledged), unreadable
    /// metadata goes to `corrupt/`. Returns the spool and the IDs moved to `corrupt/`.
    ///
    /// # Errors
    /// The directories cannot be created or read.
    pub fn open(
        root: impl Into<PathBuf>,
        min_free_bytes: u64,
    ) -> Result<(Arc<Self>, Vec<String>), SpoolError> {
        let root = root.into();
        for state in STATES {
            let dir = root.join(state);
            fs::create_dir_all(&dir).map_err(|e| SpoolError::io("create", &dir, e))?;
        }
        let spool = Arc::new(Spool {
            root,
            min_free_bytes,
            counter: AtomicU64::new(0),
        });
        // Intake that never reached incoming/ was never acknowledged.
        for entry in spool.entries("tmp")? {
            let _ = fs::remove_file(entry);
        }
        for json in spool.items("active")? {
            let id = id_of(&json);
            spool.move_item(&id, "active", "incoming")?;
        }
        let mut corrupt = Vec::new();
        for state in ["incoming", "deferred"] {
            // A message whose metadata never arrived was never acknowledged.
            for eml in spool
                .entries(state)?
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            {
                if !eml.with_extension("json").exists() {
                    let _ = fs::remove_file(&eml);
                }
            }
            for json in spool.items(state)? {
                let id = id_of(&json);
                let readable = fs::read(&json)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ItemMeta>(&b).ok())
                    .is_some();
                if !readable || !json.with_extension("eml").exists() {
                    spool.move_item(&id, state, "corrupt")?;
                    corrupt.push(id);
                }
            }
        }
        for state in STATES {
            sync_dir(&spool.root.join(state))?;
        }
        Ok((spool, corrupt))
    }

    /// The spool's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn new_id(&self) -> String {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{millis:012X}{:05X}{:04X}",
            std::process::id() & 0xFFFFF,
            n & 0xFFFF
        )
    }

    /// Makes a message durable in `incoming/`. Returns only after the data, the metadata and
    /// the directory entry are all fsynced; any failure leaves nothing behind.
    ///
    /// # Errors
    /// No space ([`SpoolError::is_no_space`]) or an I/O failure: SMTP answers 452 or 451.
    pub fn accept(
        &self,
        envelope: Envelope,
        client: &str,
        data: &[u8],
    ) -> Result<ItemMeta, SpoolError> {
        if self
            .free_bytes()
            .is_some_and(|free| free < self.min_free_bytes.saturating_add(data.len() as u64 * 2))
        {
            return Err(SpoolError {
                message: "not enough free disk space".into(),
                no_space: true,
            });
        }
        let id = self.new_id();
        let meta = ItemMeta {
            id: id.clone(),
            envelope,
            client: client.to_string(),
            received_at: crate::audit::log::now_rfc3339(),
            size: data.len() as u64,
            sha256: mukaika_sanitizers::report::sha256_hex(data),
            attempts: 0,
            next_attempt_ms: None,
            last_error: None,
        };
        let tmp = self.root.join("tmp");
        let result = (|| {
            write_synced(&tmp.join(format!("{id}.eml")), data)?;
            write_synced(
                &tmp.join(format!("{id}.json")),
                &serde_json::to_vec(&meta).unwrap_or_default(),
            )?;
            let incoming = self.root.join("incoming");
            rename(
                &tmp.join(format!("{id}.eml")),
                &incoming.join(format!("{id}.eml")),
            )?;
            rename(
                &tmp.join(format!("{id}.json")),
                &incoming.join(format!("{id}.json")),
            )?;
            sync_dir(&incoming)?;
            sync_dir(&tmp)
        })();
        if let Err(e) = result {
            for dir in ["tmp", "incoming"] {
                let _ = fs::remove_file(self.root.join(dir).join(format!("{id}.json")));
                let _ = fs::remove_file(self.root.join(dir).join(format!("{id}.eml")));
            }
            return Err(e);
        }
        Ok(meta)
    }

    /// Removes an accepted item that was never acknowledged (the audit record failed).
    pub fn discard(&self, id: &str) {
        let incoming = self.root.join("incoming");
        let _ = fs::remove_file(incoming.join(format!("{id}.json")));
        let _ = fs::remove_file(incoming.join(format!("{id}.eml")));
        let _ = sync_dir(&incoming);
    }

    /// Claims the oldest item ready for work (incoming, or deferred whose time has come).
    ///
    /// # Errors
    /// The directories cannot be read.
    pub fn lease(self: &Arc<Self>, now_ms: u64) -> Result<Option<Lease>, SpoolError> {
        for state in ["incoming", "deferred"] {
            for json in self.items(state)? {
                let id = id_of(&json);
                if state == "deferred" {
                    let due = fs::read(&json)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<ItemMeta>(&b).ok())
                        .and_then(|m| m.next_attempt_ms)
                        .is_none_or(|t| t <= now_ms);
                    if !due {
                        continue;
                    }
                }
                // Claim by renaming the commit marker: only one worker's rename succeeds.
                let active = self.root.join("active");
                if fs::rename(&json, active.join(format!("{id}.json"))).is_err() {
                    continue;
                }
                rename(
                    &self.root.join(state).join(format!("{id}.eml")),
                    &active.join(format!("{id}.eml")),
                )?;
                let meta = match fs::read(active.join(format!("{id}.json")))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ItemMeta>(&b).ok())
                {
                    Some(m) => m,
                    None => {
                        self.move_item(&id, "active", "corrupt")?;
                        continue;
                    }
                };
                return Ok(Some(Lease {
                    spool: Arc::clone(self),
                    meta,
                    settled: false,
                }));
            }
        }
        Ok(None)
    }

    /// Item counts per state.
    pub fn depths(&self) -> Depths {
        let n = |s: &str| self.items(s).map(|v| v.len()).unwrap_or(0);
        Depths {
            incoming: n("incoming"),
            active: n("active"),
            deferred: n("deferred"),
            hold: n("hold"),
            corrupt: n("corrupt"),
        }
    }

    /// Free bytes on the spool's file system (None if unknown).
    pub fn free_bytes(&self) -> Option<u64> {
        rustix::fs::statvfs(&self.root)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Metadata of every item in a state, oldest first.
    pub fn list(&self, state: &str) -> Vec<ItemMeta> {
        self.items(state)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Finds an item by ID: its state and metadata.
    pub fn find(&self, id: &str) -> Option<(&'static str, ItemMeta)> {
        let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        ["incoming", "active", "deferred", "hold", "corrupt"]
            .into_iter()
            .find_map(|state| {
                let bytes = fs::read(self.root.join(state).join(format!("{id}.json"))).ok()?;
                Some((state, serde_json::from_slice(&bytes).ok()?))
            })
    }

    /// Operator moves (`mukaika queue retry|hold|release`): `to` is `incoming` or `hold`.
    /// Items being worked on (`active/`) are never moved under a worker's feet.
    ///
    /// # Errors
    /// Unknown ID, an active item, or a failed rename.
    pub fn operator_move(&self, id: &str, to: &str) -> Result<&'static str, SpoolError> {
        let err = |m: String| SpoolError {
            message: m,
            no_space: false,
        };
        let (from, mut meta) = self
            .find(id)
            .ok_or_else(|| err(format!("{id}: no such queue item")))?;
        if from == "active" {
            return Err(err(format!(
                "{id}: being processed right now; try again in a moment"
            )));
        }
        if from == to {
            return Ok(from);
        }
        let to: &'static str = if to == "hold" { "hold" } else { "incoming" };
        meta.next_attempt_ms = None;
        let tmp = self.root.join("tmp").join(format!("{}.json", meta.id));
        write_synced(&tmp, &serde_json::to_vec(&meta).unwrap_or_default())?;
        rename(
            &tmp,
            &self.root.join(from).join(format!("{}.json", meta.id)),
        )?;
        self.move_item(&meta.id, from, to)?;
        Ok(from)
    }

    fn entries(&self, state: &str) -> Result<Vec<PathBuf>, SpoolError> {
        let dir = self.root.join(state);
        let mut v: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| SpoolError::io("read", &dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    }

    fn items(&self, state: &str) -> Result<Vec<PathBuf>, SpoolError> {
        Ok(self
            .entries(state)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect())
    }

    fn move_item(&self, id: &str, from: &str, to: &str) -> Result<(), SpoolError> {
        for ext in ["eml", "json"] {
            let src = self.root.join(from).join(format!("{id}.{ext}"));
            if src.exists() {
                rename(&src, &self.root.join(to).join(format!("{id}.{ext}")))?;
            }
        }
        sync_dir(&self.root.join(to))?;
        sync_dir(&self.root.join(from))
    }
}

/// A claimed item. Settle it with [`Lease::complete`], [`Lease::defer`] or [`Lease::hold`];
/// dropping it unsettled puts it back in `incoming/`.
pub struct Lease {
    spool: Arc<Spool>,
    meta: ItemMeta,
    settled: bool,
}

impl Lease {
    /// The item's metadata.
    pub fn meta(&self) -> &ItemMeta {
        &self.meta
    }

    /// The message as received.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn data(&self) -> Result<Vec<u8>, SpoolError> {
        let path = self
            .spool
            .root
            .join("active")
            .join(format!("{}.eml", self.meta.id));
        fs::read(&path).map_err(|e| SpoolError::io("read", &path, e))
    }

    /// The outcome is durable elsewhere: remove the item.
    ///
    /// # Errors
    /// The files cannot be removed (the item then stays in active/ and is retried after a
    /// restart — at-least-once, never lost).
    pub fn complete(mut self) -> Result<(), SpoolError> {
        let active = self.spool.root.join("active");
        for ext in ["json", "eml"] {
            let p = active.join(format!("{}.{ext}", self.meta.id));
            fs::remove_file(&p).map_err(|e| SpoolError::io("remove", &p, e))?;
        }
        sync_dir(&active)?;
        self.settled = true;
        Ok(())
    }

    /// Retry later.
    ///
    /// # Errors
    /// The metadata cannot be rewritten or moved.
    pub fn defer(mut self, error: &str, next_attempt_ms: u64) -> Result<(), SpoolError> {
        self.meta.attempts += 1;
        self.meta.next_attempt_ms = Some(next_attempt_ms);
        self.meta.last_error = Some(error.to_string());
        self.settle("deferred")
    }

    /// Give up until an operator acts.
    ///
    /// # Errors
    /// The metadata cannot be rewritten or moved.
    pub fn hold(mut self, reason: &str) -> Result<(), SpoolError> {
        self.meta.last_error = Some(reason.to_string());
        self.settle("hold")
    }

    fn settle(&mut self, to: &str) -> Result<(), SpoolError> {
        let active = self.spool.root.join("active");
        let json = active.join(format!("{}.json", self.meta.id));
        let tmp = self
            .spool
            .root
            .join("tmp")
            .join(format!("{}.json", self.meta.id));
        write_synced(&tmp, &serde_json::to_vec(&self.meta).unwrap_or_default())?;
        rename(&tmp, &json)?;
        self.spool.move_item(&self.meta.id, "active", to)?;
        self.settled = true;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.settled {
            // Completion defaults to failure: back in the queue, never lost.
            let _ = self.spool.move_item(&self.meta.id, "active", "incoming");
        }
    }
}

fn id_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut f = File::create(path).map_err(|e| SpoolError::io("create", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| SpoolError::io("write", path, e))
}

fn rename(from: &Path, to: &Path) -> Result<(), SpoolError> {
    fs::rename(from, to).map_err(|e| SpoolError::io("rename", from, e))
}

/// Fsyncs a directory so that renames into it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io("fsync", dir, e))
}
