//! The spool: the durable queue between SMTP intake and the pipeline.
//!
//! Owns: directories `tmp/ incoming/ active/ deferred/ hold/ corrupt/`, each item being one
//! file `<id>.item`: a line of JSON metadata (envelope, hash, attempts), then the message
//! exactly as received. One file per item means one data fsync per step, not two.
//! Invariants (Postfix qmgr and stalwart's queue are the models):
//! - Every item file is written through `crate::durable` (a uniquely named temporary file in
//!   `tmp/`, fdatasynced, renamed into place); the folder fsync after the rename is the
//!   spool's own, coalesced across concurrent writers. Intake renames into `incoming/` and
//!   fsyncs the directory; only then may SMTP answer 250. Whatever is left in `tmp/` after a
//!   crash was never acknowledged.
//! - The directory is the truth; hints only save directory listings. A worker claims an item
//!   by renaming it into `active/` (the rename is atomic, so two workers never share one); a
//!   [`Lease`] dropped without an outcome puts the item back — completion defaults to
//!   failure, never to loss.
//! - On open, items left in `active/` go back to `incoming/`; unreadable metadata goes to
//!   `corrupt/` and is reported. Only the process holding the data directory's lock (the
//!   service, or a one-off command that took it) may open with recovery: [`Spool::inspect`]
//!   opens for reading and never moves or removes anything, so `mukaika queue list` beside a
//!   running service cannot pull items from under its workers.
//! - Delivery is effectively once: a sink records `delivered/<key>` (fsynced) once a message
//!   is durably handed on, and a worker that meets the item again (after a crash, or after
//!   the audit write that follows the delivery failed) skips the delivery. The marker goes
//!   only after the item's removal is durable, so the two can never be lost in the wrong order.
//! - A converted message for the relay does not become a second file: [`Lease::pass_on_bytes`]
//!   writes it over its intake item in `active/` (marked [`ItemMeta::converted`]) and renames
//!   that one file into the outgoing spool's `incoming/`, keeping its ID — so it is in exactly
//!   one spool at every instant and needs no delivery marker. A staged item met again after a
//!   crash is only moved on ([`Lease::pass_on_staged`]). IDs are unique across every spool of
//!   the process for that reason.
//!
//! Must never: delete an acknowledged item except after its outcome is durable elsewhere.

use crate::names::safe_key;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::envelope::Envelope;

const STATES: [&str; 6] = ["tmp", "incoming", "active", "deferred", "hold", "corrupt"];

/// Markers of deliveries already made (see the module invariants); not an item state.
const DELIVERED: &str = "delivered";

/// Twenty bits that tell this process's IDs from another's minted in the same millisecond with
/// the same counter: random, drawn once. (The process ID did that on one machine, but the nodes
/// of a cluster share one quarantine namespace, and containers all run as PID 1.)
fn process_tag() -> u32 {
    static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        let hex = crate::random::random_hex(3);
        u32::from_str_radix(&hex, 16).unwrap_or(std::process::id()) & 0xFFFFF
    })
}

/// Item IDs are unique across every spool of the process, not per spool: a converted message
/// keeps its intake ID when it passes on to the outgoing spool, where notices are queued
/// under IDs of their own.
static COUNTER: AtomicU64 = AtomicU64::new(0);

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
    /// The data is mukaika's converted message, not the message as received: the pipeline
    /// staged it in the intake item's place (its audit records are durable) to pass it on to
    /// the outgoing spool by a rename. Set in the outgoing spool too, where it stays true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub converted: bool,
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
    /// IDs known to be in `incoming/`, oldest first: a hint that saves listing the directory
    /// for every lease (which is quadratic under load). The directory stays the truth: a
    /// stale hint fails its claim and is skipped, and an empty hint triggers a rescan.
    ready: Mutex<VecDeque<String>>,
    /// Coalesces the `incoming/` directory fsyncs of concurrent intakes.
    incoming_sync: DirSync,
    /// Coalesces the `active/` directory fsyncs that make completions durable before their
    /// delivery markers go.
    active_sync: DirSync,
    /// Coalesces the `delivered/` directory fsyncs of delivery markers.
    delivered_sync: DirSync,
    /// The last write that failed and has not been followed by a successful one (for
    /// `/healthz`: a full disk is reported while it refuses intake, and cleared after).
    write_failure: Mutex<Option<String>>,
    /// Stamps `received_at` and IDs, and decides which deferred items are due (tests hand in
    /// a [`crate::clock::TestClock`] to decide deferrals without sleeping).
    clock: SharedClock,
}

