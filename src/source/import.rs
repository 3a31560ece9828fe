//! The import folder: staff drop files on the internet side; sanitized copies and a report
//! appear in the export folder the LGWAN side reads.
//!
//! Owns: one pass over every configured folder pair ([`Importer::pass`]) — finding files that
//! are stable (unchanged for the settle time, not locked, not a copy tool's temporary name),
//! sending each through the registry under the service policy, writing the result and a
//! Japanese report atomically into the mirrored export folder, quarantining originals that
//! cannot be made safe, auditing, and only then removing the original (or moving it to the
//! processed archive).
//! Each file is settled like a message: a pure `decide` says what to hold and export, and
//! `crate::pipeline::settle::apply` carries it out in the one order every source uses (hold →
//! exports → audit → retire the original) over this module's `ImportEffects`.
//! Invariants (lose nothing, duplicate nothing): exports are written through `crate::durable`
//! under temporary names tagged with the import ID, with the pair's mode and owner, and
//! fsynced; a ledger entry naming the final names is written durably before they are renamed
//! into place; the audit records are durable before the original is removed; the ledger
//! entry goes last. A crash at any point leaves either the original to process again or a
//! ledger entry that the next pass completes — never a lost file and never a second copy.
//! An entry is completed (and its original retired) only while every export it names is there,
//! renamed or still under its temporary name; if one is gone, the original is processed again
//! from the start instead (a possible second copy of what was there, never a lost file).
//! Names are NFC normalised; names that could escape the folder or that Windows cannot hold
//! are refused with a report. Symbolic links are never followed: a file is opened from directory descriptors,
//! component by component with `O_NOFOLLOW`, checked on the opened descriptor (a regular file
//! with one link — not a FIFO, not a hard link to something outside), read from that
//! descriptor, and removed relative to its folder's descriptor only while that name still
//! holds the same inode. The names listed are only candidates.
//! Must never: write an input byte into the export folder (only registry outputs and reports),
//! or overwrite an existing export.
//!
//! In a cluster (`[store] backend = "postgres"`, see [`cluster`]) the same invariants hold for
//! two or more nodes on one shared folder: a node claims each file in the database before it
//! opens it for reading, reserves the export names there, and writes the ledger entry there
//! (committed before the renames) instead of under its data folder, so the node that takes a
//! dead node's file over completes or redoes its work without a second copy. The sweep of
//! temporary exports spares those of files another node is working on.

pub mod cluster;

use crate::names::check_name;
use crate::sink::export::apply_ownership;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use mukaika_sanitizers::{names, Declared, Policy, Registry, Report, Verdict};

use crate::audit::event::{FileExported, FileImported, Quarantined};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::{ImportPair, ImportSection, ReportFormat};
use crate::error::{Error, Result};
use crate::pipeline::settle::{self, Handoff, Settlement};
use crate::store::quarantine::{QuarantineItem, QuarantineStore};

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
    /// Names that were not taken because what they held is not a plain file of the import
    /// folder: reached through a symbolic link, not a regular file (a FIFO, a device), or a
    /// hard link (its other name may be outside). They are left untouched.
    pub skipped: Vec<Failed>,
    /// Files another node of the cluster had claimed (or finished) already.
    pub elsewhere: usize,
}

/// Where a pass calls the hook set by [`Importer::with_hook`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// A listed file is about to be opened.
    BeforeOpen,
    /// A file's results are durable; the original is about to be removed or archived.
    BeforeRetire,
    /// A claim whose lease ran out was taken over (a cluster); its ledger entry is about to be
    /// completed, or its temporary exports removed. Called with the original's path.
    TakenOver,
}

/// A test hook: called with the point and the listed path.
type Hook = Box<dyn Fn(HookPoint, &Path) + Send + Sync>;

/// A file opened for import and what `fstat` said about it when opened. It stays open until
/// the original is retired, so its inode number cannot be reused by a file put in its place.
struct Source {
    file: File,
    meta: fs::Metadata,
}

/// Why a listed name is not opened as an import.
enum OpenRefusal {
    /// Not a plain, singly linked file reached without links: skipped, left untouched.
    Skip(String),
    /// Gone since it was listed (renamed or removed by its owner).
    Gone,
    /// An I/O error: the file fails this pass and is retried.
    Io(String),
}

/// The ledger entry of a file being exported (see the module invariants).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    pair: String,
    source: PathBuf,
    /// (temporary path, final path) of every export.
    renames: Vec<(PathBuf, PathBuf)>,
    /// (device, inode) of the original as opened: the name is removed only while it still
    /// holds that inode (a file put there since is someone else's).
    #[serde(default)]
    inode: Option<(u64, u64)>,
    archive_to: Option<PathBuf>,
    /// The audit records gathered before the ledger was written (the import, its quarantine):
    /// a crash before they were appended leaves them to the pass that completes the entry.
    #[serde(default)]
    events: Vec<AuditEvent>,
}

/// The ledger entry as a cluster shares it (in the file's claim): paths below the pair's
/// folders, since each node may mount the shared folders elsewhere, and the inode without a
/// device number, which each NFS client numbers itself. The archive, when configured, is the
/// completing node's own.
#[derive(Debug, Serialize, Deserialize)]
struct SharedEntry {
    /// The original, below the import folder.
    source: PathBuf,
    /// Its path as reports name it (NFC), for the processed archive.
    rel: String,
    /// (temporary, final) of every export, below the export folder.
    renames: Vec<(PathBuf, PathBuf)>,
    /// The original's inode as opened.
    ino: u64,
    /// As [`LedgerEntry::events`].
    events: Vec<AuditEvent>,
}

/// `path` below `root`, refused unless it is plain names only (an entry read from the database
/// never leads outside the pair's folders).
fn below(root: &Path, path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(Error::permanent(format!(
            "shared ledger entry: {} is not a path below the folder",
            path.display()
        )));
    }
    Ok(root.join(path))
}

/// What one imported file sends to the export folder: its sanitized output (if any) and its
/// report, named when they are written (names already taken get a suffix).
struct Exports {
    /// The import ID (tags the temporary names and the ledger entry).
    id: String,
    /// The file's path below the import folder.
    rel: String,
    /// The folder below the export root the results go to (empty for an untrusted name).
    safe_dir: String,
    /// The name the report is given when not the output's or the original's.
    shown: Option<String>,
    /// The original's name.
    base: String,
    report: Report,
    output: Option<mukaika_sanitizers::CleanFile>,
    /// Where the original was held, for the report.
    quarantine_id: Option<String>,
    /// The records gathered so far, kept in the ledger for an interrupted pass.
    events: Vec<AuditEvent>,
}

/// The delivered output's path below the export folder, once written.
struct Exported {
    output: Option<String>,
}

/// What [`decide`] needs to know of one imported file besides its report.
struct FileDecision<'a> {
    /// The pair's name.
    pair: &'a str,
    /// The file's path below the import folder.
    rel: &'a str,
    /// Its import ID.
    id: &'a str,
    /// Whether its name may be used in the export folder.
    trusted_name: bool,
    /// SHA-256 of the bytes read.
    sha256: &'a str,
    /// Its size.
    size: u64,
    /// When it was decided (RFC 3339 UTC), for the quarantine record.
    at: String,
}

