//! One durable write: the only way mukaika puts a file where a crash must not lose or tear it
//! (spool items, quarantine records and blobs, maildir deliveries, exports and their reports,
//! the import ledger and archive, release copies, CLI outputs, the notice watermark).
//!
//! Owns: "write a temporary file, flush it, rename it into place, flush the folder".
//! Invariants:
//! - A reader sees either no file or the whole file under its final name, before and after a
//!   crash at any instant: the data is flushed before the rename, and the folder after it.
//!   The temporary file may live in another folder of the same file system (a maildir's
//!   `tmp/`, the quarantine's `tmp/`); only the final folder needs flushing, since what a
//!   crash leaves in the temporary folder was never reported written.
//! - Temporary names are unique per call (`.<tag>.<pid>.<counter>.<random>.tmp`, created with
//!   `O_EXCL`), so two threads or processes writing the same final name never write through
//!   one temporary file. They start with `.` and end in `.tmp`, which the import folder and
//!   maildir readers ignore; the tag says whose they are (the import sweeps only its own).
//! - Temporary files are created 0600 ([`Temp::create`]) or, for files handed to readers
//!   outside mukaika (maildir, exports, CLI outputs), 0666 less the umask as `File::create`
//!   makes them ([`Temp::create_as`] with [`READABLE`]).
//! - The commit flushes with `fdatasync` (data and size: what reading the file back needs),
//!   or with `fsync` once [`Temp::set_metadata`] changed the mode or owner, which must survive
//!   a crash with the data.
//! - With [`Mode::NoClobber`] an existing file is never replaced: `RENAME_NOREPLACE`, or a
//!   hard link where the file system lacks it; the caller learns `AlreadyExists`. Only a file
//!   system with neither (some SMB shares) gets a check followed by a plain rename.
//! - A failed write removes its temporary file.
//!
//! Must never: write in place, or report success before the folder is flushed — except
//! [`Temp::rename_into`], whose caller flushes the folder itself (the spool coalesces those
//! fsyncs across concurrent writers) before it reports anything.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an existing file under the final name may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace it atomically (the same delivery written again after a crash).
    Replace,
    /// Refuse with `AlreadyExists` (a name that must stay the first writer's).
    NoClobber,
}

/// The mode of a temporary file only mukaika reads.
pub const PRIVATE: u32 = 0o600;
/// The mode of a temporary file handed to other readers: the umask decides, as for
/// `File::create` (0640 under the service's private umask).
pub const READABLE: u32 = 0o666;

/// The tag of temporary names when the caller gives none.
const DEFAULT_TAG: &str = "mukaika";

/// Writes `bytes` to `dir/name` durably and returns the final path.
///
/// # Errors
/// Any create, write, flush or rename failure (nothing is left behind then), or
/// `AlreadyExists` under [`Mode::NoClobber`].
pub fn write(dir: &Path, name: &str, bytes: &[u8], mode: Mode) -> io::Result<PathBuf> {
    write_with(dir, name, mode, |f| f.write_all(bytes))
}

/// Like [`write`], but `fill` writes the contents (streamed, hashed on the way, given an
/// owner…) into the open temporary file.
///
/// # Errors
/// As [`write`], and whatever `fill` returns.
pub fn write_with(
    dir: &Path,
    name: &str,
    mode: Mode,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let mut temp = Temp::create(dir)?;
    fill(&mut temp.file)?;
    temp.commit(&dir.join(name), mode)
}

/// A temporary file on the file system of its final name; removed on drop unless committed
/// or kept.
pub struct Temp {
    file: File,
    path: PathBuf,
    full_sync: bool,
    done: bool,
}

impl Temp {
    /// Creates a new, uniquely named temporary file in `dir`, mode [`PRIVATE`].
    ///
    /// # Errors
    /// The folder is missing or not writable.
    pub fn create(dir: &Path) -> io::Result<Temp> {
        Self::create_as(dir, DEFAULT_TAG, PRIVATE)
    }