/// Group commit for one directory's fsync: every caller returns only after an fsync that
/// started after its own rename, but concurrent callers share one. Under load this turns one
/// directory fsync per message into one per batch, and each 250 still waits for its own.
#[derive(Default)]
struct DirSync {
    state: Mutex<DirSyncState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct DirSyncState {
    /// Tickets handed out (one per caller, taken after its rename).
    requested: u64,
    /// Every ticket up to this one is covered by a finished fsync.
    covered: u64,
    /// An fsync is in flight.
    running: bool,
}

impl DirSync {
    fn lock(&self) -> std::sync::MutexGuard<'_, DirSyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self, dir: &Path) -> Result<(), SpoolError> {
        let mut st = self.lock();
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.covered >= ticket {
                return Ok(());
            }
            if !st.running {
                // Everything requested so far was renamed before this fsync starts.
                st.running = true;
                let target = st.requested;
                drop(st);
                let result = sync_dir(dir);
                st = self.lock();
                st.running = false;
                if result.is_ok() {
                    st.covered = st.covered.max(target);
                }
                self.done.notify_all();
                // On failure only this caller fails; the others start an fsync of their own.
                result?;
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
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
        Self::open_with_clock(root, min_free_bytes, crate::clock::system())
    }

    /// [`Spool::open`] with the clock it is to use.
    ///
    /// # Errors
    /// As [`Spool::open`].
    pub fn open_with_clock(
        root: impl Into<PathBuf>,
        min_free_bytes: u64,
        clock: SharedClock,
    ) -> Result<(Arc<Self>, Vec<String>), SpoolError> {
        let root = root.into();
        for state in STATES.iter().chain(&[DELIVERED]) {
            let dir = root.join(state);
            fs::create_dir_all(&dir).map_err(|e| SpoolError::io("create", &dir, e))?;
        }
        let spool = Self::new(root, min_free_bytes, clock);
        // Intake that never reached incoming/ was never acknowledged.
        for entry in spool.entries("tmp")? {
            let _ = fs::remove_file(entry);
        }
        for item in spool.items("active")? {
            let id = id_of(&item);
            spool.move_item(&id, "active", "incoming")?;
        }
        let mut corrupt = Vec::new();
        for state in ["incoming", "deferred", "hold"] {
            // Anything but an item file does not belong here (older layouts, strays).
            for other in spool
                .entries(state)?
                .into_iter()
                .filter(|p| p.extension().is_none_or(|e| e != "item"))
            {
                let name = other
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                rename(&other, &spool.root.join("corrupt").join(&name))?;
                corrupt.push(name);
            }
            for item in spool.items(state)? {
                if read_meta(&item).is_none() {
                    let id = id_of(&item);
                    spool.move_item(&id, state, "corrupt")?;
                    corrupt.push(id);
                }
            }
        }
        for state in STATES {
            sync_dir(&spool.root.join(state))?;
        }
        // Markers whose item is gone (its removal is durable now: the directories were just
        // synced) are no longer needed; a marker with its item still queued stays.
        // A folder that cannot be read must not look empty: that would sweep the marker of an
        // item still queued and, in relay mode, send it again.
        let mut queued = std::collections::HashSet::new();
        for state in ["incoming", "deferred", "hold", "corrupt"] {
            queued.extend(spool.items(state)?.iter().map(|p| id_of(p)));
        }
        for marker in spool.entries(DELIVERED)? {
            let name = id_of(&marker);
            let item = name.split('-').next().unwrap_or_default();
            if !queued.contains(item) {
                let _ = fs::remove_file(marker);
            }
        }
        Ok((spool, corrupt))
    }