/// Decides how to settle one imported file, touching nothing: without an output its original
/// is held (blocked and held files alike); its output, if any, and its report go to the export
/// folder. `events` are the records gathered so far (the import).
fn decide(
    file: FileDecision<'_>,
    report: Report,
    output: Option<mukaika_sanitizers::CleanFile>,
    mut events: Vec<AuditEvent>,
) -> Settlement<QuarantineItem, Exports> {
    let (rel_dir, base) = match file.rel.rsplit_once('/') {
        Some((d, b)) => (d.to_string(), b.to_string()),
        None => (String::new(), file.rel.to_string()),
    };
    let mut held = Vec::new();
    if output.is_none() {
        let reason = report.reason.clone().unwrap_or_else(|| {
            mukaika_sanitizers::Reason::new("policy-quarantine", "not delivered")
        });
        let item = QuarantineItem {
            id: file.id.to_string(),
            source: "import".into(),
            origin_id: format!("{}/{}", file.pair, file.rel),
            name: Some(base.clone()),
            reason: reason.code,
            detail: reason.detail,
            sha256: file.sha256.to_string(),
            size: file.size,
            at: file.at,
            report: serde_json::to_value(&report).unwrap_or_default(),
            mail_from: None,
            rcpt_to: Vec::new(),
            subject: None,
            detected_type: Some(report.detected_type.name().to_string()),
        };
        events.push(AuditEvent::Quarantined(Quarantined {
            item_id: item.id.clone(),
            source: item.source.clone(),
            origin_id: item.origin_id.clone(),
            reason: item.reason.clone(),
            sha256: item.sha256.clone(),
        }));
        held.push(item);
    }
    let exports = Exports {
        id: file.id.to_string(),
        rel: file.rel.to_string(),
        // A name that cannot be trusted is not used for the folder either.
        safe_dir: if file.trusted_name {
            rel_dir
        } else {
            String::new()
        },
        shown: (!file.trusted_name).then(|| format!("名前を確認できないファイル-{}", file.id)),
        base,
        report,
        output,
        quarantine_id: held.first().map(|h| h.id.clone()),
        // The ledger keeps them for the pass that completes an interrupted export.
        events: events.clone(),
    };
    Settlement {
        defer: None,
        held,
        outgoing: Some(exports),
        notice: None,
        events,
    }
}

/// The import folder's side of [`settle::apply`]: the quarantine store (from the opened
/// original), the export folder under its ledger, the audit log, and retiring the original.
struct ImportEffects<'a> {
    importer: &'a Importer,
    pair: &'a ImportPair,
    source: &'a Source,
    path: &'a Path,
    /// What was exported, once it was.
    delivered: Option<Exported>,
    /// The ledger entry of the exports and its path (what `complete` retires and removes);
    /// no path when the entry is in the file's claim (a cluster).
    ledger: Option<(Option<PathBuf>, LedgerEntry)>,
    /// The file's claim, in a cluster.
    claim: Option<i64>,
}

impl settle::Effects for ImportEffects<'_> {
    type Held = QuarantineItem;
    type Out = Exports;

    fn hold(&mut self, item: &QuarantineItem) -> Result<()> {
        self.importer
            .quarantine
            .put_file(item, &self.source.file)
            .map_err(|e| Error::transient(format!("quarantine: {e}")))
    }

    /// Exports under temporary names (fsynced), then the ledger entry naming them (durable),
    /// then the renames: a crash leaves either temporary files the next pass sweeps (the
    /// original is still there) or a ledger entry it completes.
    fn deliver_once(&mut self, out: Exports) -> Result<Handoff> {
        let (pair, importer) = (self.pair, self.importer);
        let export_dir = pair.export.join(&out.safe_dir);
        fs::create_dir_all(&export_dir)
            .map_err(|e| Error::io(format!("creating {}", export_dir.display()), e))?;
        dir_permissions(pair, &export_dir)?;
        let claimed = importer.claims.as_deref().zip(self.claim);
        let in_export = |name: &str| {
            if out.safe_dir.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", out.safe_dir)
            }
        };
        // In a cluster a name is reserved in the database too: another node may be choosing
        // names in the same folder at the same moment.
        let name_for = |wanted: &str| -> Result<String> {
            match claimed {
                Some((claims, claim)) => unique_reserved(&export_dir, wanted, |candidate| {
                    claims.reserve(claim, &pair.name, &in_export(candidate))
                }),
                None => Ok(unique(&export_dir, wanted)),
            }
        };
        let mut writes: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
        let out_name = match &out.output {
            Some(clean) => {
                let name = name_for(clean.name())?;
                writes.push((
                    name.clone(),
                    clean.bytes().to_vec(),
                    Some(sha_hex(clean.bytes())),
                ));
                Some(name)
            }
            None => None,
        };
        let shown = out
            .shown
            .clone()
            .or_else(|| out_name.clone())
            .unwrap_or_else(|| out.base.clone());
        let (suffix, body) = match importer.section.report_format {
            ReportFormat::Text => (
                REPORT_SUFFIX,
                report_text(
                    &out.report,
                    &out.rel,
                    out_name.as_deref(),
                    out.quarantine_id.as_deref(),
                    crate::clock::now_ms(),
                )
                .into_bytes(),
            ),
            ReportFormat::Json => (
                JSON_REPORT_SUFFIX,
                serde_json::to_vec_pretty(&out.report).unwrap_or_default(),
            ),
        };
        // The report's name is derived from the output's, so it is the one that overflows.
        let shown = names::shorten(&shown, names::NAME_MAX - suffix.len());
        writes.push((name_for(&format!("{shown}{suffix}"))?, body, None));

        let mut renames = Vec::new();
        for (name, bytes, _) in &writes {
            let tmp = write_export(&export_dir, &out.id, bytes, pair)?;
            renames.push((tmp, export_dir.join(name)));
        }
        let archive_to = importer.section.archive_processed.then(|| {
            importer
                .data
                .join("processed")
                .join(&pair.name)
                .join(&out.rel)
        });
        let entry = LedgerEntry {
            pair: pair.name.clone(),
            source: self.path.to_path_buf(),
            renames,
            inode: Some(inode_of(&self.source.meta)),
            archive_to,
            events: out.events,
        };
        let ledger_path = match claimed {
            Some((claims, claim)) => {
                // Committed in the claim before the renames, so whichever node completes it
                // renames the same temporary files to the same names.
                let shared = self.shared_entry(&entry)?;
                let encoded = serde_json::to_string(&shared)
                    .map_err(|e| Error::permanent(format!("ledger entry: {e}")))?;
                claims.write_entry(claim, &encoded)?;
                None
            }
            None => {
                let ledger = importer.data.join("ledger");
                fs::create_dir_all(&ledger)
                    .map_err(|e| Error::io(format!("creating {}", ledger.display()), e))?;
                let encoded = serde_json::to_vec(&entry)
                    .map_err(|e| Error::permanent(format!("ledger entry: {e}")))?;
                // The entry's name is durable (the folder is flushed) before the renames it
                // records, or a crash leaves exports whose original is processed again.
                Some(
                    crate::durable::write(
                        &ledger,
                        &format!("{}.json", out.id),
                        &encoded,
                        crate::durable::Mode::Replace,
                    )
                    .map_err(|e| Error::io(format!("ledger {}", ledger.display()), e))?,
                )
            }
        };
        for (tmp, fin) in &entry.renames {
            fs::rename(tmp, fin)
                .map_err(|e| Error::io(format!("export to {}", fin.display()), e))?;
        }
        sync(&export_dir)?;
        self.ledger = Some((ledger_path, entry));
        let in_folder = in_export;
        let records = writes
            .iter()
            .map(|(name, _, sha)| {
                AuditEvent::FileExported(FileExported {
                    item_id: out.id.clone(),
                    department: pair.name.clone(),
                    path: in_folder(name),
                    verdict: verdict_name(out.report.verdict).into(),
                    sha256: sha.clone(),
                })
            })
            .collect();
        self.delivered = Some(Exported {
            output: out_name.as_deref().map(in_folder),
        });
        Ok(Handoff::Done(records))
    }

    fn announce(&mut self, _: Exports, _: &[QuarantineItem]) -> Result<Vec<AuditEvent>> {
        // The report beside the exports is the import folder's notice.
        Ok(Vec::new())
    }

    fn audit(&mut self, events: &[AuditEvent]) -> Result<()> {
        self.importer
            .audit
            .append_all(events)
            .map(|_| ())
            .map_err(|e| Error::transient(format!("audit log: {e}")))
    }

    fn defer(&mut self, reason: &str, _next: u64) -> Result<()> {
        // Files are not deferred: one that cannot be settled now stays for the next pass.
        Err(Error::transient(reason.to_string()))
    }

    fn complete(&mut self) -> Result<()> {
        self.importer.at(HookPoint::BeforeRetire, self.path);
        let Some((ledger_path, entry)) = self.ledger.take() else {
            return Err(Error::permanent("nothing was exported to complete"));
        };
        if let Some((claims, claim)) = self.importer.claims.as_deref().zip(self.claim) {
            // A node that stalled past its lease leaves the original to the node that took
            // the claim over (it completes the same entry).
            claims.confirm(claim)?;
        }
        self.importer.retire(&entry)?;
        match (ledger_path, self.importer.claims.as_deref().zip(self.claim)) {
            (Some(ledger_path), _) => fs::remove_file(&ledger_path)
                .map_err(|e| Error::io(format!("removing {}", ledger_path.display()), e)),
            // The tombstone: no node takes this file again; a file dropped later under the
            // same name is another claim.
            (None, Some((claims, claim))) => claims.finish(claim),
            (None, None) => Err(Error::permanent("a shared ledger entry without a claim")),
        }
    }
}

