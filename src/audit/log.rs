//! The append-only, hash-chained audit log writer.
//!
//! Owns: files `audit-YYYYMMDD-NNNN.jsonl` in one directory, rotated daily (UTC) or when a
//! file passes its size limit; the chain continues across files (a file's first record names
//! the last hash of the one before). A checkpoint record is written every N records.
//! Invariants:
//! - `append` returns only after the record is written and fsynced. Concurrent appenders are
//!   group-committed: one of them writes and fsyncs everything pending, the others wait for
//!   the fsync that covers their record. Sequence numbers and timestamps are assigned under one
//!   lock, so the file order is the sequence order and timestamps never go backwards.
//! - On open after a crash, a torn last line is never dropped silently: logging continues in
//!   a new file whose first record is a `recovery` event naming the torn line (file, line,
//!   length, SHA-256), and verify reports it.
//! - A write error fails every record of the batch (callers fail closed: no ack). The torn
//!   tail of the failed write is cut back to the last durable record and the chain state is
//!   rolled back to it, so the next append (the disk has space again) continues a chain that
//!   verifies; records of a failed batch never reach the file. Only when the tail cannot be
//!   cut does the log refuse every further append.
//!
//! Must never: rewrite or truncate a line that was reported durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::chain::{self, GENESIS};
use super::event::{AuditEvent, Checkpoint, Recovery};
use super::AuditError;
use crate::clock::{self, SharedClock};

/// How the log is written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// This gateway's node name, written into every record.
    pub node: String,
    /// Optional HMAC key: with it, rewriting the whole chain needs the key.
    pub hmac_key: Option<Vec<u8>>,
    /// Rotate when a file grows past this many bytes.
    pub max_file_bytes: u64,
    /// Write a checkpoint record after this many records (0: never).
    pub checkpoint_every: u64,
    /// Also forward every record to a SIEM (RFC 5424), after it is durable.
    pub syslog: Option<super::syslog::SyslogTarget>,
    /// Where record times come from (tests set a [`crate::clock::TestClock`]).
    pub clock: SharedClock,
}

impl AuditConfig {
    /// A configuration with defaults: 64 MiB files, a checkpoint every 1,000 records, no key.
    pub fn new(dir: impl Into<PathBuf>, node: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            node: node.into(),
            hmac_key: None,
            max_file_bytes: 64 << 20,
            checkpoint_every: 1000,
            syslog: None,
            clock: clock::system(),
        }
    }
}

struct State {
    file: File,
    day: String,
    index: u32,
    size: u64,
    next_seq: u64,
    last_hash: String,
    last_ts: u64,
    since_checkpoint: u64,
    pending: Vec<u8>,
    pending_last: u64,
    durable: u64,
    /// Chain state at `durable`: what a failed write rolls back to.
    durable_hash: String,
    durable_ts: u64,
    durable_since_checkpoint: u64,
    /// Bumped by every failed write: records pushed in an older epoch were discarded unless
    /// they were already durable when it ended.
    epoch: u64,
    /// `durable` at the end of each past epoch (index = epoch).
    epoch_ends: Vec<u64>,
    writing: bool,
    /// The log cannot continue (a failed write's tail could not be removed).
    failed: Option<String>,
    /// The last write failure not yet followed by a successful write (for `/healthz`).
    last_error: Option<String>,
}

/// The audit log. Share it (it is `Sync`); `append` blocks until the record is durable.
pub struct AuditLog {
    config: AuditConfig,
    state: Mutex<State>,
    flushed: Condvar,
    forwarder: Option<super::syslog::Forwarder>,
    observer: std::sync::OnceLock<std::sync::Arc<dyn Observer>>,
    /// Woken after every durable write (the PostgreSQL copier waits on it).
    appended: std::sync::Arc<tokio::sync::Notify>,
}

/// Something told of every event once it is durable (metrics count from the record, so they
/// never count what the log does not hold).
pub trait Observer: Send + Sync {
    /// Called after `events` were written and fsynced.
    fn recorded(&self, events: &[AuditEvent]);
}