    fn new(root: PathBuf, min_free_bytes: u64, clock: SharedClock) -> Arc<Self> {
        Arc::new(Spool {
            root,
            min_free_bytes,
            ready: Mutex::new(VecDeque::new()),
            incoming_sync: DirSync::default(),
            active_sync: DirSync::default(),
            delivered_sync: DirSync::default(),
            write_failure: Mutex::new(None),
            clock,
        })
    }

    /// Opens an existing spool for reading only: no directory is created, nothing is
    /// recovered, moved or removed. This is what a process that does not own the data
    /// directory (`mukaika queue list|show` beside a running service) may use.
    ///
    /// # Errors
    /// The spool's directories do not exist.
    pub fn inspect(root: impl Into<PathBuf>) -> Result<Arc<Self>, SpoolError> {
        let root = root.into();
        for state in ["incoming", "active", "deferred", "hold", "corrupt"] {
            let dir = root.join(state);
            if !dir.is_dir() {
                return Err(SpoolError::io(
                    "open",
                    &dir,
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
        }
        Ok(Self::new(root, 0, crate::clock::system()))
    }

    /// The last write failure not followed by a success, if any (`/healthz` reports it).
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets a write failure once a probe write on the same file system succeeded.
    pub fn clear_write_failure(&self) {
        *self.write_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn note_write(&self, result: Result<(), &SpoolError>) {
        let mut failure = self.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        *failure = result.err().map(|e| e.to_string());
    }

    /// Whether a delivery under `key` (a queue ID, or `<ID>-notice`) was already made.
    pub fn delivered(&self, key: &str) -> bool {
        self.root.join(DELIVERED).join(safe_key(key)).exists()
    }

    /// Records durably that the delivery under `key` was made (see the module invariants).
    ///
    /// # Errors
    /// The marker cannot be created or synced; the caller still has the sink's own check.
    pub fn mark_delivered(&self, key: &str) -> Result<(), SpoolError> {
        // `open` created the folder; it is never removed.
        let dir = self.root.join(DELIVERED);
        let path = dir.join(safe_key(key));
        File::create(&path).map_err(|e| SpoolError::io("create", &path, e))?;
        // The marker is empty: its name is what counts, so the directory fsync suffices.
        self.delivered_sync.sync(&dir)
    }

    /// The spool's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The spool's clock: its users decide deferrals by the same time it stamps items with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn new_id(&self) -> String {
        let millis = self.clock.now_ms();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{millis:012X}{:05X}{:04X}", process_tag(), n & 0xFFFF)
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
            received_at: crate::clock::rfc3339_utc(self.clock.now_ms()),
            size: data.len() as u64,
            sha256: mukaika_sanitizers::report::sha256_hex(data),
            attempts: 0,
            next_attempt_ms: None,
            last_error: None,
            converted: false,
        };
        let result = (|| {
            let incoming = self.root.join("incoming");
            self.write_item(&incoming.join(format!("{id}.item")), &encode(&meta, data))?;
            // tmp/ need not be synced: what is left there after a crash is removed on open.
            self.incoming_sync.sync(&incoming)
        })();
        self.note_write(result.as_ref().map(|_| ()));
        if let Err(e) = result {
            let _ = fs::remove_file(self.root.join("incoming").join(format!("{id}.item")));
            return Err(e);
        }
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(id);
        Ok(meta)
    }

    /// Removes an accepted item that was never acknowledged (the audit record failed).
    pub fn discard(&self, id: &str) {
        let incoming = self.root.join("incoming");
        let _ = fs::remove_file(incoming.join(format!("{id}.item")));
        let _ = sync_dir(&incoming);
    }

    /// Claims the oldest item ready for work (incoming, or deferred whose time has come).
    ///
    /// # Errors
    /// The directories cannot be read.
    pub fn lease(self: &Arc<Self>, now_ms: u64) -> Result<Option<Lease>, SpoolError> {
        loop {
            let hinted = self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(id) = hinted else { break };
            if let Some(lease) = self.claim(&id, "incoming")? {
                return Ok(Some(lease));
            }
        }
        // No hint: the directory is the truth (items recovered on open, or hints lost).
        let incoming: Vec<String> = self.items("incoming")?.iter().map(|p| id_of(p)).collect();
        if !incoming.is_empty() {
            self.ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(incoming);
            return self.lease(now_ms);
        }
        for item in self.items("deferred")? {
            let due = read_meta(&item)
                .and_then(|m| m.next_attempt_ms)
                .is_none_or(|t| t <= now_ms);
            if due {
                if let Some(lease) = self.claim(&id_of(&item), "deferred")? {
                    return Ok(Some(lease));
                }
            }
        }
        Ok(None)
    }

    /// Claims an item by renaming its commit marker into `active/` (only one rename wins).
    fn claim(self: &Arc<Self>, id: &str, state: &str) -> Result<Option<Lease>, SpoolError> {
        let active = self.root.join("active").join(format!("{id}.item"));
        if fs::rename(self.root.join(state).join(format!("{id}.item")), &active).is_err() {
            return Ok(None);
        }
        match read_meta(&active) {
            Some(meta) => Ok(Some(Lease {
                spool: Arc::clone(self),
                meta,
                settled: false,
            })),
            None => {
                self.move_item(id, "active", "corrupt")?;
                Ok(None)
            }
        }
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
            .filter_map(|p| read_meta(p))
            .collect()
    }

    /// Finds an item by ID: its state and metadata.
    pub fn find(&self, id: &str) -> Option<(&'static str, ItemMeta)> {
        let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        ["incoming", "active", "deferred", "hold", "corrupt"]
            .into_iter()
            .find_map(|state| {
                Some((
                    state,
                    read_meta(&self.root.join(state).join(format!("{id}.item")))?,
                ))
            })
    }

    /// Operator moves (`mukaika queue retry|hold|release`): `to` is `incoming` or `hold`.
    /// Items being worked on (`active/`) are never moved under a worker's feet: the item is
    /// claimed into `active/` first, with the same atomic rename a worker uses, so an operator
    /// and a worker can never both hold it (a crash in between puts it back in `incoming/`).
    ///
    /// # Errors
    /// Unknown ID, an active item, or a failed rename.
    pub fn operator_move(&self, id: &str, to: &str) -> Result<&'static str, SpoolError> {
        let err = |m: String| SpoolError {
            message: m,
            no_space: false,
        };
        let busy = || {
            err(format!(
                "{id}: being processed right now; try again in a moment"
            ))
        };
        let (from, meta) = self
            .find(id)
            .ok_or_else(|| err(format!("{id}: no such queue item")))?;
        if from == "active" {
            return Err(busy());
        }
        let to: &'static str = if to == "hold" { "hold" } else { "incoming" };
        if from == to {
            return Ok(from);
        }
        let name = format!("{}.item", meta.id);
        let active = self.root.join("active").join(&name);
        if fs::rename(self.root.join(from).join(&name), &active).is_err() {
            // A worker claimed it between the look-up and now.
            return Err(busy());
        }
        let result = (|| {
            let bytes = fs::read(&active).map_err(|e| SpoolError::io("read", &active, e))?;
            let (mut meta, data) = split(&bytes).ok_or_else(|| err(format!("{id}: unreadable")))?;
            meta.next_attempt_ms = None;
            // The folder fsyncs of the move that follows make the rewrite durable too.
            self.write_item(&active, &encode(&meta, data))?;
            self.move_item(&meta.id, "active", to)
        })();
        if let Err(e) = result {
            // Where it came from, untouched (or back to incoming on the next start).
            let _ = self.move_item(&meta.id, "active", from);
            return Err(e);
        }
        if to == "incoming" {
            self.ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(meta.id.clone());
        }
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
            .filter(|p| p.extension().is_some_and(|e| e == "item"))
            .collect())
    }

