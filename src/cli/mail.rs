//! `mukaika mail convert IN.eml… --out DIR`: the batch front end of the mail → text engine.
//!
//! Owns: reading messages (files or `-` for stdin), converting each, and writing
//! `DIR/<id>.eml` (only when delivered), `DIR/<id>.report.json` (always) and the originals of
//! held attachments — or of a message held whole — under `DIR/quarantine/`.
//! Invariant: a `.eml` in DIR is always a `CleanMessage`; originals only ever go to
//! `DIR/quarantine/`.

use std::io::Read;
use std::path::{Path, PathBuf};

use mukaika_sanitizers::mail::{self, MailReport, MailVerdict};
use mukaika_sanitizers::{Policy, Registry};

use super::files::{write_new, CommandError};

/// What converting one input produced.
#[derive(Debug)]
pub struct Converted {
    /// The input as named on the command line.
    pub input: String,
    /// The report.
    pub report: MailReport,
    /// The converted message, when delivered.
    pub output: Option<PathBuf>,
}

/// Converts one message file (or stdin for `-`) into `out_dir`.
///
/// # Errors
/// Unreadable input (a missing file is a usage error) or an unwritable folder.
pub fn convert_file(
    input: &str,
    out_dir: &Path,
    registry: &Registry,
    policy: &Policy,
) -> Result<Converted, CommandError> {
    let raw = if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CommandError::io("cannot read standard input".into(), e))?;
        buf
    } else {
        std::fs::read(input).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CommandError::usage(format!("{input}: no such file")),
            _ => CommandError::io(format!("cannot read {input}"), e),
        })?
    };
    // The ID is derived from the content, so converting the same message twice names the
    // results the same way (and a clash gets a numbered suffix, never an overwrite).
    let id = mukaika_sanitizers::report::sha256_hex(&raw)[..16].to_string();
    let (report, message, held) = mail::convert(&raw, &id, registry, policy).into_parts();
    let quarantine = out_dir.join("quarantine");
    if report.verdict == MailVerdict::Quarantined || !held.is_empty() {
        std::fs::create_dir_all(&quarantine)
            .map_err(|e| CommandError::io(format!("cannot create {}", quarantine.display()), e))?;
    }
    if report.verdict == MailVerdict::Quarantined {
        write_new(&quarantine, &format!("{id}.eml"), &raw)?;
    }
    for h in &held {
        // write_new keeps the name inside the folder (separators and controls replaced).
        write_new(
            &quarantine,
            &format!("{}-{}", h.quarantine_id, h.name),
            &h.bytes,
        )?;
    }
    let output = match &message {
        Some(m) => Some(write_new(out_dir, &format!("{id}.eml"), m.bytes())?),
        None => None,
    };
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| CommandError::io("serialising a report".into(), std::io::Error::other(e)))?;
    write_new(out_dir, &format!("{id}.report.json"), &json)?;
    Ok(Converted {
        input: input.to_string(),
        report,
        output,
    })
}