impl AuditLog {
    /// Opens (or creates) the log, continuing the chain from the last durable record.
    ///
    /// # Errors
    /// The directory cannot be created or read, or the last file is not a valid log.
    pub fn open(config: AuditConfig) -> Result<Self, AuditError> {
        fs::create_dir_all(&config.dir).map_err(|e| AuditError::io(&config.dir, e))?;
        let files = list_files(&config.dir)?;
        let tail = last_valid(&files, config.hmac_key.as_deref())?;
        let now = config.clock.now_ms();
        let (seq, hash, last_ts) = match &tail.last {
            Some((seq, hash, ts)) => (*seq + 1, hash.clone(), *ts),
            None => (1, GENESIS.to_string(), 0),
        };
        let today = clock::day_utc(now);
        // Keep appending to today's file unless it ends in a torn line (never write after one).
        let (file, day, index, size) = match files.last() {
            Some(last)
                if tail.torn.is_none() && file_day(last).as_deref() == Some(today.as_str()) =>
            {
                let f = OpenOptions::new()
                    .append(true)
                    .open(last)
                    .map_err(|e| AuditError::io(last, e))?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                (f, today, file_index(last).unwrap_or(0), size)
            }
            _ => {
                let index = files
                    .last()
                    .filter(|f| file_day(f).as_deref() == Some(today.as_str()))
                    .and_then(|f| file_index(f))
                    .map_or(0, |i| i + 1);
                let (f, _) = create_file(&config.dir, &today, index)?;
                (f, today, index, 0)
            }
        };
        let log = AuditLog {
            state: Mutex::new(State {
                file,
                day,
                index,
                size,
                next_seq: seq,
                last_hash: hash.clone(),
                last_ts,
                since_checkpoint: 0,
                pending: Vec::new(),
                pending_last: seq - 1,
                durable: seq - 1,
                durable_hash: hash,
                durable_ts: last_ts,
                durable_since_checkpoint: 0,
                epoch: 0,
                epoch_ends: Vec::new(),
                writing: false,
                failed: None,
                last_error: None,
            }),
            flushed: Condvar::new(),
            forwarder: config.syslog.clone().map(super::syslog::Forwarder::start),
            observer: std::sync::OnceLock::new(),
            appended: std::sync::Arc::new(tokio::sync::Notify::new()),
            config,
        };
        if let Some(recovery) = tail.torn {
            log.append(AuditEvent::Recovery(recovery))?;
        }
        Ok(log)
    }

    /// The syslog forwarder, if configured (for health and metrics).
    pub fn forwarder(&self) -> Option<&super::syslog::Forwarder> {
        self.forwarder.as_ref()
    }

    /// The clock that stamps records (retention judges ages by it too).
    pub fn clock(&self) -> &SharedClock {
        &self.config.clock
    }

