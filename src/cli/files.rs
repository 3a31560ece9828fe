//! `mukaika sanitize FILE… --out DIR`: the batch front end of the sanitizer registry.
//!
//! Owns: reading inputs (streaming the hash of over-limit ones instead of loading them),
//! running each through the registry, and writing `<output>` plus `<input>.report.json` into
//! the output folder — through `mukaika::durable` (temp name, fsync, rename that never
//! overwrites): clashing names get a numbered suffix.
//! Invariants: an output file is written only from a `CleanFile`; every readable input gets a
//! report whatever its verdict.
//! Must never: write outside `--out`, or follow an input's name into a path.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use mukaika::durable::{self, Temp};

use mukaika_sanitizers::{names, Declared, Policy, Registry, Report};

/// What went wrong for one input or for the whole run.
#[derive(Debug)]
pub struct CommandError {
    message: String,
    usage: bool,
}

impl CommandError {
    pub(crate) fn io(what: String, err: io::Error) -> Self {
        Self {
            message: format!("{what}: {err}"),
            usage: false,
        }
    }
    /// A usage error (exit 2) rather than a failure while running (exit 1).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: true,
        }
    }
    /// True when the command line or configuration was wrong.
    pub fn is_usage(&self) -> bool {
        self.usage
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// The result for one input.
#[derive(Debug)]
pub struct Processed {
    /// Its report.
    pub report: Report,
    /// Where the output was written, if any.
    pub output: Option<PathBuf>,
}

/// Loads a policy file, or the default policy, and checks it against the registry.
///
/// # Errors
/// Unreadable file or an invalid policy (a usage error).
pub fn load_policy(path: Option<&Path>, registry: &Registry) -> Result<Policy, CommandError> {
    let policy = match path {
        Some(path) => {
            let text = fs::read_to_string(path).map_err(|e| {
                CommandError::usage(format!("cannot read policy {}: {e}", path.display()))
            })?;
            Policy::from_toml(&text)
                .map_err(|e| CommandError::usage(format!("policy {}: {e}", path.display())))?
        }
        None => Policy::default(),
    };
    registry
        .check_policy(&policy)
        .map_err(|e| CommandError::usage(format!("policy: {e}")))?;
    Ok(policy)
}

/// Prepares the output folder.
///
/// # Errors
/// The folder cannot be created or written to.
pub fn prepare_out_dir(dir: &Path) -> Result<(), CommandError> {
    fs::create_dir_all(dir).map_err(|e| {
        CommandError::io(format!("cannot create output folder {}", dir.display()), e)
    })?;
    // access(2) answers from the permissions and the mount (EROFS) without creating and
    // removing a probe file, which costs as much as a small document's whole rebuild.
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| {
        CommandError::io(
            format!("output folder {} is not writable", dir.display()),
            e.into(),
        )
    })
}

/// Sanitizes one file into `out_dir`.
///
/// # Errors
/// The input cannot be read, or the results cannot be written.
pub fn process_file(
    input: &Path,
    out_dir: &Path,
    registry: &Registry,
    policy: &Policy,
) -> Result<Processed, CommandError> {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CommandError::usage(format!("{} is not a file", input.display())))?;
    let meta = fs::metadata(input).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            CommandError::usage(format!("{}: no such file", input.display()))
        }
        _ => CommandError::io(format!("cannot read {}", input.display()), e),
    })?;
    if !meta.is_file() {
        return Err(CommandError::usage(format!(
            "{} is not a regular file",
            input.display()
        )));
    }
    let (report, output) = if meta.len() > policy.limits.max_input_bytes {
        let sha = stream_sha256(input)?;
        (
            Registry::over_limit_report(Some(&name), sha, meta.len(), policy),
            None,
        )
    } else {
        let bytes = fs::read(input)
            .map_err(|e| CommandError::io(format!("cannot read {}", input.display()), e))?;
        let declared = Declared {
            name: Some(&name),
            mime: None,
        };
        registry.process(&bytes, &declared, policy).into_parts()
    };
    let output_path = match &output {
        Some(clean) => Some(write_new(out_dir, clean.name(), clean.bytes())?),
        None => None,
    };
    let mut report = report;
    if let Some(path) = &output_path {
        report.output = path.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| CommandError::io("serialising a report".into(), io::Error::other(e)))?;
    write_new(out_dir, &format!("{name}.report.json"), &json)?;
    Ok(Processed {
        report,
        output: output_path,
    })
}

fn stream_sha256(path: &Path) -> Result<String, CommandError> {
    sha256_file(path).map_err(|e| CommandError::io(format!("cannot read {}", path.display()), e))
}

/// SHA-256 of a file, streamed (for inputs too large to load).
///
/// # Errors
/// The file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `bytes` under `name` in `dir` durably, picking `name (2).ext`, `name (3).ext`… when
/// the name is taken (the first free one is taken atomically, so a file created meanwhile is
/// never replaced). Returns the path written.
pub(crate) fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, CommandError> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let safe = if safe.is_empty() || safe == "." || safe == ".." {
        "output".to_string()
    } else {
        safe
    };
    let mut temp = Temp::create_as(dir, "sanitize", durable::READABLE)
        .map_err(|e| CommandError::io(format!("cannot write in {}", dir.display()), e))?;
    temp.file()
        .write_all(bytes)
        .map_err(|e| CommandError::io(format!("cannot write in {}", dir.display()), e))?;
    let (stem, ext) = match safe.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.len() < 16 && !safe.ends_with(".report.json") => {
            (s.to_string(), format!(".{e}"))
        }
        _ if safe.ends_with(".report.json") => (
            safe.trim_end_matches(".report.json").to_string(),
            ".report.json".to_string(),
        ),
        _ => (safe.clone(), String::new()),
    };
    let candidates = (1..10_000).map(|n| {
        // Every candidate fits a file system name (a long Japanese attachment name would
        // otherwise fail the whole command): the stem gives way to the number and extension.
        let tag = if n == 1 {
            String::new()
        } else {
            format!(" ({n})")
        };
        let room = names::NAME_MAX.saturating_sub(tag.len() + ext.len());
        let name = format!("{}{tag}{ext}", names::shorten(&stem, room));
        dir.join(names::shorten(&name, names::NAME_MAX).as_ref())
    });
    // Never over an existing file: the first free candidate is taken atomically.
    temp.commit_first(candidates).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            CommandError::io(format!("too many files named {safe}"), e)
        } else {
            CommandError::io(format!("cannot write in {}", dir.display()), e)
        }
    })
}