    /// Creates a new temporary file in `dir` whose name carries `tag` (`[A-Za-z0-9-]`; other
    /// characters become `_`), with `mode` before the umask.
    ///
    /// # Errors
    /// The folder is missing or not writable.
    pub fn create_as(dir: &Path, tag: &str, mode: u32) -> io::Result<Temp> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!(
            ".{tag}.{}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            hex::encode(random)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        Ok(Temp {
            file,
            path,
            full_sync: false,
            done: false,
        })
    }

    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the file's metadata (mode, owner) through `change`; the commit then flushes
    /// with `fsync`, so the change survives a crash together with the data.
    ///
    /// # Errors
    /// Whatever `change` returns.
    pub fn set_metadata(&mut self, change: impl FnOnce(&File) -> io::Result<()>) -> io::Result<()> {
        change(&self.file)?;
        self.full_sync = true;
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        if self.full_sync {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
    }

    /// Flushes the data, renames the file to `dest` (on the same file system) and flushes
    /// `dest`'s folder.
    ///
    /// # Errors
    /// Flush or rename failed (the temporary file is removed), or `AlreadyExists` under
    /// [`Mode::NoClobber`].
    pub fn commit(self, dest: &Path, mode: Mode) -> io::Result<PathBuf> {
        match mode {
            Mode::Replace => {
                let dest = self.rename_into(dest)?;
                sync_dir(parent(&dest))?;
                Ok(dest)
            }
            Mode::NoClobber => self.commit_first([dest.to_path_buf()]),
        }
    }

    /// Flushes the data and commits the file under the first of `candidates` that does not
    /// exist yet (never replacing one), then flushes that folder; returns the name taken.
    ///
    /// # Errors
    /// Flush or rename failed, or every candidate exists (`AlreadyExists`); the temporary
    /// file is removed.
    pub fn commit_first(
        mut self,
        candidates: impl IntoIterator<Item = PathBuf>,
    ) -> io::Result<PathBuf> {
        self.flush()?;
        for dest in candidates {
            match rename_no_clobber(&self.path, &dest) {
                Ok(()) => {
                    self.done = true;
                    sync_dir(parent(&dest))?;
                    return Ok(dest);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every candidate name is taken",
        ))
    }

    /// Flushes the data and renames the file to `dest`, replacing it, WITHOUT flushing the
    /// folder: the caller must [`sync_dir`] `dest`'s folder before it reports the write (or
    /// builds anything on it).
    ///
    /// # Errors
    /// Flush or rename failed (the temporary file is removed).
    pub fn rename_into(mut self, dest: &Path) -> io::Result<PathBuf> {
        self.flush()?;
        std::fs::rename(&self.path, dest)?;
        self.done = true;
        Ok(dest.to_path_buf())
    }

    /// Flushes the data and keeps the file under its temporary name, for a caller that
    /// records the name in a journal before it renames (the import's ledger): the folder is
    /// not flushed, and the file is no longer removed on drop.
    ///
    /// # Errors
    /// The flush failed (the temporary file is removed).
    pub fn keep(mut self) -> io::Result<PathBuf> {
        self.flush()?;
        self.done = true;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then).
pub(crate) fn rename_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::io::Errno;
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => return Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    // No RENAME_NOREPLACE here: a hard link fails on an existing name just as atomically.
    match std::fs::hard_link(from, to) {
        // The old name must go too, or the file is in two places (a spool item in two spools).
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // No hard links either (some SMB and FAT shares): check, then rename. Two steps, so a
        // file created in between by someone else could be replaced; nothing better exists.
        Err(_) if !to.exists() => std::fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// Flushes a folder, so that renames into it and removals from it survive a crash.
///
/// # Errors
/// The folder cannot be opened or flushed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The tag of one of [`Temp`]'s temporary names (`.<tag>.<pid>.<counter>.<random>.tmp`), or
/// `None` for any other name.
pub fn temp_tag(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(4, '.');
    let random = parts.next()?;
    let counter = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = random.len() == 12
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && digits(counter)
        && digits(pid)
        && !tag.is_empty();
    ok.then_some(tag)
}

/// Whether `name` is one of [`Temp`]'s temporary names (readers of shared folders skip them).
pub fn is_temp_name(name: &str) -> bool {
    temp_tag(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_has_its_bytes_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.txt", b"hello", Mode::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn no_clobber_keeps_the_first_writers_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", b"first", Mode::NoClobber).unwrap();
        let err = write(dir.path(), "a.txt", b"second", Mode::NoClobber).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_fill_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_with(dir.path(), "a.txt", Mode::Replace, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("source went away"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "source went away");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_writers_of_one_name_never_share_a_temporary_file() {
        // Every writer holds its temporary file open at once before any commits: with a
        // name derived from the content (as blob temp files were), they would collide.
        let dir = tempfile::tempdir().unwrap();
        let temps: Vec<Temp> = (0..64).map(|_| Temp::create(dir.path()).unwrap()).collect();
        let mut paths: Vec<_> = temps.iter().map(|t| t.path.clone()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 64);
        std::thread::scope(|s| {
            for (i, mut t) in temps.into_iter().enumerate() {
                let dir = dir.path();
                s.spawn(move || {
                    t.file()
                        .write_all(format!("writer {i}").as_bytes())
                        .unwrap();
                    t.commit(&dir.join("same"), Mode::Replace).unwrap();
                });
            }
        });
        let text = std::fs::read_to_string(dir.path().join("same")).unwrap();
        assert!(text.starts_with("writer "), "{text}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporary_names_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let t = Temp::create(dir.path()).unwrap();
        let name = t.path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(is_temp_name(&name), "{name}");
        assert_eq!(temp_tag(&name), Some("mukaika"));
        assert!(!is_temp_name("report.txt"));
        assert!(
            !is_temp_name(".hidden.tmp"),
            "a user's own dot file is not ours"
        );
        let tagged = Temp::create_as(dir.path(), "I0123abc/..", READABLE).unwrap();
        let name = tagged
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(temp_tag(&name), Some("I0123abc___"), "{name}");
    }

    #[test]
    fn a_temporary_file_in_another_folder_commits_into_the_final_one() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, new) = (dir.path().join("tmp"), dir.path().join("new"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let mut t = Temp::create(&tmp).unwrap();
        t.file().write_all(b"mail").unwrap();
        t.commit(&new.join("m1"), Mode::Replace).unwrap();
        assert_eq!(std::fs::read(new.join("m1")).unwrap(), b"mail");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn commit_first_takes_the_first_free_name_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"theirs").unwrap();
        let mut t = Temp::create(dir.path()).unwrap();
        t.file().write_all(b"ours").unwrap();
        let taken = t
            .commit_first([dir.path().join("a.txt"), dir.path().join("a (2).txt")])
            .unwrap();
        assert_eq!(taken, dir.path().join("a (2).txt"));
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(&taken).unwrap(), b"ours");
        let t = Temp::create(dir.path()).unwrap();
        let err = t.commit_first([dir.path().join("a.txt")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn modes_are_private_unless_asked_and_set_metadata_applies() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let private = write(dir.path(), "p", b"x", Mode::Replace).unwrap();
        assert_eq!(mode(&private), 0o600);
        let mut t = Temp::create_as(dir.path(), "x", READABLE).unwrap();
        t.set_metadata(|f| f.set_permissions(std::fs::Permissions::from_mode(0o640)))
            .unwrap();
        let shared = t.commit(&dir.path().join("s"), Mode::Replace).unwrap();
        assert_eq!(mode(&shared), 0o640);
    }

    #[test]
    fn a_kept_temporary_file_stays_under_its_name_until_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Temp::create_as(dir.path(), "I1", READABLE).unwrap();
        t.file().write_all(b"export").unwrap();
        let kept = t.keep().unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), b"export");
        assert_eq!(
            temp_tag(kept.file_name().unwrap().to_str().unwrap()),
            Some("I1")
        );
    }
}