    /// The node name its records carry (`[audit] node`).
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The directory the log writes to.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The sequence number of the last record known durable (0: none yet). Records after it
    /// may be in the file but can still be rolled back by a failed write: a reader that copies
    /// records elsewhere stops here.
    pub fn durable_seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).durable
    }

    /// Notified after every durable write (a permit is kept when nobody waits, so a waiter
    /// never misses one).
    pub fn appended(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.appended)
    }

    /// Appends an event and returns its sequence number once it is on disk.
    ///
    /// # Errors
    /// A write or fsync failed (now or earlier): the action being recorded must not be
    /// acknowledged.
    pub fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        self.append_all(std::slice::from_ref(&event))
    }

    /// Appends several events with one durable write; returns the last sequence number.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub fn append_all(&self, events: &[AuditEvent]) -> Result<u64, AuditError> {
        let mut st = self.lock()?;
        // Records join the pending batch even while a write is in flight — that is what lets
        // the next flush carry them all. Only a rotation waits for the old file to be done
        // with (every pending record has an appender waiting to flush it, so this ends).
        while self.needs_rotation(&st) && (st.writing || !st.pending.is_empty()) {
            st = self
                .flushed
                .wait(st)
                .map_err(|_| AuditError::failed("audit log lock poisoned"))?;
            if let Some(e) = &st.failed {
                return Err(AuditError::failed(e.clone()));
            }
        }
        if self.needs_rotation(&st) {
            self.rotate(&mut st)?;
        }
        let mut last = st.next_seq.saturating_sub(1);
        for event in events {
            last = self.push(&mut st, event);
        }
        if self.config.checkpoint_every > 0 && st.since_checkpoint >= self.config.checkpoint_every {
            let records = st.since_checkpoint;
            self.push(&mut st, &AuditEvent::Checkpoint(Checkpoint { records }));
            st.since_checkpoint = 0;
        }
        let epoch = st.epoch;
        let seq = self.wait_durable(st, last, epoch)?;
        if let Some(observer) = self.observer.get() {
            observer.recorded(events);
        }
        Ok(seq)
    }

    /// The last write failure not yet followed by a successful write, or the reason the log
    /// refuses appends. `/healthz` reports it.
    pub fn write_failure(&self) -> Option<String> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.failed.clone().or_else(|| st.last_error.clone())
    }

    /// Forgets a write failure once a probe write on the same file system succeeded (the next
    /// append would succeed too). A log that refuses appends stays failed.
    pub fn clear_write_failure(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error = None;
    }

    /// Sets the observer told of every durable event (once; later calls are ignored).
    pub fn observe(&self, observer: std::sync::Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, AuditError> {
        let st = self
            .state
            .lock()
            .map_err(|_| AuditError::failed("audit log lock poisoned"))?;
        if let Some(e) = &st.failed {
            return Err(AuditError::failed(e.clone()));
        }
        Ok(st)
    }

    fn needs_rotation(&self, st: &State) -> bool {
        st.size + st.pending.len() as u64 >= self.config.max_file_bytes
            || clock::day_utc(self.config.clock.now_ms().max(st.last_ts)) != st.day
    }

    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        let day = clock::day_utc(self.config.clock.now_ms().max(st.last_ts));
        let index = if day == st.day { st.index + 1 } else { 0 };
        let (file, _) = create_file(&self.config.dir, &day, index)?;
        st.file = file;
        st.day = day;
        st.index = index;
        st.size = 0;
        Ok(())
    }

    fn push(&self, st: &mut State, event: &AuditEvent) -> u64 {
        let seq = st.next_seq;
        let ts = self.config.clock.now_ms().max(st.last_ts);
        let (line, hash) = chain::encode(
            seq,
            &clock::rfc3339_utc(ts),
            &self.config.node,
            &st.last_hash,
            event,
            self.config.hmac_key.as_deref(),
        );
        st.pending.extend_from_slice(line.as_bytes());
        st.pending_last = seq;
        st.next_seq += 1;
        st.last_hash = hash;
        st.last_ts = ts;
        st.since_checkpoint += 1;
        seq
    }

    /// Group commit: the first waiter whose record is not yet durable becomes the writer for
    /// everything pending; the others sleep until a flush covers them. `epoch` is the one the
    /// caller's records were pushed in: a failed write in between discarded them.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        seq: u64,
        epoch: u64,
    ) -> Result<u64, AuditError> {
        loop {
            if let Some(e) = &st.failed {
                return Err(AuditError::failed(e.clone()));
            }
            if st.epoch != epoch {
                // Durable before the failure that ended its epoch, or discarded with it.
                let end = st.epoch_ends.get(epoch as usize).copied().unwrap_or(0);
                if seq <= end {
                    return Ok(seq);
                }
                let e = st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "audit write failed".into());
                return Err(AuditError::failed(e));
            }
            if st.durable >= seq {
                return Ok(seq);
            }
            if st.writing {
                st = self
                    .flushed
                    .wait(st)
                    .map_err(|_| AuditError::failed("audit log lock poisoned"))?;
                continue;
            }
            let batch = std::mem::take(&mut st.pending);
            let last = st.pending_last;
            // The chain state after this batch: it becomes the durable one if the write holds.
            let (batch_hash, batch_ts, batch_since) =
                (st.last_hash.clone(), st.last_ts, st.since_checkpoint);
            let mut file = st
                .file
                .try_clone()
                .map_err(|e| AuditError::io(&self.config.dir, e))?;
            st.writing = true;
            drop(st);
            let result = file.write_all(&batch).and_then(|()| file.sync_data());
            st = self
                .state
                .lock()
                .map_err(|_| AuditError::failed("audit log lock poisoned"))?;
            st.writing = false;
            match result {
                Ok(()) => {
                    st.size += batch.len() as u64;
                    st.durable = last;
                    st.durable_hash = batch_hash;
                    st.durable_ts = batch_ts;
                    st.durable_since_checkpoint = batch_since;
                    st.last_error = None;
                    if let Some(f) = &self.forwarder {
                        f.forward_batch(&batch);
                    }
                    self.appended.notify_one();
                }
                Err(e) => {
                    let message = format!("audit write failed: {e}");
                    // Whatever part of the batch reached the file was never acknowledged: cut
                    // it off so the next record follows the last durable one.
                    let cut = file.set_len(st.size).and_then(|()| file.sync_all());
                    match cut {
                        Ok(()) => {
                            st.pending.clear();
                            st.next_seq = st.durable + 1;
                            st.pending_last = st.durable;
                            st.last_hash = st.durable_hash.clone();
                            st.last_ts = st.durable_ts;
                            st.since_checkpoint = st.durable_since_checkpoint;
                            let end = st.durable;
                            st.epoch_ends.push(end);
                            st.epoch += 1;
                            st.last_error = Some(message);
                        }
                        Err(cut_error) => {
                            st.failed = Some(format!(
                                "{message}; the torn tail could not be removed ({cut_error}): restart to recover"
                            ));
                        }
                    }
                }
            }
            self.flushed.notify_all();
        }
    }
}

