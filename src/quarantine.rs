//! The quarantine store: originals that could not be made safe, kept for administrators.
//!
//! Owns: the [`QuarantineStore`] seam and a file-system implementation — content-addressed
//! blobs (`blobs/<sha256>`) plus one metadata record per item (`items/<id>.json`).
//! Invariants: `put` returns only after the blob and the record are fsynced; blobs are written
//! under a temporary name and renamed, so a crash never leaves a partial blob under a hash
//! name; the same bytes quarantined twice are stored once. Only the quarantine accepts
//! untrusted bytes — nothing here is ever forwarded.
//! (The issue asks for SQLite metadata via sqlx behind this trait; the file store is the
//! embedded default until that lands.)

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spool::sync_dir;

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
}

/// Where quarantined originals go.
pub trait QuarantineStore: Send + Sync {
    /// Stores the bytes and the record durably.
    ///
    /// # Errors
    /// Nothing may be acknowledged as quarantined unless this succeeded.
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()>;
    /// Every item, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn list(&self) -> std::io::Result<Vec<QuarantineItem>>;
    /// The bytes of an item.
    ///
    /// # Errors
    /// Unknown item or unreadable blob.
    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>>;
    /// Stores a file's bytes (streamed: an import may be larger than memory should hold).
    ///
    /// # Errors
    /// As [`QuarantineStore::put`].
    fn put_file(&self, item: &QuarantineItem, path: &std::path::Path) -> std::io::Result<()> {
        let bytes = fs::read(path)?;
        self.put(item, &bytes)
    }
    /// Deletes an item (and its blob once no other item shares it). The caller audits first.
    ///
    /// # Errors
    /// Unknown item, or the store cannot be written.
    fn remove(&self, id: &str) -> std::io::Result<()>;
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

    fn write_synced(&self, name: &str, dir: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{name}.{}", std::process::id()));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.root.join(dir).join(name))?;
        sync_dir(&self.root.join(dir)).map_err(std::io::Error::other)
    }
}

impl QuarantineStore for FsQuarantine {
    fn put(&self, item: &QuarantineItem, bytes: &[u8]) -> std::io::Result<()> {
        if !self.root.join("blobs").join(&item.sha256).exists() {
            self.write_synced(&item.sha256, "blobs", bytes)?;
        }
        let json = serde_json::to_vec_pretty(item).map_err(std::io::Error::other)?;
        self.write_synced(&format!("{}.json", item.id), "items", &json)
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

    fn bytes(&self, id: &str) -> std::io::Result<Vec<u8>> {
        let item = self.item(id)?;
        fs::read(self.root.join("blobs").join(item.sha256))
    }

    fn put_file(&self, item: &QuarantineItem, path: &std::path::Path) -> std::io::Result<()> {
        if !self.root.join("blobs").join(&item.sha256).exists() {
            let tmp = self
                .root
                .join("tmp")
                .join(format!("{}.{}", item.sha256, std::process::id()));
            fs::copy(path, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, self.root.join("blobs").join(&item.sha256))?;
            sync_dir(&self.root.join("blobs")).map_err(std::io::Error::other)?;
        }
        let json = serde_json::to_vec_pretty(item).map_err(std::io::Error::other)?;
        self.write_synced(&format!("{}.json", item.id), "items", &json)
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        let item = self.item(id)?;
        fs::remove_file(self.item_path(id))?;
        sync_dir(&self.root.join("items")).map_err(std::io::Error::other)?;
        let shared = self.list()?.iter().any(|other| other.sha256 == item.sha256);
        if !shared {
            match fs::remove_file(self.root.join("blobs").join(&item.sha256)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            sync_dir(&self.root.join("blobs")).map_err(std::io::Error::other)?;
        }
        Ok(())
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
        serde_json::from_slice(&fs::read(self.item_path(id))?).map_err(std::io::Error::other)
    }
}

/// Delivers a converted message into a maildir: `tmp/` → fsync → `new/` → fsync.
///
/// # Errors
/// Any write or rename failure (the caller defers the item).
pub fn deliver_maildir(root: &std::path::Path, id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(root.join(d))?;
    }
    let name = format!(
        "{}.{}.{id}.mukaika",
        crate::audit::log::now_millis() / 1000,
        std::process::id()
    );
    let tmp = root.join("tmp").join(&name);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let dest = root.join("new").join(&name);
    fs::rename(&tmp, &dest)?;
    sync_dir(&root.join("new")).map_err(std::io::Error::other)?;
    Ok(dest)
}
