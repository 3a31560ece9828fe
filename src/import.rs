//! The import folder: staff drop files on the internet side; sanitized copies and a report
//! appear in the export folder the LGWAN side reads.
//!
//! Owns: one pass over every configured folder pair ([`Importer::pass`]) — finding files that
//! are stable (unchanged for the settle time, not locked, not a copy tool's temporary name),
//! sending each through the registry under the service policy, writing the result and a
//! Japanese report atomically into the mirrored export folder, quarantining originals that
//! cannot be made safe, auditing, and only then removing the original (or moving it to the
//! processed archive).
//! Invariants (lose nothing, duplicate nothing): exports are written under temporary names and
//! fsynced; a ledger entry naming the final names is fsynced before they are renamed into
//! place; the audit records are durable before the original is removed; the ledger entry goes
//! last. A crash at any point leaves either the original to process again or a ledger entry
//! that the next pass completes — never a lost file and never a second copy. Names are NFC
//! normalised; names that could escape the folder or that Windows cannot hold are refused with
//! a report. Symbolic links are never followed.
//! Must never: write an input byte into the export folder (only registry outputs and reports),
//! or overwrite an existing export.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use mukaika_sanitizers::{names, Declared, Policy, Registry, Report, Verdict};

use crate::audit::event::{FileExported, FileImported, Quarantined};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::{ImportPair, ImportSection, ReportFormat};
use crate::quarantine::{QuarantineItem, QuarantineStore};

/// Suffix of the report written next to every result.
pub const REPORT_SUFFIX: &str = ".無害化レポート.txt";
/// Suffix of the JSON report when `report_format = "json"`.
pub const JSON_REPORT_SUFFIX: &str = ".report.json";

/// What happened to one file in a pass.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Pair name.
    pub pair: String,
    /// Path below the import folder.
    pub path: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The delivered output, below the export folder.
    pub output: Option<String>,
    /// The quarantine ID, when the original was held.
    pub quarantine_id: Option<String>,
}

/// A file that could not be handled this pass (it stays in the import folder).
#[derive(Debug, Clone)]
pub struct Failed {
    /// Pair name.
    pub pair: String,
    /// Path below the import folder.
    pub path: String,
    /// Why.
    pub error: String,
}

/// The result of one pass.
#[derive(Debug, Default)]
pub struct PassSummary {
    /// Files processed.
    pub processed: Vec<Processed>,
    /// Files left for the next pass because something failed.
    pub failed: Vec<Failed>,
    /// Files seen but not yet stable (still being written, or too recent).
    pub waiting: usize,
}

/// The ledger entry of a file being exported (see the module invariants).
#[derive(Debug, Serialize, Deserialize)]
struct LedgerEntry {
    pair: String,
    source: PathBuf,
    /// (temporary path, final path) of every export.
    renames: Vec<(PathBuf, PathBuf)>,
    archive_to: Option<PathBuf>,
    /// The audit records gathered before the ledger was written (the import, its quarantine):
    /// a crash before they were appended leaves them to the pass that completes the entry.
    #[serde(default)]
    events: Vec<AuditEvent>,
}

/// Runs passes over the configured pairs.
pub struct Importer {
    section: ImportSection,
    data: PathBuf,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    quarantine: Arc<dyn QuarantineStore>,
    /// Size and mtime of each candidate when last seen (daemon settle rule).
    seen: Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
    counter: AtomicU64,
}

impl Importer {
    /// An importer writing its ledger and processed archive under `data/import-state`.
    pub fn new(
        section: ImportSection,
        data: &Path,
        registry: Arc<Registry>,
        audit: Arc<AuditLog>,
        quarantine: Arc<dyn QuarantineStore>,
    ) -> Self {
        let mut section = section;
        // Relative folders belong to the data directory, wherever the service was started.
        for pair in &mut section.pairs {
            for dir in [&mut pair.import, &mut pair.export] {
                if dir.is_relative() {
                    *dir = data.join(&*dir);
                }
            }
        }
        Self {
            section,
            data: data.join("import-state"),
            registry,
            audit,
            quarantine,
            seen: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        }
    }