impl AuditLog {
    /// Removes audit files whose every record is older than `days` days, never the file being
    /// written. Before anything is deleted, a `retention_expired` record listing the files and
    /// the last removed record's sequence number and hash is appended (and fsynced), so the
    /// chain still verifies from the oldest remaining record and the deletion is on record.
    ///
    /// # Errors
    /// A file cannot be read or removed, or the record cannot be written.
    pub fn expire(&self, days: u32) -> Result<Vec<String>, AuditError> {
        let cutoff = clock::day_utc(
            self.config
                .clock
                .now_ms()
                .saturating_sub(u64::from(days) * 86_400_000),
        );
        let current = {
            let st = self.lock()?;
            format!("audit-{}-{:04}.jsonl", st.day, st.index)
        };
        let files = list_files(&self.config.dir)?;
        // Files are in chain order: expire a prefix, stopping at the first file to keep.
        let mut expired = Vec::new();
        let mut last: Option<(u64, String)> = None;
        for path in &files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let day = file_day(path).unwrap_or_default();
            // A file's records are no newer than the next file's day; keep today's and the live one.
            if name == current || day.as_str() >= cutoff.as_str() {
                break;
            }
            let text = fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
            if let Some(r) = text
                .lines()
                .rev()
                .find_map(|l| chain::decode(l, self.config.hmac_key.as_deref()).ok())
            {
                last = Some((r.seq, r.hash));
            }
            expired.push((path.clone(), name));
        }
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = expired.iter().map(|(_, n)| n.clone()).collect();
        self.append(AuditEvent::RetentionExpired(
            super::event::RetentionExpired {
                removed: names.clone(),
                days,
                last_seq: last.as_ref().map(|l| l.0),
                last_hash: last.map(|l| l.1),
            },
        ))?;
        for (path, _) in &expired {
            fs::remove_file(path).map_err(|e| AuditError::io(path, e))?;
        }
        crate::durable::sync_dir(&self.config.dir)
            .map_err(|e| AuditError::io(&self.config.dir, e))?;
        Ok(names)
    }
}

fn create_file(dir: &Path, day: &str, index: u32) -> Result<(File, PathBuf), AuditError> {
    let path = dir.join(format!("audit-{day}-{index:04}.jsonl"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    // The new name must survive a crash too.
    crate::durable::sync_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    Ok((file, path))
}

/// The log files in chain order.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| AuditError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn file_day(path: &Path) -> Option<String> {
    path.file_name()?.to_str()?.get(6..14).map(str::to_string)
}

fn file_index(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.get(15..19)?.parse().ok()
}

struct Tail {
    last: Option<(u64, String, u64)>,
    torn: Option<Recovery>,
}

/// Finds the last durable record, and a torn last line if the newest file ends in one.
fn last_valid(files: &[PathBuf], key: Option<&[u8]>) -> Result<Tail, AuditError> {
    let mut torn = None;
    for (i, path) in files.iter().enumerate().rev() {
        let bytes = fs::read(path).map_err(|e| AuditError::io(path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut last = None;
        for (n, line) in lines.iter().enumerate() {
            let is_last = n + 1 == lines.len();
            match chain::decode(line, key) {
                Ok(r) => {
                    // A time that cannot be read (verify reports it) raises no floor for the
                    // next record's time: the floor stays at the last readable one.
                    let floor = last.as_ref().map_or(0, |(_, _, ts)| *ts);
                    let ts = clock::parse_rfc3339(&r.ts).unwrap_or(floor);
                    last = Some((r.seq, r.hash, ts));
                }
                Err(_) if is_last && i + 1 == files.len() && torn.is_none() => {
                    torn = Some(Recovery {
                        file: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        line: n as u64 + 1,
                        bytes: line.len() as u64 + u64::from(complete),
                        sha256: hex::encode(Sha256::digest(line.as_bytes())),
                    });
                }
                Err(p) => {
                    return Err(AuditError::corrupt(format!(
                        "{}:{}: {p:?}; run `mukaika audit verify`",
                        path.display(),
                        n + 1
                    )));
                }
            }
        }
        if let Some(last) = last {
            return Ok(Tail {
                last: Some(last),
                torn,
            });
        }
    }
    Ok(Tail { last: None, torn })
}
