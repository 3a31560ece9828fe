//! Shared test helpers: the fixture generator, the fail-closed compliance helper every
//! sanitizer test runs through, and deep scans of outputs.

#![allow(dead_code)]

pub use mukaika_fixtures as generate;
pub mod notes;

use std::io::{Cursor, Read};

use lopdf::{Document, Object};
use mukaika_sanitizers::mail::MailOutcome;
use mukaika_sanitizers::{Declared, FileKind, Outcome, Policy, Registry, Report, Verdict, What};

/// The reason code of a caught panic, or of an output that failed its own re-check: the
/// gateway held the file because of a bug in mukaika, not because of anything in the file.
pub const INTERNAL_ERROR: &str = "internal-error";

/// Fails when a verdict was reached by a bug (a caught panic, a rebuild whose second pass
/// still removes something) rather than by a decision about the input. Holding the file
/// keeps the gateway closed, but a test that accepts it cannot tell "never panics" from
/// "panicked and was caught". Tests of that path call the registry directly instead.
///
/// # Panics
/// When the report's reason code is `internal-error`.
pub fn assert_not_internal_error(name: &str, report: &Report) {
    if let Some(reason) = &report.reason {
        assert_ne!(
            reason.code, INTERNAL_ERROR,
            "{name}: held by a bug, not a decision: {}",
            reason.detail
        );
    }
}

/// [`assert_not_internal_error`] for a converted message: the message and every attachment.
///
/// # Panics
/// When the message or any attachment ended in `internal-error`.
pub fn assert_mail_not_internal_error(name: &str, outcome: &MailOutcome) {
    if let Some(reason) = &outcome.report.reason {
        assert_ne!(
            reason.code, INTERNAL_ERROR,
            "{name}: message held by a bug, not a decision: {}",
            reason.detail
        );
    }
    for a in &outcome.report.attachments {
        assert_not_internal_error(&format!("{name} attachment {}", a.location), &a.report);
    }
}

/// Processes bytes under a name with the default policy.
pub fn process(bytes: &[u8], name: &str) -> Outcome {
    process_with(bytes, name, &Policy::default())
}

/// Processes bytes under a name with a policy. Every PDF output is checked by qpdf on the way.
pub fn process_with(bytes: &[u8], name: &str, policy: &Policy) -> Outcome {
    let outcome = Registry::standard().process(
        bytes,
        &Declared {
            name: Some(name),
            mime: None,
        },
        policy,
    );
    assert_not_internal_error(name, &outcome.report);
    if let Some(out) = outcome.output() {
        if out.kind() == FileKind::Pdf {
            assert_qpdf_accepts(name, out.bytes());
        }
    }
    outcome
}

