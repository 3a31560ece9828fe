//! What the gateway keeps on disk between steps: the SMTP spool (`spool`) and the quarantine
//! (`quarantine`; in a cluster, `pg_quarantine` in the shared PostgreSQL, filled from a node's
//! own by `copy`).
//!
//! Owns: durable records and their on-disk layout, and the data directory itself: its
//! permissions, its lock (one service or one-off command at a time) and the audit log in it.
//! Invariant: every record is written through `crate::durable` (temp file, fsync, rename, fsync
//! of the folder), so a crash leaves either the old or the new record, never half of one.
//! Must never: decide what is safe — that is the pipeline's and the sanitizers' job.

pub mod audit_copies;
pub mod copy;
pub mod pg_quarantine;
pub mod postgres;
pub mod quarantine;
pub mod spool;

use std::path::PathBuf;

use crate::audit::{AuditConfig, AuditLog};
use crate::config::ServiceConfig;
use crate::error::{Error, Result};

/// The file `mukaika reload` reads to find the running service: `<data dir>/mukaika.pid`.
pub fn pid_file(config: &ServiceConfig) -> PathBuf {
    config.data.dir.join("mukaika.pid")
}

/// The audit log `config` names: its folder under the data directory, node name, HMAC key and
/// syslog target.
///
/// # Errors
/// The key file cannot be read, the syslog target is malformed, or the log cannot be opened.
pub fn open_audit(config: &ServiceConfig) -> Result<AuditLog> {
    let mut audit_config =
        AuditConfig::new(config.data.dir.join("audit"), config.audit.node.clone());
    if let Some(path) = &config.audit.hmac_key_file {
        let key = std::fs::read(path).map_err(|e| {
            Error::config(format!("audit.hmac_key_file {}", path.display())).with_source(e)
        })?;
        audit_config.hmac_key = Some(key.trim_ascii().to_vec());
    }
    audit_config.syslog = config
        .audit
        .syslog
        .as_deref()
        .map(|url| {
            crate::audit::syslog::target(
                url,
                config.audit.syslog_ca_file.as_deref(),
                config.audit.syslog_server_name.as_deref(),
            )
        })
        .transpose()
        .map_err(|e| Error::config(format!("audit.syslog: {e}")))?;
    AuditLog::open(audit_config).map_err(|e| Error::transient(format!("audit log: {e}")))
}

/// Opens the pid file and takes an exclusive lock on it, or names the process holding it.
pub(crate) fn lock_pid_file(path: &std::path::Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        // Transient: the other process may stop (a one-off command ends by itself).
        return Err(Error::transient(format!(
            "{} is in use by another mukaika (pid {}): one service per data directory",
            path.display(),
            holder.trim()
        )));
    }
    Ok(file)
}

/// The permission bits no file or folder mukaika creates may have: group write and anything
/// for other users (the review database holds password hashes, the quarantine the originals
/// that only an approver may download, the audit log and spool whole messages).
pub const PRIVATE_UMASK: u32 = 0o027;

/// Adds [`PRIVATE_UMASK`] to the process umask (a stricter umask is kept), so every file
/// created from here on — SQLite's too — is 0640 at most and every folder 0750, whatever the
/// umask the service was started with. Process-wide: called once, first thing, by the binary.
pub fn restrict_umask() {
    use rustix::fs::Mode;
    let private = Mode::from_raw_mode(PRIVATE_UMASK);
    let old = rustix::process::umask(private);
    rustix::process::umask(old | private);
}

/// Creates the data directory, and takes group write and other users' access away from it
/// when it already exists (an installation made under umask 022 left it 0755).
pub(crate) fn private_data_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| Error::io(dir.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o7777;
    if mode & PRIVATE_UMASK != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !PRIVATE_UMASK))
            .map_err(|e| Error::io(format!("{}: chmod", dir.display()), e))?;
    }
    Ok(())
}

/// Takes the data directory's lock for a one-off command (`mukaika import once`), writing
/// this process's pid; fails while a service or another command holds it.
///
/// # Errors
/// The lock is held elsewhere, or the file cannot be opened.
pub fn lock_data_dir(config: &ServiceConfig) -> Result<std::fs::File> {
    private_data_dir(&config.data.dir)?;
    let file = lock_pid_file(&pid_file(config))?;
    {
        use std::io::Write;
        let mut f = &file;
        let _ = f.set_len(0);
        let _ = writeln!(f, "{}", std::process::id());
    }
    Ok(file)
}

impl From<spool::SpoolError> for Error {
    fn from(e: spool::SpoolError) -> Error {
        let base = if e.is_no_space() {
            Error::no_space("spool")
        } else {
            Error::transient("spool")
        };
        base.with_source(e)
    }
}