impl ImportEffects<'_> {
    /// `entry` as the cluster shares it.
    fn shared_entry(&self, entry: &LedgerEntry) -> Result<SharedEntry> {
        let (import, export) = (&self.pair.import, &self.pair.export);
        let rel = |root: &Path, path: &Path| -> Result<PathBuf> {
            path.strip_prefix(root).map(Path::to_path_buf).map_err(|_| {
                Error::permanent(format!(
                    "{} is not below {}",
                    path.display(),
                    root.display()
                ))
            })
        };
        Ok(SharedEntry {
            source: rel(import, &entry.source)?,
            rel: rel_path(import, &entry.source),
            renames: entry
                .renames
                .iter()
                .map(|(tmp, fin)| Ok((rel(export, tmp)?, rel(export, fin)?)))
                .collect::<Result<_>>()?,
            ino: entry.inode.map_or(0, |(_, ino)| ino),
            events: entry.events.clone(),
        })
    }
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
    /// Names already reported as not taken (and why): audited once, not on every pass.
    refused: Mutex<HashSet<(PathBuf, String)>>,
    hook: Option<Hook>,
    /// The claims shared with the other nodes on the same folders (a cluster).
    claims: Option<Arc<cluster::Claims>>,
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
            refused: Mutex::new(HashSet::new()),
            hook: None,
            claims: None,
        }
    }

    /// With `[store] backend = "postgres"`, claims each file in the shared database before
    /// taking it, as node `node` (see [`cluster`]); with SQLite, unchanged.
    ///
    /// # Errors
    /// The database cannot be opened.
    pub fn with_cluster(self, store: &crate::config::StoreSection, node: &str) -> Result<Self> {
        if store.backend != crate::config::StoreBackend::Postgres {
            return Ok(self);
        }
        // A pair's name is what the nodes agree on: one name, one shared folder.
        let local = self.data.parent().unwrap_or(&self.data);
        for pair in &self.section.pairs {
            if pair.import.starts_with(local) {
                tracing::warn!(pair = %pair.name, import = %pair.import.display(), "in a cluster, pairs of the same name on every node are one shared folder: this one is inside the data folder; give a node-local folder a pair name no other node uses");
            }
        }
        Ok(self.with_claims(cluster::Claims::open(store, node)?))
    }

    /// Claims each file through `claims` before taking it (a cluster).
    #[must_use]
    pub fn with_claims(mut self, claims: cluster::Claims) -> Self {
        self.claims = Some(Arc::new(claims));
        self
    }

    /// Test support only: `hook` runs at each [`HookPoint`] of a pass, so a test can change the
    /// folder exactly between listing and opening, or between reading and removing.
    #[doc(hidden)]
    #[must_use]
    pub fn with_hook(mut self, hook: impl Fn(HookPoint, &Path) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    fn at(&self, point: HookPoint, path: &Path) {
        if let Some(hook) = &self.hook {
            hook(point, path);
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
            walk(&pair.import, &mut files);
            files.sort();
            for path in files {
                let rel = rel_path(&pair.import, &path);
                self.at(HookPoint::BeforeOpen, &path);
                let source = match open_source(&pair.import, &path) {
                    Ok(source) => source,
                    Err(OpenRefusal::Gone) => continue,
                    Err(OpenRefusal::Skip(why)) => {
                        let first = self
                            .refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((path.clone(), why.clone()));
                        if first {
                            tracing::warn!(pair = %pair.name, path = %rel, reason = %why, "not a plain file of the import folder; left untouched");
                            let refused =
                                AuditEvent::ImportFailed(crate::audit::event::ImportFailed {
                                    department: pair.name.clone(),
                                    path: rel.clone(),
                                    error: format!("取り込みません / not taken: {why}"),
                                });
                            if let Err(e) = self.audit.append(refused) {
                                tracing::error!(error = %e, "refusal could not be audited");
                            }
                        }
                        summary.skipped.push(Failed {
                            pair: pair.name.clone(),
                            path: rel,
                            error: why,
                        });
                        continue;
                    }
                    Err(OpenRefusal::Io(error)) => {
                        tracing::warn!(pair = %pair.name, path = %rel, error = %error, "cannot open; retried on the next pass");
                        summary.waiting += 1;
                        continue;
                    }
                };
                if !self.ready(&path, &source, daemon) {
                    summary.waiting += 1;
                    continue;
                }
                let claim = match self.claim(pair, &source, &path, &rel) {
                    Ok(Some(claim)) => claim,
                    Ok(None) => {
                        summary.elsewhere += 1;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(pair = %pair.name, path = %rel, error = %error, "cannot claim; retried on the next pass");
                        summary.waiting += 1;
                        continue;
                    }
                };
                match self.process(pair, &source, &path, &rel, policy, claim) {
                    Ok(done) => summary.processed.push(done),
                    Err(error) => {
                        tracing::error!(pair = %pair.name, path = %rel, error = %error, transient = error.is_transient(), "import failed; the file stays");
                        let error = error.to_string();
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
    fn ready(&self, path: &Path, source: &Source, daemon: bool) -> bool {
        let size = source.meta.len();
        let Ok(mtime) = source.meta.modified() else {
            return false;
        };
        let settle = Duration::from_secs(self.section.settle_secs);
        let old_enough = SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= settle);
        let unchanged = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let before = seen.insert(path.to_path_buf(), (size, mtime));
            !daemon || before == Some((size, mtime))
        };
        if !(old_enough && unchanged) {
            return false;
        }
        // A writer holding an exclusive lock (Samba, LibreOffice) is still writing.
        let f = &source.file;
        rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockShared)
            .and_then(|()| rustix::fs::flock(f, rustix::fs::FlockOperation::Unlock))
            .is_ok()
    }

    /// The import ID of a file: derived from the pair, path, inode, change time and content,
    /// so a pass that a crash interrupted and the pass that takes the file again agree on it
    /// (the quarantine stores it once), while the same name dropped again later (a new inode or
    /// change time) is a new import. The metadata is the opened descriptor's.
    fn import_id(&self, pair: &ImportPair, rel: &str, source: &Source, sha256: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        let meta = &source.meta;
        // Each NFS client numbers the device itself: in a cluster, every node must derive the
        // same ID for the same file.
        let dev = if self.claims.is_some() { 0 } else { meta.dev() };
        let key = format!(
            "{}\0{rel}\0{}\0{}\0{}.{}\0{sha256}",
            pair.name,
            dev,
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        let digest = sha_hex(key.as_bytes());
        format!("I{}", &digest[..24])
    }

    /// In a cluster, claims the opened file for this node: `Ok(Some(Some(claim)))` when won
    /// and the name still holds that very file, `Ok(None)` when another node has it (or had
    /// it: finished). On one node, `Ok(Some(None))`.
    #[allow(clippy::option_option)]
    fn claim(
        &self,
        pair: &ImportPair,
        source: &Source,
        path: &Path,
        rel: &str,
    ) -> Result<Option<Option<i64>>> {
        let Some(claims) = &self.claims else {
            return Ok(Some(None));
        };
        let file = cluster::FileIdentity::of(&pair.name, rel, &source.meta);
        let Some(claim) = claims.claim(&file)? else {
            return Ok(None);
        };
        // Won: but the node that finished this file may have removed it (and dropped its
        // tombstone) since it was listed and opened here. Only the name as it is now counts.
        let still = matches!(
            open_source(&pair.import, path),
            Ok(now) if cluster::FileIdentity::of(&pair.name, rel, &now.meta) == file
        );
        if !still {
            claims.release(claim)?;
            return Ok(None);
        }
        Ok(Some(Some(claim)))
    }

    fn process(
        &self,
        pair: &ImportPair,
        source: &Source,
        path: &Path,
        rel: &str,
        policy: &Policy,
        claim: Option<i64>,
    ) -> Result<Processed> {
        let claims = self.claims.as_deref().zip(claim);
        let result = self.process_claimed(pair, source, path, rel, policy, claim);
        if let (Err(_), Some((claims, claim))) = (&result, claims) {
            // Unless its ledger entry is in the claim (then the next pass completes it), the
            // file goes back to the folder for any node; its temporary exports are swept as
            // no one's once the claim is gone.
            match claims.entry_of(claim) {
                Ok(false) => {
                    if let Err(e) = claims.release(claim) {
                        tracing::warn!(error = %e, "import claim could not be released; another node takes it over after the lease");
                    }
                }
                // Left to run out: then any node (this one too) takes it over and completes it.
                Ok(true) => claims.let_lapse(claim),
                Err(e) => {
                    claims.let_lapse(claim);
                    tracing::warn!(error = %e, "import claim could not be read");
                }
            }
        }
        result
    }

    fn process_claimed(
        &self,
        pair: &ImportPair,
        source: &Source,
        path: &Path,
        rel: &str,
        policy: &Policy,
        claim: Option<i64>,
    ) -> Result<Processed> {
        let base = rel.rsplit_once('/').map_or(rel, |(_, b)| b).to_string();
        let size = source.meta.len();
        let mut events = Vec::new();
        let name_problem = check_name(rel);
        let (report, output, bytes_sha) = if let Some(problem) = &name_problem {
            let bytes = read_limited(source, path, policy.limits.max_input_bytes)?;
            let sha = sha_of(source, path, bytes.as_deref())?;
            let mut report = Registry::over_limit_report(Some(&base), sha.clone(), size, policy);
            report.reason = Some(mukaika_sanitizers::Reason::new("bad-name", problem.clone()));
            (report, None, sha)
        } else {
            match read_limited(source, path, policy.limits.max_input_bytes)? {
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
                        return Err(Error::transient(
                            "antivirus unavailable; the file waits in the import folder",
                        ));
                    }
                    let (report, output) = outcome.into_parts();
                    (report, output, sha)
                }
                None => {
                    let sha = sha_of(source, path, None)?;
                    let report =
                        Registry::over_limit_report(Some(&base), sha.clone(), size, policy);
                    (report, None, sha)
                }
            }
        };
        // The same file met again after a crash (same inode, same change time, same bytes)
        // gets the same ID, so its quarantine record is stored once and audited on this pass.
        let id = self.import_id(pair, rel, source, &bytes_sha);
        if let (Some(claims), Some(claim)) = (&self.claims, claim) {
            // Before any temporary export exists: the other nodes' sweeps spare files tagged
            // with the ID of a claim in progress.
            claims.set_import_id(claim, &id)?;
        }
        events.push(AuditEvent::FileImported(FileImported {
            item_id: id.clone(),
            department: pair.name.clone(),
            path: rel.to_string(),
            size,
            sha256: bytes_sha.clone(),
        }));

        // Settled in the one order every source uses (`settle::apply`): the original held
        // (blocked and held files alike) → the exports under the ledger → the audit records
        // → the original retired.
        let verdict = report.verdict;
        let settlement = decide(
            FileDecision {
                pair: &pair.name,
                rel,
                id: &id,
                trusted_name: name_problem.is_none(),
                sha256: &bytes_sha,
                size,
                at: crate::clock::now_rfc3339(),
            },
            report,
            output,
            events,
        );
        let quarantine_id = settlement.held.first().map(|h| h.id.clone());
        let mut fx = ImportEffects {
            importer: self,
            pair,
            source,
            path,
            delivered: None,
            ledger: None,
            claim,
        };
        settle::apply(settlement, &mut fx)?;
        let output = fx.delivered.and_then(|d| d.output);
        tracing::info!(department = %pair.name, item_id = %id, path = %rel, verdict = verdict_name(verdict), "file imported");
        Ok(Processed {
            pair: pair.name.clone(),
            path: rel.to_string(),
            verdict,
            output,
            quarantine_id,
        })
    }

    /// Removes the original (or moves it to the processed archive) once its results are
    /// durable: relative to its folder's descriptor (reached without following links), and only
    /// while the name still holds the inode that was read — a file put there since is left for
    /// the next pass.
    fn retire(&self, entry: &LedgerEntry) -> Result<()> {
        use rustix::fs::{AtFlags, OFlags};
        use rustix::io::Errno;
        let shown = entry.source.display();
        let Some(pair) = self.section.pairs.iter().find(|p| p.name == entry.pair) else {
            tracing::warn!(pair = %entry.pair, path = %shown, "pair no longer configured; the original is left in place");
            return Ok(());
        };
        let (dir, name) = match open_parent(&pair.import, &entry.source) {
            Ok(found) => found,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("opening {shown}"), e.into())),
        };
        let current = match rustix::fs::openat(
            &dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("opening {shown}"), e.into())),
        };
        let meta = current
            .metadata()
            .map_err(|e| Error::io(format!("reading {shown}"), e))?;
        let same = match entry.inode {
            Some(inode) => inode_of(&meta) == inode,
            // A ledger from before inodes were recorded: a plain file at least.
            None => meta.file_type().is_file(),
        };
        if !same {
            tracing::warn!(pair = %entry.pair, path = %shown, "the original was replaced after it was read; the new file is left for the next pass");
            return Ok(());
        }
        match &entry.archive_to {
            Some(to) => {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                match rustix::fs::renameat(&dir, &name, rustix::fs::CWD, to) {
                    Ok(()) => {}
                    // Another file system: copy from a descriptor of that same inode, then unlink.
                    Err(Errno::XDEV) => {
                        let mut from = File::from(
                            rustix::fs::openat(
                                &dir,
                                &name,
                                OFlags::RDONLY
                                    | OFlags::NOFOLLOW
                                    | OFlags::NONBLOCK
                                    | OFlags::CLOEXEC,
                                rustix::fs::Mode::empty(),
                            )
                            .map_err(|e| Error::io(format!("archiving {shown}"), e.into()))?,
                        );
                        let opened = from
                            .metadata()
                            .map_err(|e| Error::io(format!("archiving {shown}"), e))?;
                        if inode_of(&opened) != inode_of(&meta) {
                            return Err(Error::transient(format!(
                                "archiving {shown}: replaced while archiving"
                            )));
                        }
                        // Never a torn copy under the archived name: temp, fsync, rename.
                        let parent = to.parent().unwrap_or(Path::new("."));
                        let mut temp = crate::durable::Temp::create_as(
                            parent,
                            "archive",
                            crate::durable::READABLE,
                        )
                        .map_err(|e| Error::io(format!("archiving to {}", to.display()), e))?;
                        std::io::copy(&mut from, temp.file())
                            .and_then(|_| temp.commit(to, crate::durable::Mode::Replace))
                            .map_err(|e| Error::io(format!("archiving {shown}"), e))?;
                        rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
                            .map_err(|e| Error::io(format!("removing {shown}"), e.into()))?;
                    }
                    Err(e) => return Err(Error::io(format!("archiving {shown}"), e.into())),
                }
                // The archived name is durable before the import folder's loses it.
                if let Some(parent) = to.parent() {
                    sync(parent)?;
                }
            }
            None => rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
                .map_err(|e| Error::io(format!("removing {shown}"), e.into()))?,
        }
        rustix::fs::fsync(&dir).map_err(|e| Error::io(format!("folder sync for {shown}"), e.into()))
    }

    /// Completes exports a crash interrupted: finishes renames whose temporary file is still
    /// there, then retires the original. The audit records of such a file were not written (they
    /// are written after the renames), so they are written now from the ledger — its import and
    /// quarantine records too, so no quarantined item is left without one (a crash after the
    /// records and before the ledger's removal records them a second time: visible, not lost).
    fn finish_ledger(&self, summary: &mut PassSummary) -> Result<()> {
        let dir = self.data.join("ledger");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().collect(),
            // Nothing was ever exported by this node (a cluster node still takes over).
            Err(_) if self.claims.is_none() => return Ok(()),
            Err(_) => Vec::new(),
        };
        for entry in entries {
            let path = entry.path();
            if crate::durable::is_temp_name(&entry.file_name().to_string_lossy()) {
                // An entry a crash cut off before it was committed: its exports are temporary
                // files swept below, and its original is still there to be processed again.
                let _ = fs::remove_file(&path);
                continue;
            }
            let ledger: LedgerEntry = match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(l) => l,
                None => continue,
            };
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Completed, or given back (an export it names is gone: the original is processed
            // again below, in this pass): either way the entry is done with.
            self.complete_entry(&ledger, &id, true, &|| Ok(()), summary)?;
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        if let Some(claims) = &self.claims {
            self.take_over(claims, summary)?;
        }
        // Temporary exports no ledger names are from a crash before the ledger was written:
        // their original is still in the import folder and will be processed again.
        // In a cluster, those of a file another node is working on are spared: a temporary
        // file is written only after its import ID is in a claim, and swept once no
        // unfinished claim has that ID.
        for pair in &self.section.pairs {
            let mut stale = Vec::new();
            walk_temps(&pair.export, 0, &mut stale);
            if let Some(claims) = &self.claims {
                let ids: Vec<String> = stale.iter().filter_map(|t| temp_id(t)).collect();
                let working = claims.working(&ids)?;
                stale.retain(|t| temp_id(t).is_none_or(|id| !working.contains(&id)));
            }
            for tmp in stale {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(())
    }

    /// Completes a ledger entry (a crashed pass's, or a dead node's): the renames whose
    /// temporary file is still there, the audit records the pass did not write, the original
    /// retired (when `retire`). `id` is the import ID. `confirm` is called before each
    /// destructive step (in a cluster: the claim is still this node's, see
    /// [`cluster::Claims::confirm`]); its error stops the completion.
    ///
    /// The original is retired only once every export the entry names is in place. When one
    /// is gone — neither its final name nor its temporary file is there (swept by a node that
    /// was too slow, removed by hand) — nothing is renamed and the entry is given back
    /// ([`Importer::give_back`]): the original stays, to be processed again from the start.
    fn complete_entry(
        &self,
        ledger: &LedgerEntry,
        id: &str,
        retire: bool,
        confirm: &dyn Fn() -> Result<()>,
        summary: &mut PassSummary,
    ) -> Result<Completion> {
        // Checked before anything is renamed, so a given-back entry has put nothing in place
        // in this call.
        let missing: Vec<&Path> = ledger
            .renames
            .iter()
            .filter(|(tmp, fin)| !present(fin) && !present(tmp))
            .map(|(_, fin)| fin.as_path())
            .collect();
        if !missing.is_empty() {
            self.give_back(ledger, &missing, confirm)?;
            return Ok(Completion::GivenBack);
        }
        for (tmp, fin) in &ledger.renames {
            if !present(fin) {
                confirm()?;
                fs::rename(tmp, fin)
                    .map_err(|e| Error::io(format!("export to {}", fin.display()), e))?;
            }
        }
        if let Some((_, fin)) = ledger.renames.first() {
            if let Some(parent) = fin.parent() {
                sync(parent)?;
            }
        }
        // Whatever happened between the check and the renames, the original is not retired
        // unless every export is there now (the next attempt gives the entry back).
        if let Some((_, fin)) = ledger.renames.iter().find(|(_, fin)| !present(fin)) {
            return Err(Error::transient(format!(
                "export {} is not in place; the original stays",
                fin.display()
            )));
        }
        let mut events = ledger.events.clone();
        events.push(AuditEvent::FileExported(FileExported {
            item_id: id.to_string(),
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
        self.audit
            .append_all(&events)
            .map_err(|e| Error::transient(format!("audit log: {e}")))?;
        if retire {
            confirm()?;
            self.retire(ledger)?;
        }
        summary.processed.push(Processed {
            pair: ledger.pair.clone(),
            path: ledger.source.display().to_string(),
            verdict: Verdict::Sanitized,
            output: None,
            quarantine_id: None,
        });
        Ok(Completion::Done)
    }

    /// Gives back an entry an export of which is gone (`missing`, final names): the original
    /// is left where it is, to be processed again from the start as if the entry had never
    /// been written; the entry's temporary files still there are removed; the failure is
    /// audited and logged. The caller then drops the entry (the node-local ledger file, or
    /// the claim, released so that any node takes the file again).
    ///
    /// What the entry did put in place (final names found taken) stays. Removing it cannot
    /// prevent a second copy: it was renamed there by the pass or node that wrote the entry,
    /// possibly long ago, and the LGWAN side may have taken it already. And removing it could
    /// lose the file: until the file is processed again, that export is its only result, and
    /// the processing may never happen (the original is removed by its owner meanwhile, or a
    /// verdict differs with a newer engine). Lose nothing comes before duplicate nothing, so
    /// the cost is at most a visible second copy (`名前 (2).txt`) of what was there. This call
    /// itself renamed nothing (it checks before any rename), so it has nothing of its own to
    /// take back.
    fn give_back(
        &self,
        ledger: &LedgerEntry,
        missing: &[&Path],
        confirm: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let rel = self
            .section
            .pairs
            .iter()
            .find(|p| p.name == ledger.pair)
            .map_or_else(
                || ledger.source.display().to_string(),
                |p| rel_path(&p.import, &ledger.source),
            );
        let missing = missing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let original = present(&ledger.source);
        tracing::error!(pair = %ledger.pair, path = %rel, missing = %missing, original, "an export named by the ledger entry is gone; the original is not removed and is processed again");
        // Exactly the entry's own temporary names (tagged with the writing process and a
        // random part), never another claim's files of the same import ID.
        for (tmp, _) in &ledger.renames {
            if present(tmp) {
                confirm()?;
                let _ = fs::remove_file(tmp);
            }
        }
        let error = format!(
            "書き出し結果の一部が見つからないため、原本を削除せず最初から取り込み直します / an export named by the ledger is missing ({missing}); the original is kept and processed again{}",
            if original { "" } else { " (the original is no longer in the import folder)" }
        );
        let failed = AuditEvent::ImportFailed(crate::audit::event::ImportFailed {
            department: ledger.pair.clone(),
            path: rel.clone(),
            error,
        });
        // Audited, not counted as a failed file: the file itself is processed again (in this
        // pass on one node, by whichever node claims it in a cluster) and counted then.
        self.audit
            .append(failed)
            .map(|_| ())
            .map_err(|e| Error::transient(format!("audit log: {e}")))
    }

    /// Takes over the claims whose lease ran out (a dead node's, or one a failure or a restart
    /// left, this node's included), one at a time, each under its own renewed lease (see
    /// [`cluster::Claims::take_over`]); at most [`TAKE_OVERS_PER_PASS`] per pass, so a pass
    /// ends even when claims keep failing and running out.
    fn take_over(&self, claims: &cluster::Claims, summary: &mut PassSummary) -> Result<()> {
        let pairs: Vec<String> = self.section.pairs.iter().map(|p| p.name.clone()).collect();
        for _ in 0..TAKE_OVERS_PER_PASS {
            let Some(taken) = claims.take_over(&pairs)? else {
                break;
            };
            let (claim, file) = (taken.claim, taken.file.clone());
            let result = self.take_over_one(claims, taken, summary);
            // Finished, released, or left to run out: renewed no more either way.
            claims.let_lapse(claim);
            if let Err(e) = result {
                tracing::error!(pair = %file.pair, path = %file.path, error = %e, "taken-over import stopped; retried when its lease runs out");
            }
        }
        Ok(())
    }

    /// One claim taken over: one with a ledger entry is completed here (the same temporary
    /// files renamed to the same names: no second copy) or, when an export it names is gone,
    /// given back; one without gives its file back to the folder after its temporary exports
    /// are removed (nothing was renamed yet). Each destructive step first confirms the claim
    /// is still this node's.
    fn take_over_one(
        &self,
        claims: &cluster::Claims,
        taken: cluster::TakenOver,
        summary: &mut PassSummary,
    ) -> Result<()> {
        let file = &taken.file;
        tracing::warn!(pair = %file.pair, path = %file.path, previous = %taken.previous, entry = taken.entry.is_some(), "import claim taken over");
        let Some(pair) = self.section.pairs.iter().find(|p| p.name == file.pair) else {
            return Ok(());
        };
        self.at(HookPoint::TakenOver, &pair.import.join(&file.path));
        let confirm = || claims.confirm(taken.claim);
        let Some(entry) = &taken.entry else {
            if let Some(id) = &taken.import_id {
                // The import ID is the file's, not the claim's: the next claim on this file
                // writes temporaries under the same ID. Only while this claim holds (no other
                // claim on the file can exist) are they this claim's.
                confirm()?;
                let mut temps = Vec::new();
                walk_temps(&pair.export, 0, &mut temps);
                for tmp in temps
                    .iter()
                    .filter(|t| temp_id(t).as_deref() == Some(id.as_str()))
                {
                    let _ = fs::remove_file(tmp);
                }
            }
            return claims.release(taken.claim);
        };
        let ledger = match serde_json::from_str::<SharedEntry>(entry)
            .map_err(|e| Error::permanent(format!("shared ledger entry: {e}")))
            .and_then(|shared| self.resolve(pair, shared))
        {
            Ok(ledger) => ledger,
            Err(e) => {
                // Not given up: the claim runs out again and is retried (and logged) by
                // whichever node takes it next, until an operator looks at it.
                tracing::error!(pair = %file.pair, path = %file.path, error = %e, "shared ledger entry cannot be completed");
                return Ok(());
            }
        };
        // The original is removed only while its name still holds the very file claimed
        // (inode, size and times, not the inode alone): a pair of the same name on a folder
        // this node does not share, or a file put there since, is never removed.
        let retire = match open_source(&pair.import, &ledger.source) {
            Ok(now) => cluster::FileIdentity::of(&pair.name, &file.path, &now.meta) == *file,
            Err(OpenRefusal::Gone) => false,
            Err(OpenRefusal::Skip(why) | OpenRefusal::Io(why)) => {
                tracing::warn!(pair = %file.pair, path = %file.path, error = %why, "taken-over import: the original cannot be checked; retried when its lease runs out");
                return Ok(());
            }
        };
        if !retire {
            tracing::warn!(pair = %file.pair, path = %file.path, "taken-over import: the original is gone or is another file; it is not removed");
        }
        let id = taken.import_id.clone().unwrap_or_default();
        match self.complete_entry(&ledger, &id, retire, &confirm, summary) {
            Ok(Completion::Done) => claims.finish(taken.claim),
            // The file goes back to the folder for any node, processed from the start.
            Ok(Completion::GivenBack) => claims.release(taken.claim),
            // Not renewed: it runs out and is taken over again.
            Err(e) => {
                tracing::error!(pair = %file.pair, path = %file.path, error = %e, "taken-over import not completed; retried when its lease runs out");
                Ok(())
            }
        }
    }

    /// A shared ledger entry as this node completes it: its own paths to the shared folders,
    /// its own device number for the original's inode, its own processed archive.
    fn resolve(&self, pair: &ImportPair, shared: SharedEntry) -> Result<LedgerEntry> {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata(&pair.import)
            .map_err(|e| Error::io(format!("reading {}", pair.import.display()), e))?
            .dev();
        Ok(LedgerEntry {
            pair: pair.name.clone(),
            source: below(&pair.import, &shared.source)?,
            renames: shared
                .renames
                .iter()
                .map(|(tmp, fin)| Ok((below(&pair.export, tmp)?, below(&pair.export, fin)?)))
                .collect::<Result<_>>()?,
            inode: Some((dev, shared.ino)),
            archive_to: self.section.archive_processed.then(|| {
                self.data
                    .join("processed")
                    .join(&pair.name)
                    .join(&shared.rel)
            }),
            events: shared.events,
        })
    }
}

/// How many expired claims one pass takes over at most (one at a time).
const TAKE_OVERS_PER_PASS: usize = 100;

/// What became of a ledger entry being completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// Every export in place, the records written, the original retired (when asked).
    Done,
    /// An export it names is gone: the original was left, to be processed again.
    GivenBack,
}

/// Whether a name holds anything (a link is not followed: a name is taken either way).
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The import ID a temporary export's name is tagged with (`.I<hash>.…tmp`).
fn temp_id(tmp: &Path) -> Option<String> {
    let name = tmp.file_name()?.to_str()?;
    let id = name.strip_prefix('.')?.split('.').next()?;
    id.starts_with('I').then(|| id.to_string())
}

/// As [`unique`], but a name is taken only once `reserve` (the cluster's reservation of it)
/// agreed, and only if the folder does not hold it after that either: a name another node
/// renamed into place and then freed is on disk by the time its reservation is gone.
fn unique_reserved(
    dir: &Path,
    name: &str,
    mut reserve: impl FnMut(&str) -> Result<bool>,
) -> Result<String> {
    for candidate in candidates(name).take(10_000) {
        if dir.join(&candidate).exists() || !reserve(&candidate)? {
            continue;
        }
        if !dir.join(&candidate).exists() {
            return Ok(candidate);
        }
    }
    Err(Error::transient(format!(
        "no free export name for {name} in {}",
        dir.display()
    )))
}

fn sync(dir: &Path) -> Result<()> {
    crate::durable::sync_dir(dir)
        .map_err(|e| Error::io(format!("folder sync {}", dir.display()), e))
}

/// Writes an export under a temporary name tagged with the import ID `id` (so the sweep of
/// [`walk_temps`] knows it as the importer's), with the pair's mode and owner (0640 under the
/// service's umask when the pair sets no mode), fsynced; returns the temporary path, which the
/// ledger records before the rename.
fn write_export(dir: &Path, id: &str, bytes: &[u8], pair: &ImportPair) -> Result<PathBuf> {
    let failed = |e: std::io::Error| Error::io(format!("export to {}", dir.display()), e);
    let mut temp =
        crate::durable::Temp::create_as(dir, id, crate::durable::READABLE).map_err(failed)?;
    temp.file().write_all(bytes).map_err(failed)?;
    temp.set_metadata(|f| apply_ownership(f, pair))
        .map_err(failed)?;
    temp.keep().map_err(failed)
}

/// Gives the mirrored folders below the export root the pair's owner and mode (a folder also
/// gets the search bit wherever the mode allows reading).
fn dir_permissions(pair: &ImportPair, dir: &Path) -> Result<()> {
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
            .map_err(|e| Error::io(format!("chmod {}", current.display()), e))?;
        }
        if pair.uid.is_some() || pair.gid.is_some() {
            std::os::unix::fs::chown(&current, pair.uid, pair.gid)
                .map_err(|e| Error::io(format!("chown {}", current.display()), e))?;
        }
        if !current.pop() {
            break;
        }
    }
    Ok(())
}

/// (device, inode): what a name must still hold for the importer to remove it.
fn inode_of(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Opens the folder holding `path` (below `root`) one component at a time, never following a
/// symbolic link, and returns it with the file's name in it. `root` itself is configuration
/// and may be a link.
fn open_parent(
    root: &Path,
    path: &Path,
) -> std::result::Result<(OwnedFd, OsString), rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    let rel = path
        .strip_prefix(root)
        .map_err(|_| rustix::io::Errno::INVAL)?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, dir_flags, Mode::empty())?;
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        let Component::Normal(name) = part else {
            return Err(rustix::io::Errno::INVAL);
        };
        if parts.peek().is_none() {
            return Ok((dir, name.to_os_string()));
        }
        dir = rustix::fs::openat(&dir, name, dir_flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    Err(rustix::io::Errno::INVAL)
}

/// Opens a listed file for import: beneath the root without following links, non-blocking
/// (a FIFO put in its place cannot hang the pass), and taken only if the opened descriptor is
/// a regular file with one link.
fn open_source(root: &Path, path: &Path) -> std::result::Result<Source, OpenRefusal> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let refusal = |e: Errno| match e {
        Errno::NOENT => OpenRefusal::Gone,
        Errno::LOOP | Errno::NOTDIR => OpenRefusal::Skip(
            "シンボリックリンク経由のパス / reached through a symbolic link".into(),
        ),
        e => OpenRefusal::Io(e.to_string()),
    };
    let (dir, name) = open_parent(root, path).map_err(refusal)?;
    let fd = rustix::fs::openat(
        &dir,
        &name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(refusal)?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| OpenRefusal::Io(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(OpenRefusal::Skip(
            "通常のファイルではありません / not a regular file".into(),
        ));
    }
    let links = std::os::unix::fs::MetadataExt::nlink(&meta);
    if links != 1 {
        return Err(OpenRefusal::Skip(format!(
            "ハードリンクされたファイル / a hard link ({links} names)"
        )));
    }
    Ok(Source { file, meta })
}

/// Reads the opened file whole, or returns None when it is larger than `limit`.
fn read_limited(source: &Source, path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let failed = |e: std::io::Error| Error::io(format!("reading {}", path.display()), e);
    let mut f = &source.file;
    f.seek(std::io::SeekFrom::Start(0)).map_err(failed)?;
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).map_err(failed)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn sha_hex(bytes: &[u8]) -> String {
    mukaika_sanitizers::report::sha256_hex(bytes)
}

/// SHA-256 of the opened file, from bytes already read or by streaming it.
fn sha_of(source: &Source, path: &Path, bytes: Option<&[u8]>) -> Result<String> {
    use sha2::{Digest, Sha256};
    if let Some(b) = bytes {
        return Ok(sha_hex(b));
    }
    let mut f = &source.file;
    let mut hasher = Sha256::new();
    f.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| std::io::copy(&mut f, &mut hasher))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Our own temporary export names below `dir`: `crate::durable`'s, tagged with an import ID
/// (`.I<hash>.<pid>.<n>.<random>.tmp`), and those of earlier versions (`.I<hash>.<k>.tmp`).
/// Other writers' temporary files in the export folder (a release's) are not ours to remove.
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

/// Regular files below `root` (no symlinks followed, copy tools' temporary names skipped).
/// Each folder is listed from a descriptor opened relative to its parent with `O_NOFOLLOW`, so
/// a folder swapped for a link while the pass lists cannot lead the listing outside.
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if let Ok(fd) = rustix::fs::open(root, flags, Mode::empty()) {
        walk_at(&fd, root, 0, out);
    }
}