/// `qpdf --check` must exit 0 on a PDF we deliver: 2 is an error, and 3 ("warnings") means
/// qpdf had to repair or guess, which a viewer may do differently — both fail.
///
/// # Panics
/// When qpdf rejects the file or is not installed (`bash tests/ci.sh` installs it).
pub fn assert_qpdf_accepts(name: &str, pdf: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.pdf");
    std::fs::write(&path, pdf).expect("write output");
    let out = std::process::Command::new("qpdf")
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("qpdf is not installed ({e}): run `bash tests/ci.sh`"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: qpdf --check rejects our output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The compliance helper (after vector's sink tests): runs a good input, then hostile variants
/// of it, and checks the gateway fails closed on every variant — truncated, garbage with the
/// right magic, over the size limit, over the expansion limit. Returns the good outcome, which
/// must be sanitized with an output that differs from the input.
pub fn assert_fail_closed(name: &str, good: &[u8]) -> Outcome {
    let outcome = process(good, name);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{name}: the good input must sanitize: {:?}",
        outcome.report.reason
    );
    let out = outcome.output().expect("sanitized output");
    assert_ne!(
        out.bytes(),
        good,
        "{name}: output must be rebuilt, not the input"
    );
    assert_eq!(
        outcome.report.output_sha256.as_deref(),
        Some(sha(out.bytes()).as_str())
    );

    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        good.len() / 4,
        good.len() / 2,
        good.len() * 3 / 4,
        good.len().saturating_sub(64),
    ] {
        if cut > 8 {
            variants.push((format!("truncated at {cut}"), good[..cut].to_vec()));
        }
    }
    let mut garbage = good[..8.min(good.len())].to_vec();
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x as u8);
    }
    variants.push(("garbage after the magic".into(), garbage));
    for (what, bytes) in &variants {
        let o = process(bytes, name);
        assert!(
            o.output().is_none(),
            "{name}: {what} produced an output ({:?})",
            o.report.verdict
        );
        assert_eq!(o.report.verdict, Verdict::Quarantined, "{name}: {what}");
        assert!(o.report.reason.is_some(), "{name}: {what} has no reason");
    }

    let mut small = Policy::default();
    small.limits.max_input_bytes = good.len() as u64 - 1;
    let o = process_with(good, name, &small);
    assert!(
        o.output().is_none(),
        "{name}: over the input limit produced an output"
    );
    assert_eq!(
        o.report.reason.as_ref().map(|r| r.code.as_str()),
        Some("limit-exceeded")
    );

    if good.starts_with(b"PK") {
        let mut tight = Policy::default();
        tight.limits.max_expanded_bytes = 64;
        let o = process_with(good, name, &tight);
        assert!(
            o.output().is_none(),
            "{name}: over the expansion limit produced an output"
        );
        assert_eq!(
            o.report.reason.as_ref().map(|r| r.code.as_str()),
            Some("limit-exceeded")
        );
    }
    outcome
}

/// SHA-256 hex.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// True when a removal of `what` whose detail or location contains `needle` was reported.
pub fn removed(outcome: &Outcome, what: What, needle: &str) -> bool {
    outcome
        .report
        .removed
        .iter()
        .any(|r| r.what == what && (r.detail.contains(needle) || r.location.contains(needle)))
}

/// Every dictionary key and name value anywhere in a PDF (our parser), for "nothing left" checks.
pub fn pdf_names(bytes: &[u8]) -> Vec<String> {
    let doc = Document::load_mem(bytes).expect("output PDF parses");
    let mut out = Vec::new();
    for obj in doc.objects.values() {
        walk(obj, &mut out, 0);
    }
    for (k, v) in doc.trailer.iter() {
        out.push(String::from_utf8_lossy(k).into_owned());
        walk(v, &mut out, 0);
    }
    out
}

fn walk(obj: &Object, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match obj {
        Object::Name(n) => out.push(String::from_utf8_lossy(n).into_owned()),
        Object::Array(items) => items.iter().for_each(|o| walk(o, out, depth + 1)),
        Object::Dictionary(d) => d.iter().for_each(|(k, v)| {
            out.push(String::from_utf8_lossy(k).into_owned());
            walk(v, out, depth + 1);
        }),
        Object::Stream(s) => s.dict.iter().for_each(|(k, v)| {
            out.push(String::from_utf8_lossy(k).into_owned());
            walk(v, out, depth + 1);
        }),
        _ => {}
    }
}

/// Page count of a PDF by our parser.
pub fn pdf_pages(bytes: &[u8]) -> usize {
    Document::load_mem(bytes)
        .expect("PDF parses")
        .get_pages()
        .len()
}

/// Reads one member of a ZIP as text (None when absent).
pub fn zip_text(bytes: &[u8], name: &str) -> Option<String> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
    let mut f = z.by_name(name).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).expect("utf-8 member");
    Some(s)
}

/// Names of every member of a ZIP.
pub fn zip_names(bytes: &[u8]) -> Vec<String> {
    let z = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
    z.file_names()
        .map(|n| n.expect("utf-8 name").into_owned())
        .collect()
}

/// The workspace root (for ../shared and target/).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The shared reference corpus (`../shared/corpus`, or `MUKAIKA_CORPUS`); never copied here.
pub fn corpus_dir() -> std::path::PathBuf {
    std::env::var_os("MUKAIKA_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpus"))
}