    /// The folders to watch.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.section
            .pairs
            .iter()
            .map(|p| p.import.clone())
            .collect()
    }

    /// Creates every import and export folder (so staff have somewhere to drop files). A
    /// folder that cannot be created is logged and returned; its files fail (and are audited)
    /// on each pass until it can, and the other pairs carry on.
    pub fn create_folders(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for pair in &self.section.pairs {
            for dir in [&pair.import, &pair.export] {
                if let Err(e) = fs::create_dir_all(dir) {
                    tracing::error!(dir = %dir.display(), error = %e, "import folder cannot be created");
                    problems.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        problems
    }

    /// Runs passes until `shutdown`: after a change in a watched folder, every `settle_secs`
    /// while files are still settling, and every `rescan_secs` regardless.
    pub async fn run(
        self: Arc<Self>,
        config: Arc<crate::live::Live<crate::config::ServiceConfig>>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => {
                for dir in self.watched() {
                    if let Err(e) = w.watch(&dir, notify::RecursiveMode::Recursive) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; rescans only");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no file watcher; rescans only");
                None
            }
        };
        let settle = Duration::from_secs(self.section.settle_secs.max(1));
        let rescan = Duration::from_secs(self.section.rescan_secs.max(1));
        loop {
            let policy = config.get().policy.clone();
            let me = Arc::clone(&self);
            let summary = tokio::task::spawn_blocking(move || me.pass(&policy, true)).await;
            let wait = match summary {
                Ok(s) if s.waiting > 0 || !s.failed.is_empty() => settle,
                Ok(_) => rescan,
                Err(e) => {
                    tracing::error!(error = %e, "import pass panicked");
                    rescan
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(()) = rx.recv() => {
                    // Let the writer finish: a file is taken only after it settles.
                    tokio::select! {
                        _ = tokio::time::sleep(settle) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over every pair under `policy`. `daemon` adds the "unchanged since the last
    /// pass" rule to the settle time (a one-off pass relies on the mtime alone).
    pub fn pass(&self, policy: &Policy, daemon: bool) -> PassSummary {
        let mut summary = PassSummary::default();
        if let Err(e) = self.finish_ledger(&mut summary) {
            tracing::error!(error = %e, "import ledger could not be completed");
        }
        for pair in &self.section.pairs {
            let mut files = Vec::new();
            walk(&pair.import, 0, &mut files);
            files.sort();
            for path in files {
                if !self.ready(&path, daemon) {
                    summary.waiting += 1;
                    continue;
                }
                let rel = rel_path(&pair.import, &path);
                match self.process(pair, &path, &rel, policy) {
                    Ok(done) => summary.processed.push(done),
                    Err(error) => {
                        tracing::error!(pair = %pair.name, path = %rel, error = %error, "import failed; the file stays");
                        let failed = AuditEvent::ImportFailed(crate::audit::event::ImportFailed {
                            department: pair.name.clone(),
                            path: rel.clone(),
                            error: error.clone(),
                        });
                        if let Err(e) = self.audit.append(failed) {
                            tracing::error!(error = %e, "import failure could not be audited");
                        }
                        summary.failed.push(Failed {
                            pair: pair.name.clone(),
                            path: rel,
                            error,
                        });
                    }
                }
            }
        }
        summary
    }

    /// Stable: mtime at least `settle_secs` ago, not flock-ed by a writer, and (daemon) the
    /// same size and mtime as on the previous pass.
    fn ready(&self, path: &Path, daemon: bool) -> bool {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return false;
        };
        let Ok(mtime) = meta.modified() else {
            return false;
        };
        let settle = Duration::from_secs(self.section.settle_secs);
        let old_enough = SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= settle);
        let unchanged = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let before = seen.insert(path.to_path_buf(), (meta.len(), mtime));
            !daemon || before == Some((meta.len(), mtime))
        };
        if !(old_enough && unchanged) {
            return false;
        }
        // A writer holding an exclusive lock (Samba, LibreOffice) is still writing.
        match File::open(path) {
            Ok(f) => rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared)
                .and_then(|()| rustix::fs::flock(&f, rustix::fs::FlockOperation::Unlock))
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The import ID of a file: derived from the pair, path, inode, change time and content,
    /// so a pass that a crash interrupted and the pass that takes the file again agree on it
    /// (the quarantine stores it once), while the same name dropped again later (a new inode or
    /// change time) is a new import. Falls back to a fresh ID if the metadata is unreadable.
    fn import_id(&self, pair: &ImportPair, rel: &str, path: &Path, sha256: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::symlink_metadata(path) else {
            return self.next_id();
        };
        let key = format!(
            "{}\0{rel}\0{}\0{}\0{}.{}\0{sha256}",
            pair.name,
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        let digest = sha_hex(key.as_bytes());
        format!("I{}", &digest[..24])
    }

    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let millis = crate::audit::time::now_millis();
        format!("I{millis}-{}-{n}", std::process::id())
    }

    fn process(
        &self,
        pair: &ImportPair,
        path: &Path,
        rel: &str,
        policy: &Policy,
    ) -> Result<Processed, String> {
        let (rel_dir, base) = match rel.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b.to_string()),
            None => (String::new(), rel.to_string()),
        };
        let size = fs::metadata(path).map_err(|e| e.to_string())?.len();
        let mut events = Vec::new();
        let name_problem = check_name(rel);
        let (report, output, bytes_sha) = if let Some(problem) = &name_problem {
            let bytes = read_limited(path, policy.limits.max_input_bytes)?;
            let sha = sha_of(path, bytes.as_deref())?;
            let mut report = Registry::over_limit_report(Some(&base), sha.clone(), size, policy);
            report.reason = Some(mukaika_sanitizers::Reason::new("bad-name", problem.clone()));
            (report, None, sha)
        } else {
            match read_limited(path, policy.limits.max_input_bytes)? {
                Some(bytes) => {
                    let outcome = self.registry.process(
                        &bytes,
                        &Declared {
                            name: Some(&base),
                            mime: None,
                        },
                        policy,
                    );
                    let sha = outcome.report.input_sha256.clone();
                    if outcome
                        .report
                        .any_reason(mukaika_sanitizers::scanner::UNAVAILABLE)
                    {
                        // Nothing is decided without the antivirus engine: the file waits.
                        return Err(
                            "antivirus unavailable; the file waits in the import folder".into()
                        );
                    }
                    let (report, output) = outcome.into_parts();
                    (report, output, sha)
                }
                None => {
                    let sha = sha_of(path, None)?;
                    let report =
                        Registry::over_limit_report(Some(&base), sha.clone(), size, policy);
                    (report, None, sha)
                }
            }
        };
        // The same file met again after a crash (same inode, same change time, same bytes)
        // gets the same ID, so its quarantine record is stored once and audited on this pass.
        let id = self.import_id(pair, rel, path, &bytes_sha);
        events.push(AuditEvent::FileImported(FileImported {
            item_id: id.clone(),
            department: pair.name.clone(),
            path: rel.to_string(),
            size,
            sha256: bytes_sha.clone(),
        }));

        // Quarantine the original (blocked and held files alike) before anything is exported.
        let quarantine_id = if output.is_none() {
            let reason = report.reason.clone().unwrap_or_else(|| {
                mukaika_sanitizers::Reason::new("policy-quarantine", "not delivered")
            });
            let item = QuarantineItem {
                id: id.clone(),
                source: "import".into(),
                origin_id: format!("{}/{rel}", pair.name),
                name: Some(base.clone()),
                reason: reason.code.clone(),
                detail: reason.detail.clone(),
                sha256: bytes_sha.clone(),
                size,
                at: crate::audit::log::now_rfc3339(),
                report: serde_json::to_value(&report).unwrap_or_default(),
                mail_from: None,
                rcpt_to: Vec::new(),
                subject: None,
                detected_type: Some(report.detected_type.name().to_string()),
            };
            self.quarantine
                .put_file(&item, path)
                .map_err(|e| format!("quarantine: {e}"))?;
            events.push(AuditEvent::Quarantined(Quarantined {
                item_id: item.id,
                source: item.source,
                origin_id: item.origin_id,
                reason: item.reason,
                sha256: item.sha256,
            }));
            Some(id.clone())
        } else {
            None
        };

        // Exports: temporary names, fsynced, then the ledger, then the renames.
        let safe_dir = if name_problem.is_some() {
            String::new()
        } else {
            rel_dir.clone()
        };
        let export_dir = pair.export.join(&safe_dir);
        fs::create_dir_all(&export_dir).map_err(|e| format!("{}: {e}", export_dir.display()))?;
        dir_permissions(pair, &export_dir)?;
        let mut writes: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
        let out_name = match &output {
            Some(clean) => {
                let name = unique(&export_dir, clean.name());
                writes.push((
                    name.clone(),
                    clean.bytes().to_vec(),
                    Some(sha_hex(clean.bytes())),
                ));
                Some(name)
            }
            None => None,
        };
        let shown = if name_problem.is_some() {
            format!("名前を確認できないファイル-{id}")
        } else {
            out_name.clone().unwrap_or_else(|| base.clone())
        };
        let (suffix, body) = match self.section.report_format {
            ReportFormat::Text => (
                REPORT_SUFFIX,
                report_text(&report, rel, out_name.as_deref(), quarantine_id.as_deref())
                    .into_bytes(),
            ),
            ReportFormat::Json => (
                JSON_REPORT_SUFFIX,
                serde_json::to_vec_pretty(&report).unwrap_or_default(),
            ),
        };
        // The report's name is derived from the output's, so it is the one that overflows.
        let shown = names::shorten(&shown, names::NAME_MAX - suffix.len());
        writes.push((unique(&export_dir, &format!("{shown}{suffix}")), body, None));

        let mut renames = Vec::new();
        for (name, bytes, _) in &writes {
            let tmp = export_dir.join(format!(".{id}.{}.tmp", renames.len()));
            write_synced(&tmp, bytes, Some(pair))?;
            renames.push((tmp, export_dir.join(name)));
        }
        let archive_to = self
            .section
            .archive_processed
            .then(|| self.data.join("processed").join(&pair.name).join(rel));
        let ledger = self.data.join("ledger");
        fs::create_dir_all(&ledger).map_err(|e| e.to_string())?;
        let entry = LedgerEntry {
            pair: pair.name.clone(),
            source: path.to_path_buf(),
            renames,
            archive_to,
            events: events.clone(),
        };
        let ledger_path = ledger.join(format!("{id}.json"));
        write_synced(
            &ledger_path,
            &serde_json::to_vec(&entry).map_err(|e| e.to_string())?,
            None,
        )?;
        for (tmp, fin) in &entry.renames {
            fs::rename(tmp, fin).map_err(|e| format!("{}: {e}", fin.display()))?;
        }
        sync(&export_dir)?;
        for (name, _, sha) in &writes {
            events.push(AuditEvent::FileExported(FileExported {
                item_id: id.clone(),
                department: pair.name.clone(),
                path: if safe_dir.is_empty() {
                    name.clone()
                } else {
                    format!("{safe_dir}/{name}")
                },
                verdict: verdict_name(report.verdict).into(),
                sha256: sha.clone(),
            }));
        }
        self.audit.append_all(&events).map_err(|e| e.to_string())?;
        retire(&entry)?;
        fs::remove_file(&ledger_path).map_err(|e| e.to_string())?;
        tracing::info!(pair = %pair.name, path = %rel, verdict = ?report.verdict, "imported");
        Ok(Processed {
            pair: pair.name.clone(),
            path: rel.to_string(),
            verdict: report.verdict,
            output: out_name.map(|n| {
                if safe_dir.is_empty() {
                    n
                } else {
                    format!("{safe_dir}/{n}")
                }
            }),
            quarantine_id,
        })
    }

    /// Completes exports a crash interrupted: finishes renames whose temporary file is still
    /// there, then retires the original. The audit records of such a file were not written (they
    /// are written after the renames), so they are written now from the ledger — its import and
    /// quarantine records too, so no quarantined item is left without one (a crash after the
    /// records and before the ledger's removal records them a second time: visible, not lost).
    fn finish_ledger(&self, summary: &mut PassSummary) -> Result<(), String> {
        let dir = self.data.join("ledger");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let ledger: LedgerEntry = match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(l) => l,
                None => continue,
            };
            for (tmp, fin) in &ledger.renames {
                if tmp.exists() && !fin.exists() {
                    fs::rename(tmp, fin).map_err(|e| e.to_string())?;
                }
            }
            if let Some((_, fin)) = ledger.renames.first() {
                if let Some(parent) = fin.parent() {
                    sync(parent)?;
                }
            }
            let mut events = ledger.events.clone();
            events.push(AuditEvent::FileExported(FileExported {
                item_id: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                department: ledger.pair.clone(),
                path: ledger
                    .renames
                    .iter()
                    .map(|(_, f)| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                verdict: "completed-after-restart".into(),
                sha256: None,
            }));
            self.audit.append_all(&events).map_err(|e| e.to_string())?;
            retire(&ledger)?;
            fs::remove_file(&path).map_err(|e| e.to_string())?;
            summary.processed.push(Processed {
                pair: ledger.pair,
                path: ledger.source.display().to_string(),
                verdict: Verdict::Sanitized,
                output: None,
                quarantine_id: None,
            });
        }
        // Temporary exports no ledger names are from a crash before the ledger was written:
        // their original is still in the import folder and will be processed again.
        for pair in &self.section.pairs {
            let mut stale = Vec::new();
            walk_temps(&pair.export, 0, &mut stale);
            for tmp in stale {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(())
    }
}

/// Removes the original (or moves it to the processed archive) once its results are durable.
fn retire(entry: &LedgerEntry) -> Result<(), String> {
    if !entry.source.exists() {
        return Ok(());
    }
    match &entry.archive_to {
        Some(to) => {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            fs::rename(&entry.source, to)
                .or_else(|_| {
                    fs::copy(&entry.source, to).and_then(|_| fs::remove_file(&entry.source))
                })
                .map_err(|e| format!("archiving {}: {e}", entry.source.display()))?;
        }
        None => fs::remove_file(&entry.source)
            .map_err(|e| format!("removing {}: {e}", entry.source.display()))?,
    }
    if let Some(parent) = entry.source.parent() {
        sync(parent)?;
    }
    Ok(())
}

fn sync(dir: &Path) -> Result<(), String> {
    crate::spool::sync_dir(dir).map_err(|e| e.to_string())
}

/// Writes, fsyncs and applies the pair's ownership and mode.
fn write_synced(path: &Path, bytes: &[u8], pair: Option<&ImportPair>) -> Result<(), String> {
    let mut f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match pair {
        Some(pair) => apply_ownership(&f, pair).map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(()),
    }
}

/// Gives an open file the pair's mode and owner (each only when configured), so whatever
/// mukaika writes for the LGWAN side is readable by whom the pair says.
///
/// # Errors
/// chmod or chown failed (naming which).
pub(crate) fn apply_ownership(f: &File, pair: &ImportPair) -> std::io::Result<()> {
    if let Some(mode) = pair.mode_bits() {
        rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| std::io::Error::other(format!("chmod: {e}")))?;
    }
    if pair.uid.is_some() || pair.gid.is_some() {
        rustix::fs::fchown(
            f,
            pair.uid.map(rustix::fs::Uid::from_raw),
            pair.gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(|e| std::io::Error::other(format!("chown: {e}")))?;
    }
    Ok(())
}

/// Gives the mirrored folders below the export root the pair's owner and mode (a folder also
/// gets the search bit wherever the mode allows reading).
fn dir_permissions(pair: &ImportPair, dir: &Path) -> Result<(), String> {
    if pair.mode.is_none() && pair.uid.is_none() && pair.gid.is_none() {
        return Ok(());
    }
    let mut current = dir.to_path_buf();
    while current.starts_with(&pair.export) && current != pair.export {
        if let Some(mode) = pair.mode_bits() {
            let with_search = mode | ((mode & 0o444) >> 2);
            fs::set_permissions(
                &current,
                std::os::unix::fs::PermissionsExt::from_mode(with_search),
            )
            .map_err(|e| format!("{}: chmod: {e}", current.display()))?;
        }
        if pair.uid.is_some() || pair.gid.is_some() {
            std::os::unix::fs::chown(&current, pair.uid, pair.gid)
                .map_err(|e| format!("{}: chown: {e}", current.display()))?;
        }
        if !current.pop() {
            break;
        }
    }
    Ok(())
}

/// Reads a file whole, or returns None when it is larger than `limit`.
fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn sha_hex(bytes: &[u8]) -> String {
    mukaika_sanitizers::report::sha256_hex(bytes)
}

/// SHA-256 of a file, from bytes already read or by streaming it.
fn sha_of(path: &Path, bytes: Option<&[u8]>) -> Result<String, String> {
    match bytes {
        Some(b) => Ok(sha_hex(b)),
        None => crate::sanitize::sha256_file(path).map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// Our own temporary export names (`.I<millis>-<pid>-<n>.<k>.tmp`) below `dir`.
fn walk_temps(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 16 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_temps(&path, depth + 1, out),
            Ok(t) if t.is_file() && name.starts_with(".I") && name.ends_with(".tmp") => {
                out.push(path)
            }
            _ => {}
        }
    }
}

/// Regular files below `dir` (no symlinks followed, copy tools' temporary names skipped).
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 16 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind.is_dir() {
            walk(&path, depth + 1, out);
        } else if kind.is_file() && !temporary_name(&name) {
            out.push(path);
        } else if kind.is_symlink() {
            tracing::warn!(path = %path.display(), "symbolic link in an import folder is ignored");
        }
    }
}

/// Names copy tools and editors give files while they are still being written.
pub fn temporary_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    name.starts_with("~$")
        || name.starts_with(".~lock.")
        || name.starts_with(".healthz-")
        || lower.ends_with(".tmp")
        || lower.ends_with(".part")
        || lower.ends_with(".crdownload")
        || lower.ends_with(".partial")
}

/// The path below `root`, `/`-separated and NFC-normalised (macOS writes NFD).
fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().nfc().collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Why a path cannot be exported as named, if it cannot.
pub fn check_name(rel: &str) -> Option<String> {
    if rel.len() > 1024 {
        return Some("パスが長すぎます / path too long".into());
    }
    for segment in rel.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Some(format!("不正なパス要素 / bad path segment {segment:?}"));
        }
        if segment.contains('\u{FFFD}') {
            return Some("文字コードを判別できない名前 / undecodable name".into());
        }
        if segment
            .chars()
            .any(|c| c.is_control() || "<>:\"\\|?*".contains(c))
        {
            return Some(format!(
                "使えない文字を含む名前 / reserved characters in {segment:?}"
            ));
        }
        if segment.len() > 255 {
            return Some("名前が長すぎます / name too long".into());
        }
        if segment.ends_with('.') || segment.ends_with(' ') {
            return Some(format!(
                "末尾が . または空白の名前 / trailing dot or space in {segment:?}"
            ));
        }
        let stem = segment.split('.').next().unwrap_or("").to_ascii_uppercase();
        let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CLOCK$")
            || (stem.len() == 4
                && (stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.as_bytes()[3].is_ascii_digit());
        if device {
            return Some(format!(
                "Windows の予約名 / reserved device name {segment:?}"
            ));
        }
    }
    None
}