    /// Writes an item file to `dest` (replacing it) through a temporary file in `tmp/`:
    /// fdatasynced (the data and size, what reading it back needs), renamed, and left for the
    /// caller to make the name durable with a fsync of `dest`'s folder.
    fn write_item(&self, dest: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
        let failed = |e: std::io::Error| SpoolError {
            no_space: e.kind() == std::io::ErrorKind::StorageFull,
            ..SpoolError::io("write", dest, e)
        };
        let mut temp = crate::durable::Temp::create(&self.root.join("tmp")).map_err(failed)?;
        temp.file().write_all(bytes).map_err(failed)?;
        temp.rename_into(dest).map_err(failed)?;
        Ok(())
    }

    fn move_item(&self, id: &str, from: &str, to: &str) -> Result<(), SpoolError> {
        let src = self.root.join(from).join(format!("{id}.item"));
        if src.exists() {
            rename(&src, &self.root.join(to).join(format!("{id}.item")))?;
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
            .join(format!("{}.item", self.meta.id));
        let bytes = fs::read(&path).map_err(|e| SpoolError::io("read", &path, e))?;
        split(&bytes)
            .map(|(_, data)| data.to_vec())
            .ok_or_else(|| SpoolError {
                message: format!("{}: not a spool item", path.display()),
                no_space: false,
            })
    }

    /// The outcome is durable elsewhere: remove the item.
    ///
    /// # Errors
    /// The files cannot be removed (the item then stays in active/ and is retried after a
    /// restart — at-least-once, never lost).
    pub fn complete(mut self) -> Result<(), SpoolError> {
        let p = self
            .spool
            .root
            .join("active")
            .join(format!("{}.item", self.meta.id));
        fs::remove_file(&p).map_err(|e| SpoolError::io("remove", &p, e))?;
        self.settled = true;
        // The item's delivery markers may go only once its removal is durable (group-committed
        // with other completions); a marker left behind by a crash is swept at the next open.
        let markers = [self.meta.id.clone(), format!("{}-notice", self.meta.id)];
        let dir = self.spool.root.join(DELIVERED);
        if markers.iter().any(|m| dir.join(m).exists())
            && self
                .spool
                .active_sync
                .sync(&self.spool.root.join("active"))
                .is_ok()
        {
            for m in markers {
                let _ = fs::remove_file(dir.join(m));
            }
        }
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

    /// Passes the converted message on to the spool `to` (the outgoing queue) in this item's
    /// place, under the same ID: the converted bytes are written over the item in `active/`
    /// (marked [`ItemMeta::converted`]), then the one file is renamed into `to`'s `incoming/`.
    /// The original leaves the intake spool by that rename, so the message is in exactly one
    /// spool at every instant: no second copy to remove and no delivery marker. A crash
    /// between the two steps leaves the staged item, which [`Lease::pass_on_staged`] finishes.
    /// Returns the ID. Only [`crate::sink`] calls this, with an `Outgoing` (the door).
    ///
    /// The caller's audit records must be durable before: the original is gone after.
    ///
    /// # Errors
    /// A write, rename or folder fsync failed; the item is then still in `active/` (original or
    /// staged) and the dropped lease puts it back.
    pub(crate) fn pass_on_bytes(
        mut self,
        to: &Spool,
        envelope: Envelope,
        client: &str,
        converted: &[u8],
    ) -> Result<String, SpoolError> {
        let staged = ItemMeta {
            envelope,
            client: client.to_string(),
            size: converted.len() as u64,
            sha256: mukaika_sanitizers::report::sha256_hex(converted),
            attempts: 0,
            next_attempt_ms: None,
            last_error: None,
            converted: true,
            ..self.meta.clone()
        };
        let path = self.active_path();
        // No folder fsync: if this rename is lost the original is back and converted again.
        let written = self.spool.write_item(&path, &encode(&staged, converted));
        self.spool.note_write(written.as_ref().map(|_| ()));
        written?;
        self.meta = staged;
        self.pass_on_staged(to)
    }

    /// Moves an item [`Lease::pass_on_bytes`] staged (its data is mukaika's converted message) into
    /// `to`'s `incoming/` and makes that durable. An item of the same ID already there was
    /// passed on before an interruption: the staged copy is then only removed.
    ///
    /// # Errors
    /// The item is not a staged one, or the move failed (the item stays in `active/`).
    pub(crate) fn pass_on_staged(mut self, to: &Spool) -> Result<String, SpoolError> {
        let id = self.meta.id.clone();
        if !self.meta.converted {
            return Err(SpoolError {
                message: format!("{id}: not a converted item; only those pass on"),
                no_space: false,
            });
        }
        let from = self.active_path();
        let incoming = to.root.join("incoming");
        let dest = incoming.join(format!("{id}.item"));
        match crate::durable::rename_no_clobber(&from, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(&from).map_err(|e| SpoolError::io("remove", &from, e))?;
                self.settled = true;
                return Ok(id);
            }
            // No copy-then-remove across file systems: a crash between the two would leave the
            // message in both spools, to be relayed twice (the service refuses to start so).
            Err(e) => return Err(SpoolError::io("rename", &from, e)),
        }
        // Moved: the lease has nothing left to put back, and the relay may take it at once
        // (queued before the folder sync, so a failing sync cannot leave it unannounced).
        self.settled = true;
        to.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(id.clone());
        to.incoming_sync.sync(&incoming).map_err(|e| SpoolError {
            message: format!("{id} passed on, but its folder was not synced: {e}"),
            no_space: e.is_no_space(),
        })?;
        Ok(id)
    }

    fn active_path(&self) -> PathBuf {
        self.spool
            .root
            .join("active")
            .join(format!("{}.item", self.meta.id))
    }

    fn settle(&mut self, to: &str) -> Result<(), SpoolError> {
        let path = self
            .spool
            .root
            .join("active")
            .join(format!("{}.item", self.meta.id));
        let data = self.data()?;
        // The folder fsyncs of the move that follows make the rewrite durable too.
        self.spool.write_item(&path, &encode(&self.meta, &data))?;
        self.spool.move_item(&self.meta.id, "active", to)?;
        self.settled = true;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.settled {
            // Completion defaults to failure: back in the queue, never lost.
            if self
                .spool
                .move_item(&self.meta.id, "active", "incoming")
                .is_ok()
            {
                self.spool
                    .ready
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(self.meta.id.clone());
            }
        }
    }
}

/// One item file: a line of JSON metadata, then the message.
fn encode(meta: &ItemMeta, data: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(meta).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

fn split(bytes: &[u8]) -> Option<(ItemMeta, &[u8])> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    Some((serde_json::from_slice(&bytes[..nl]).ok()?, &bytes[nl + 1..]))
}

fn read_meta(path: &Path) -> Option<ItemMeta> {
    use std::io::BufRead;
    let mut line = Vec::new();
    std::io::BufReader::new(File::open(path).ok()?)
        .read_until(b'\n', &mut line)
        .ok()?;
    serde_json::from_slice(line.strip_suffix(b"\n")?).ok()
}

fn id_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rename(from: &Path, to: &Path) -> Result<(), SpoolError> {
    fs::rename(from, to).map_err(|e| SpoolError::io("rename", from, e))
}

/// Fsyncs a directory so that renames into it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    crate::durable::sync_dir(dir).map_err(|e| SpoolError::io("fsync", dir, e))
}

/// Leases items from `spool` until shutdown and hands each to `work`, which answers whether
/// the item was settled. With nothing to do it waits for `wake`, a second (deferred items fall
/// due, a hint may have been missed), or shutdown; shutdown is only looked at between items, so
/// the item in hand is finished. After a failed settle the worker waits, doubling from 100 ms
/// up to [`MAX_BACKOFF`]: a full disk must not turn into a busy loop that rewrites the same
/// message over and over.
pub(crate) async fn lease_loop<F, Fut>(
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut(Lease) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut backoff = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !backoff.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
        }
        let s = Arc::clone(&spool);
        match tokio::task::spawn_blocking(move || s.lease(s.clock.now_ms())).await {
            Ok(Ok(Some(lease))) => {
                backoff = if work(lease).await {
                    Duration::ZERO
                } else {
                    (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
                };
            }
            Ok(Ok(None)) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(Err(e)) => {
                tracing::error!(spool = %spool.root().display(), error = %e, "spool unreadable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => tracing::error!(error = %e, "lease task failed"),
        }
    }
}

/// The longest a worker waits after a failed settle before it tries again.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, TestClock};

    fn envelope() -> Envelope {
        Envelope {
            helo: "h".into(),
            mail_from: "a@example.jp".into(),
            rcpt_to: vec!["b@example.lg.jp".into()],
            eight_bit: false,
            smtputf8: false,
        }
    }

    #[test]
    fn deferred_item_falls_due_when_the_clock_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::at(1_796_406_775_843);
        let (spool, _) = Spool::open_with_clock(dir.path(), 0, clock.clone()).unwrap();
        let meta = spool
            .accept(envelope(), "192.0.2.1", b"Subject: x\r\n\r\nx\r\n")
            .unwrap();
        assert_eq!(meta.received_at, "2026-12-04T17:52:55.843Z");
        let lease = spool.lease(spool.clock().now_ms()).unwrap().unwrap();
        lease
            .defer("421 try later", clock.now_ms() + 60_000)
            .unwrap();
        clock.advance(Duration::from_secs(59));
        assert!(spool.lease(spool.clock().now_ms()).unwrap().is_none());
        clock.advance(Duration::from_secs(1));
        let again = spool.lease(spool.clock().now_ms()).unwrap().unwrap();
        assert_eq!(again.meta().id, meta.id);
        assert_eq!(again.meta().attempts, 1);
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// An intake spool and an outgoing spool side by side, as the service opens them.
    fn two_spools() -> (tempfile::TempDir, Arc<Spool>, Arc<Spool>) {
        let dir = tempfile::tempdir().unwrap();
        let (intake, _) = Spool::open(dir.path().join("spool"), 0).unwrap();
        let (outgoing, _) = Spool::open(dir.path().join("outgoing"), 0).unwrap();
        (dir, intake, outgoing)
    }

    /// Accepts a message into `intake` and writes its staged form (converted bytes, marked)
    /// under each of `places` — what a crash between the steps of `pass_on_bytes` leaves.
    fn staged_item(intake: &Spool, places: &[PathBuf]) -> ItemMeta {
        let accepted = intake.accept(envelope(), "192.0.2.1", b"original").unwrap();
        let staged = ItemMeta {
            converted: true,
            ..accepted.clone()
        };
        // The staged form took the original's place.
        let original = intake
            .root
            .join("incoming")
            .join(format!("{}.item", accepted.id));
        fs::remove_file(original).unwrap();
        for place in places {
            let path = place.join(format!("{}.item", accepted.id));
            fs::write(path, encode(&staged, b"converted")).unwrap();
        }
        accepted
    }

    #[test]
    fn a_converted_message_passes_on_in_the_place_of_its_intake_item() {
        let (_dir, intake, outgoing) = two_spools();
        let original = b"Subject: original\r\n\r\n<b>x</b>\r\n";
        let converted = b"Subject: converted\r\n\r\nx\r\n";
        let accepted = intake.accept(envelope(), "192.0.2.1", original).unwrap();
        let lease = intake.lease(0).unwrap().unwrap();
        let id = lease
            .pass_on_bytes(&outgoing, envelope(), "converted", converted)
            .unwrap();
        assert_eq!(id, accepted.id, "the message keeps its queue ID");
        for state in ["incoming", "active", "deferred", "hold", DELIVERED, "tmp"] {
            assert!(
                files(&intake.root.join(state)).is_empty(),
                "intake {state}/"
            );
        }
        assert!(files(&outgoing.root.join(DELIVERED)).is_empty());
        let relayed = outgoing.lease(0).unwrap().unwrap();
        assert_eq!(relayed.meta().id, accepted.id);
        assert!(relayed.meta().converted);
        assert_eq!(relayed.data().unwrap(), converted);
        assert_eq!(
            relayed.meta().sha256,
            mukaika_sanitizers::report::sha256_hex(converted)
        );
    }

    /// A crash after the converted bytes replaced the intake item but before the rename into
    /// the outgoing spool: on restart the staged item is back in `incoming/`, marked, and
    /// passing it on moves those bytes — nothing is converted twice or lost.
    #[test]
    fn a_staged_item_found_after_a_crash_passes_on_without_its_original() {
        let (dir, intake, outgoing) = two_spools();
        staged_item(&intake, &[intake.root.join("active")]);
        drop(intake);
        let (intake, _) = Spool::open(dir.path().join("spool"), 0).unwrap();
        let lease = intake.lease(0).unwrap().unwrap();
        assert!(lease.meta().converted, "the mark survives the restart");
        lease.pass_on_staged(&outgoing).unwrap();
        assert!(files(&intake.root.join("incoming")).is_empty());
        assert!(files(&intake.root.join("active")).is_empty());
        let relayed = outgoing.lease(0).unwrap().unwrap();
        assert_eq!(relayed.data().unwrap(), b"converted");
    }

    /// The same staged item found in both spools (the rename had reached the outgoing spool,
    /// the removal from the intake one had not): one copy goes on, the other is dropped.
    #[test]
    fn a_staged_item_already_passed_on_is_not_queued_twice() {
        let (_dir, intake, outgoing) = two_spools();
        let places = [intake.root.join("incoming"), outgoing.root.join("incoming")];
        let accepted = staged_item(&intake, &places);
        let lease = intake.lease(0).unwrap().unwrap();
        assert_eq!(lease.pass_on_staged(&outgoing).unwrap(), accepted.id);
        assert!(files(&intake.root.join("active")).is_empty());
        let name = format!("{}.item", accepted.id);
        assert_eq!(files(&outgoing.root.join("incoming")), vec![name]);
    }

    #[test]
    fn only_a_staged_item_passes_on_without_new_bytes() {
        let (_dir, intake, outgoing) = two_spools();
        intake.accept(envelope(), "192.0.2.1", b"original").unwrap();
        let lease = intake.lease(0).unwrap().unwrap();
        assert!(lease.pass_on_staged(&outgoing).is_err());
        assert!(files(&outgoing.root.join("incoming")).is_empty());
        // The refused lease went back to the queue, the original with it.
        let again = intake.lease(0).unwrap().unwrap();
        assert_eq!(again.data().unwrap(), b"original");
    }

    #[test]
    fn ids_are_unique_across_spools_of_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::at(1_796_406_775_843);
        let (a, _) = Spool::open_with_clock(dir.path().join("a"), 0, clock.clone()).unwrap();
        let (b, _) = Spool::open_with_clock(dir.path().join("b"), 0, clock).unwrap();
        // The same millisecond on both: the counter, not the clock, must tell them apart.
        let ids: std::collections::HashSet<String> =
            (0..50).flat_map(|_| [a.new_id(), b.new_id()]).collect();
        assert_eq!(ids.len(), 100);
    }
}
