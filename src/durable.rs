//! One durable write: the only way mukaika puts a file where a crash must not lose or tear it
//! (spool items, quarantine records and blobs, maildir deliveries, exports and their reports,
//! release copies, CLI outputs, the notice watermark).
//!
//! Owns: "write a temporary file, flush its data, rename it into place, flush the folder".
//! Invariants:
//! - A reader sees either no file or the whole file under its final name, before and after a
//!   crash at any instant: the data is flushed before the rename, and the folder after it.
//! - Temporary names are unique per call (process ID, a per-process counter and random
//!   bytes, created with `O_EXCL`), so two threads or processes writing the same final name
//!   never write through one temporary file; they start with `.` and end in `.tmp`, which the
//!   import folder and maildir readers ignore.
//! - With [`Mode::NoClobber`] an existing file is never replaced (`RENAME_NOREPLACE`): the
//!   caller learns `AlreadyExists` instead.
//! - A failed write removes its temporary file.
//!
//! Must never: write in place, or report success before the folder is flushed.

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

/// A temporary file in the folder of its final name; removed on drop unless committed.
pub struct Temp {
    file: File,
    path: PathBuf,
    committed: bool,
}

impl Temp {
    /// Creates a new, uniquely named temporary file in `dir` (mode 0600 before the umask).
    ///
    /// # Errors
    /// The folder is missing or not writable.
    pub fn create(dir: &Path) -> io::Result<Temp> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let path = dir.join(format!(
            ".{}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            hex::encode(random)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Temp {
            file,
            path,
            committed: false,
        })
    }

    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Flushes the data, renames the file to `dest` (in the same folder) and flushes the folder.
    ///
    /// # Errors
    /// Flush or rename failed (the temporary file is removed), or `AlreadyExists` under
    /// [`Mode::NoClobber`].
    pub fn commit(mut self, dest: &Path, mode: Mode) -> io::Result<PathBuf> {
        self.file.sync_data()?;
        match mode {
            Mode::Replace => std::fs::rename(&self.path, dest)?,
            Mode::NoClobber => rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.path,
                rustix::fs::CWD,
                dest,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(io::Error::from)?,
        }
        self.committed = true;
        sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
        Ok(dest.to_path_buf())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Flushes a folder, so that renames into it and removals from it survive a crash.
///
/// # Errors
/// The folder cannot be opened or flushed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is one of [`Temp`]'s temporary names (readers of shared folders skip them).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
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
        assert!(!is_temp_name("report.txt"));
    }
}