fn walk_at(dir: &OwnedFd, path: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    if depth > 16 {
        return;
    }
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            break;
        };
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(raw);
        let child = path.join(name);
        let kind = match entry.file_type() {
            // Some file systems do not say in the listing.
            FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(_) => continue,
            },
            known => known,
        };
        match kind {
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(sub) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
                    walk_at(&sub, &child, depth + 1, out);
                }
            }
            FileType::RegularFile if !temporary_name(&name.to_string_lossy()) => out.push(child),
            FileType::Symlink => {
                tracing::warn!(path = %child.display(), "symbolic link in an import folder is ignored");
            }
            _ => {}
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

/// `name`, or `stem (2).ext`… when it is taken in `dir`; every candidate shortened to a name
/// the file system holds (the stem gives way to the number and the extension), with no control
/// or bidi character (an RLO would show `請求書\u{202e}fdp.exe` as `請求書exe.pdf` in Explorer).
fn unique(dir: &Path, name: &str) -> String {
    let mut all = candidates(name);
    let first = all.next().unwrap_or_default();
    if !dir.join(&first).exists() {
        return first;
    }
    all.find(|candidate| !dir.join(candidate).exists())
        .unwrap_or(first)
}

/// The names [`unique`] tries for `name`, in order: itself (made safe and short enough), then
/// `stem (2).ext`, `stem (3).ext`…
fn candidates(name: &str) -> impl Iterator<Item = String> {
    let name = names::file_name_safe(name);
    let name = names::shorten(&name, names::NAME_MAX).into_owned();
    let (stem, ext) = match name.split_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    std::iter::once(name).chain((2..).map(move |n| {
        let tag = format!(" ({n})");
        let room = names::NAME_MAX.saturating_sub(tag.len() + ext.len());
        let candidate = format!("{}{tag}{ext}", names::shorten(&stem, room));
        names::shorten(&candidate, names::NAME_MAX).into_owned()
    }))
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Sanitized => "sanitized",
        Verdict::Passed => "passed",
        Verdict::Blocked => "blocked",
        Verdict::Quarantined => "quarantined",
    }
}