/// `name`, or `stem (2).ext`… when it is taken in `dir`; every candidate shortened to a name
/// the file system holds (the stem gives way to the number and the extension), with no control
/// or bidi character (an RLO would show `請求書\u{202e}fdp.exe` as `請求書exe.pdf` in Explorer).
fn unique(dir: &Path, name: &str) -> String {
    let name = names::file_name_safe(name);
    let name = names::shorten(&name, names::NAME_MAX);
    if !dir.join(name.as_ref()).exists() {
        return name.into_owned();
    }
    let (stem, ext) = match name.split_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    (2..)
        .map(|n| {
            let tag = format!(" ({n})");
            let room = names::NAME_MAX.saturating_sub(tag.len() + ext.len());
            let candidate = format!("{}{tag}{ext}", names::shorten(&stem, room));
            names::shorten(&candidate, names::NAME_MAX).into_owned()
        })
        .find(|candidate| !dir.join(candidate).exists())
        .unwrap_or_else(|| name.into_owned())
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Sanitized => "sanitized",
        Verdict::Passed => "passed",
        Verdict::Blocked => "blocked",
        Verdict::Quarantined => "quarantined",
    }
}

/// The Japanese report written next to every result.
pub fn report_text(
    report: &Report,
    rel: &str,
    output: Option<&str>,
    quarantine: Option<&str>,
) -> String {
    let mut t = String::from("\u{FEFF}無害化レポート\r\n");
    t.push_str("================\r\n");
    t.push_str(&format!("ファイル: {}\r\n", names::escape_controls(rel)));
    t.push_str(&format!("判定: {}\r\n", report.verdict.label_ja()));
    t.push_str(&format!("種類: {}", report.detected_type));
    if let Some(out) = report.output_type.filter(|o| *o != report.detected_type) {
        t.push_str(&format!(" → {out}"));
    }
    t.push_str("\r\n");
    match output {
        Some(o) => t.push_str(&format!("出力: {o}\r\n")),
        None => t.push_str("出力: なし (このファイルは LGWAN 側へ渡されません)\r\n"),
    }
    t.push_str(&format!("入力 SHA-256: {}\r\n", report.input_sha256));
    if let Some(out) = &report.output_sha256 {
        t.push_str(&format!("出力 SHA-256: {out}\r\n"));
    }
    if let Some(reason) = &report.reason {
        t.push_str(&format!(
            "理由: {} ({})\r\n",
            reason.description_ja(),
            reason.detail
        ));
    }
    if let Some(q) = quarantine {
        t.push_str(&format!("隔離ID: {q} (原本は隔離されています。必要な場合は情報システム担当へ連絡してください)\r\n"));
    }
    if !report.removed.is_empty() {
        t.push_str("取り除いたもの:\r\n");
        for r in &report.removed {
            t.push_str(&format!(
                "・{} — {} {}\r\n",
                r.what.description_ja(),
                r.location,
                r.detail
            ));
        }
    }
    for child in &report.children {
        t.push_str(&format!(
            "  内包ファイル {}: {}\r\n",
            names::escape_controls(child.input.as_deref().unwrap_or("?")),
            child.verdict.label_ja()
        ));
    }
    t.push_str(&format!(
        "処理日時: {}\r\n",
        crate::audit::log::now_rfc3339()
    ));
    t
}