/// Names of the ZIP members whose bytes contain `marker` (ASCII case ignored): every part of
/// an output package is searched, not just the one a test expects the marker in.
pub fn zip_members_containing(bytes: &[u8], marker: &str) -> Vec<String> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
    let needle = marker.to_ascii_lowercase();
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("zip member");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("zip member bytes");
        let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
        if text.contains(&needle) {
            out.push(f.name().expect("utf-8 name").into_owned());
        }
    }
    out
}

/// Sanitizes an output again under its own name: it must open, and the second pass must
/// remove nothing and warn of nothing.
pub fn assert_second_pass_removes_nothing(outcome: &Outcome) {
    let out = outcome.output().expect("sanitized output");
    let again = process(out.bytes(), out.name());
    assert_eq!(
        again.report.verdict,
        Verdict::Sanitized,
        "{}: the output must sanitize again: {:?}",
        out.name(),
        again.report.reason
    );
    assert!(
        again.report.removed.is_empty(),
        "{}: the second pass removed {:#?}",
        out.name(),
        again.report.removed
    );
}

/// A tool the suite runs: oletools from `target/oletools-venv/bin` (or `MUKAIKA_OLETOOLS`),
/// everything else from `PATH`. A missing tool fails the test: nothing is skipped.
///
/// # Panics
/// When the tool is not installed (`bash tests/ci.sh` installs them all).
pub fn external_tool(name: &str) -> std::path::PathBuf {
    if matches!(name, "olevba" | "mraptor" | "rtfobj" | "msodde" | "oleid") {
        let venv = std::env::var_os("MUKAIKA_OLETOOLS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/oletools-venv/bin"));
        let path = venv.join(name);
        assert!(
            path.exists(),
            "{} is missing: run `bash tests/ci.sh`",
            path.display()
        );
        return path;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: run `bash tests/ci.sh`"))
}

/// Converts each `(file name, bytes)` with LibreOffice in one headless run (a fresh profile)
/// to the format `to` (`doc`, `xls`, `ppt`, `pdf`…); the results come back in order.
///
/// # Panics
/// When soffice fails or does not write one of the outputs.
pub fn libreoffice_convert(files: &[(&str, &[u8])], to: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = std::process::Command::new(external_tool("soffice"));
    cmd.arg(format!(
        "-env:UserInstallation=file://{}",
        dir.path().join("profile").display()
    ))
    .args(["--headless", "--norestore", "--convert-to", to, "--outdir"])
    .arg(dir.path().join("out"));
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write input");
        cmd.arg(path);
    }
    let out = cmd.output().expect("run soffice");
    let ext = to.split(':').next().unwrap_or(to);
    files
        .iter()
        .map(|(name, _)| {
            let stem = std::path::Path::new(name).with_extension(ext);
            std::fs::read(dir.path().join("out").join(stem)).unwrap_or_else(|e| {
                panic!(
                    "{name}: LibreOffice wrote no {ext} ({e}):\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect()
}

/// The text LibreOffice shows for each document: converted to PDF, then read by pdftotext.
///
/// # Panics
/// When a conversion fails.
pub fn libreoffice_text(files: &[(&str, &[u8])]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    libreoffice_convert(files, "pdf")
        .into_iter()
        .enumerate()
        .map(|(i, pdf)| {
            let path = dir.path().join(format!("{i}.pdf"));
            std::fs::write(&path, pdf).expect("write pdf");
            let out = std::process::Command::new(external_tool("pdftotext"))
                .args(["-q", "-enc", "UTF-8"])
                .arg(&path)
                .arg("-")
                .output()
                .expect("run pdftotext");
            assert!(out.status.success(), "pdftotext failed on {}", files[i].0);
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// What olevba prints for `bytes` saved under `name`.
pub fn olevba_output(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write file");
    let out = std::process::Command::new(external_tool("olevba"))
        .arg(&path)
        .output()
        .expect("run olevba");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