/// The Japanese report written next to every result, for the staff member who dropped the
/// file: the verdict word and what it means, the reason in plain Japanese
/// ([`Report::explain_ja`], the sentences mail notices use too), the quarantine ID when the
/// original is kept, what was removed, and local time. No reason codes, English details or
/// part names: those stay in the JSON report (`report_format = "json"`), the quarantine
/// record and the admin view.
pub fn report_text(
    report: &Report,
    rel: &str,
    output: Option<&str>,
    quarantine: Option<&str>,
    processed_at_ms: u64,
) -> String {
    use mukaika_sanitizers::report::kind_label_ja;
    let mut t = String::from("\u{FEFF}無害化レポート\r\n");
    t.push_str("================\r\n");
    t.push_str(&format!("ファイル: {}\r\n", names::escape_controls(rel)));
    t.push_str(&format!("判定: {}\r\n", report.verdict.label_ja()));
    t.push_str(&format!("結果: {}\r\n", report.verdict.meaning_ja()));
    if let Some(why) = report.explain_ja() {
        t.push_str(&format!("理由: {}\r\n", names::escape_controls(&why)));
    }
    if let Some(q) = quarantine {
        t.push_str(&format!(
            "隔離ID: {q}\r\n  原本は隔離して保管しています。業務上必要な場合は、この隔離IDを添えて情報システム担当へ連絡してください。\r\n"
        ));
    }
    t.push_str(&format!("種類: {}", kind_label_ja(report.detected_type)));
    if let Some(out) = report.output_type.filter(|o| *o != report.detected_type) {
        t.push_str(&format!(" → {}", kind_label_ja(out)));
    }
    t.push_str("\r\n");
    match output {
        Some(o) => t.push_str(&format!("出力: {}\r\n", names::escape_controls(o))),
        None => t.push_str("出力: なし\r\n"),
    }
    if !report.removed.is_empty() {
        t.push_str("取り除いたもの:\r\n");
        for line in removal_lines(&report.removed) {
            t.push_str(&format!("・{line}\r\n"));
        }
    }
    if !report.children.is_empty() {
        t.push_str("書庫の中のファイル:\r\n");
        const SHOWN: usize = 100;
        for child in report.children.iter().take(SHOWN) {
            let name = names::escape_controls(child.input.as_deref().unwrap_or("(名前なし)"));
            match &child.reason {
                Some(r) => t.push_str(&format!(
                    "・{name} — {} ({})\r\n",
                    child.verdict.label_ja(),
                    r.description_ja()
                )),
                None => t.push_str(&format!("・{name} — {}\r\n", child.verdict.label_ja())),
            }
        }
        if report.children.len() > SHOWN {
            t.push_str(&format!("・ほか {} 件\r\n", report.children.len() - SHOWN));
        }
    }
    t.push_str(&format!("入力 SHA-256: {}\r\n", report.input_sha256));
    if let Some(out) = &report.output_sha256 {
        t.push_str(&format!("出力 SHA-256: {out}\r\n"));
    }
    // Staff read this report: local time, marked (the JSON report stays UTC).
    t.push_str(&format!(
        "処理日時: {}\r\n",
        crate::clock::local_display(processed_at_ms)
    ));
    t
}

/// What was removed, one line per kind in the order first met, with how many and — where a
/// person can find the place (a CSV cell) — where. Part names and object numbers are left to
/// the JSON report.
fn removal_lines(removed: &[mukaika_sanitizers::Removal]) -> Vec<String> {
    let mut kinds: Vec<mukaika_sanitizers::What> = Vec::new();
    for r in removed {
        if !kinds.contains(&r.what) {
            kinds.push(r.what);
        }
    }
    kinds
        .into_iter()
        .map(|what| {
            let these: Vec<_> = removed.iter().filter(|r| r.what == what).collect();
            let cells: Vec<String> = these.iter().filter_map(|r| cell_ja(&r.location)).collect();
            let mut line = what.description_ja().to_string();
            if cells.is_empty() {
                if these.len() > 1 {
                    line.push_str(&format!(" ({} か所)", these.len()));
                }
            } else {
                let shown: Vec<&str> = cells.iter().take(5).map(String::as_str).collect();
                line.push_str(&format!(" ({}", shown.join("、")));
                if cells.len() > shown.len() {
                    line.push_str(&format!(" ほか {} か所", cells.len() - shown.len()));
                }
                line.push(')');
            }
            line
        })
        .collect()
}

/// `row 2, column 3` (a CSV cell, as the text sanitizer writes it) → `2 行目 3 列目`.
fn cell_ja(location: &str) -> Option<String> {
    let (row, column) = location.strip_prefix("row ")?.split_once(", column ")?;
    let row: u64 = row.parse().ok()?;
    let column: u64 = column.parse().ok()?;
    Some(format!("{row} 行目 {column} 列目"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mukaika_sanitizers::FileKind;

    #[test]
    fn text_report_shows_the_processing_time_in_japan_time() {
        let report = Report {
            input: Some("a.pdf".into()),
            input_sha256: "00".repeat(32),
            input_size: 1,
            detected_type: FileKind::Pdf,
            verdict: Verdict::Passed,
            reason: None,
            findings: Vec::new(),
            removed: Vec::new(),
            warnings: Vec::new(),
            output: Some("a.pdf".into()),
            output_sha256: None,
            output_type: None,
            children: Vec::new(),
            encrypted: None,
        };
        // 2026-12-04T17:52:55.843Z: already the 5th in Japan.
        let text = report_text(&report, "a.pdf", Some("a.pdf"), None, 1_796_406_775_843);
        assert!(
            text.ends_with("処理日時: 2026-12-05 02:52:55 (JST)\r\n"),
            "{text}"
        );
    }

    fn decided(
        name: &str,
        rel: &str,
        bytes: &[u8],
        trusted_name: bool,
    ) -> Settlement<QuarantineItem, Exports> {
        let registry = Registry::standard();
        let outcome = registry.process(
            bytes,
            &Declared {
                name: Some(name),
                mime: None,
            },
            &Policy::default(),
        );
        let sha = outcome.report.input_sha256.clone();
        let (report, output) = outcome.into_parts();
        decide(
            FileDecision {
                pair: "soumu",
                rel,
                id: "I1",
                trusted_name,
                sha256: &sha,
                size: bytes.len() as u64,
                at: "2026-12-05T00:00:00.000Z".into(),
            },
            report,
            output,
            Vec::new(),
        )
    }

    fn kinds(events: &[AuditEvent]) -> Vec<String> {
        events.iter().map(AuditEvent::kind).collect()
    }

    #[test]
    fn a_blocked_file_is_held_and_only_its_report_goes_to_the_export_folder() {
        let mut exe = b"MZ\x90\x00".to_vec();
        exe.resize(256, 0);
        let s = decided("tool.exe", "sub/tool.exe", &exe, true);
        assert_eq!(s.held.len(), 1);
        assert_eq!(s.held[0].id, "I1");
        assert_eq!(s.held[0].origin_id, "soumu/sub/tool.exe");
        assert_eq!(kinds(&s.events), ["quarantined"]);
        let out = s.outgoing.expect("the report still goes out");
        assert!(out.output.is_none());
        assert_eq!(out.quarantine_id.as_deref(), Some("I1"));
        assert_eq!(out.safe_dir, "sub");
        assert_eq!(kinds(&out.events), ["quarantined"], "the ledger keeps them");
    }

    #[test]
    fn a_clustered_export_name_skips_names_reserved_elsewhere_or_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memo.txt"), b"x").unwrap();
        let mut asked = Vec::new();
        let name = unique_reserved(dir.path(), "memo.txt", |candidate| {
            asked.push(candidate.to_string());
            // Another node renamed its export into place just as this one reserved the name.
            if candidate == "memo (3).txt" {
                fs::write(dir.path().join(candidate), b"y").unwrap();
            }
            // Reserved by another node.
            Ok(candidate != "memo (2).txt")
        })
        .unwrap();
        assert_eq!(name, "memo (4).txt");
        assert_eq!(asked, ["memo (2).txt", "memo (3).txt", "memo (4).txt"]);
        assert_eq!(unique(dir.path(), "memo.txt"), "memo (2).txt");
    }

    #[test]
    fn a_clean_file_holds_nothing_and_goes_out_with_its_report() {
        let s = decided("memo.txt", "memo.txt", "会議は10時から\n".as_bytes(), true);
        assert!(s.held.is_empty());
        assert!(s.events.is_empty());
        let out = s.outgoing.unwrap();
        assert!(out.output.is_some());
        assert!(out.quarantine_id.is_none());
        assert!(out.shown.is_none());
    }

    #[test]
    fn an_untrusted_name_is_used_neither_for_the_folder_nor_the_report() {
        let s = decided("memo.txt", "..\u{202e}/memo.txt", b"x\n", false);
        let out = s.outgoing.unwrap();
        assert_eq!(out.safe_dir, "");
        assert_eq!(out.shown.as_deref(), Some("名前を確認できないファイル-I1"));
    }

    fn blocked(name: &str, kind: FileKind, code: &str, detail: &str) -> Report {
        Report {
            input: Some(name.into()),
            input_sha256: "00".repeat(32),
            input_size: 1,
            detected_type: kind,
            verdict: Verdict::Blocked,
            reason: Some(mukaika_sanitizers::Reason::new(code, detail)),
            findings: Vec::new(),
            removed: Vec::new(),
            warnings: Vec::new(),
            output: None,
            output_sha256: None,
            output_type: None,
            children: Vec::new(),
            encrypted: None,
        }
    }

    #[test]
    fn text_report_explains_in_plain_japanese_without_codes_or_english() {
        let mut exe = blocked(
            "見積.txt",
            FileKind::Pe,
            "blocked-kind",
            "pe is blocked by policy",
        );
        exe.findings
            .push(mukaika_sanitizers::Finding::ExtensionMismatch {
                extension: "txt".into(),
                detected: FileKind::Pe,
            });
        let text = report_text(&exe, "見積.txt", None, Some("Iabc"), 1_796_406_775_843);
        assert!(text.contains("判定: 削除\r\n"), "{text}");
        assert!(
            text.contains("「.txt」ですが、中身は Windows の実行ファイル"),
            "{text}"
        );
        assert!(text.contains("隔離ID: Iabc"), "{text}");
        for jargon in ["blocked by policy", "blocked-kind", "(pe)", "種類: pe", "{"] {
            assert!(!text.contains(jargon), "{jargon:?} in {text}");
        }
        let mut mismatch = blocked("a.pdf", FileKind::Zip, "type-mismatch", "x");
        mismatch.verdict = Verdict::Quarantined;
        let text = report_text(&mismatch, "a.pdf", None, Some("I1"), 0);
        assert!(text.contains("判定: 隔離"), "{text}");
        assert!(!text.contains("type-mismatch"), "{text}");
    }

    #[test]
    fn text_report_lists_removals_by_kind_with_cells_not_part_names() {
        let mut r = blocked("a.csv", FileKind::Csv, "x", "x");
        r.verdict = Verdict::Sanitized;
        r.reason = None;
        let removal = |what, location: &str| mukaika_sanitizers::Removal {
            what,
            location: location.into(),
            detail: "=1+2".into(),
        };
        r.removed = vec![
            removal(mukaika_sanitizers::What::Formula, "row 2, column 3"),
            removal(
                mukaika_sanitizers::What::Metadata,
                "/docProps/app.xml extended-properties",
            ),
            removal(
                mukaika_sanitizers::What::Metadata,
                "/docProps/core.xml core-properties",
            ),
        ];
        let text = report_text(&r, "a.csv", Some("a.csv"), None, 0);
        assert!(text.contains("(2 行目 3 列目)"), "{text}");
        assert!(text.contains("メタデータ (作成者など) (2 か所)"), "{text}");
        assert!(!text.contains("docProps"), "{text}");
        assert!(!text.contains("=1+2"), "{text}");
    }
}
