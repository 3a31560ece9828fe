//! The registry: the one entry point that turns untrusted bytes into a verdict.
//!
//! Owns: the [`Sanitizer`] seam, the per-file [`Context`] (limits, depth, deadline, removals),
//! and [`Registry::process`], which detects, applies policy, runs the sanitizer under
//! `catch_unwind`, re-opens the output with our own parser, and builds the [`Outcome`].
//! Invariants: only this module constructs a [`CleanFile`], and only from bytes a sanitizer
//! rebuilt and a second pass found nothing left to remove in (or from an empty input, which
//! policy may pass). Every error, limit, panic or failed re-check is a quarantine.
//! Must never: put input bytes into a `CleanFile`, or let a sanitizer's error become a pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::detect::{detect, Declared, Detection, Finding};
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::{Action, Policy, PolicyError};
use crate::report::{sha256_hex, Reason, Removal, Report, Verdict, What};

/// A format rebuilder. Synchronous and pure: bytes in, bytes out, no I/O.
pub trait Sanitizer: Send + Sync {
    /// The kinds this sanitizer rebuilds.
    fn kinds(&self) -> &'static [FileKind];

    /// Rebuilds `input` (of kind `kind`) from an allowlist, recording every removal in `cx`.
    ///
    /// # Errors
    /// Any input it cannot rebuild with certainty: malformed, encrypted, unsupported, over a
    /// limit, or out of time.
    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized>;

    /// The kinds this sanitizer can also *validate* for delivery unchanged (policy `pass`):
    /// inert formats whose every byte it has checked, such as plain text.
    fn validates(&self) -> &'static [FileKind] {
        &[]
    }

    /// Checks that `input` is inert as it stands. Only called for kinds in
    /// [`Sanitizer::validates`]; the registry then delivers the input unchanged.
    ///
    /// # Errors
    /// Anything that is not provably inert.
    fn validate(&self, _input: &[u8], kind: FileKind, _cx: &mut Context<'_>) -> Result<()> {
        Err(Error::unsupported(format!("no validator for {kind}")))
    }
}

/// The rebuilt bytes of one file. Fields are private: only sanitizers in this crate build one.
#[derive(Debug)]
pub struct Sanitized {
    bytes: Vec<u8>,
    kind: FileKind,
}

impl Sanitized {
    pub(crate) fn new(bytes: Vec<u8>, kind: FileKind) -> Self {
        Self { bytes, kind }
    }
}

/// Inputs at least this large are hashed on a second thread while they are rebuilt.
const HASH_BESIDE_MIN_BYTES: usize = 1024 * 1024;

/// Per-file state shared by a sanitizer and its nested calls.
pub struct Context<'a> {
    registry: &'a Registry,
    name: Option<&'a str>,
    policy: &'a Policy,
    depth: u32,
    deadline: Instant,
    removed: Vec<Removal>,
    warnings: Vec<String>,
    children: Vec<Report>,
    recheck: bool,
}

impl<'a> Context<'a> {
    fn new(registry: &'a Registry, policy: &'a Policy, depth: u32, deadline: Instant) -> Self {
        Self {
            registry,
            name: None,
            policy,
            depth,
            deadline,
            removed: Vec::new(),
            warnings: Vec::new(),
            children: Vec::new(),
            recheck: false,
        }
    }

    /// Sends a member of this file (an archive entry, an attachment inside a TNEF) through the
    /// whole registry one level deeper, under the same policy and deadline. The caller decides
    /// what the member's outcome means for the container and records its report with
    /// [`Context::add_child`].
    pub fn process_member(&self, bytes: &[u8], name: Option<&str>) -> Outcome {
        // On the container's second pass the members are our own outputs being re-read: that
        // pass is their re-check, so they are not re-checked once more inside it.
        self.registry.process_nested(
            bytes,
            &Declared { name, mime: None },
            self.policy,
            self.depth + 1,
            self.deadline,
            !self.recheck,
        )
    }

    /// Records the report of a member processed with [`Context::process_member`].
    pub fn add_child(&mut self, report: Report) {
        self.children.push(report);
    }

    /// True during the registry's second pass over an output. That pass only has to find
    /// what would be removed; a sanitizer may skip serialising its (discarded) result.
    pub fn is_recheck(&self) -> bool {
        self.recheck
    }

    /// The file's declared name, when it had one (absent on the second pass).
    pub fn name(&self) -> Option<&str> {
        self.name
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.policy
    }

    /// Nesting depth of the current file (1 for a top-level file).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Records a removal.
    pub fn remove(&mut self, what: What, location: impl Into<String>, detail: impl Into<String>) {
        self.removed.push(Removal {
            what,
            location: location.into(),
            detail: detail.into(),
        });
    }

    /// Records a warning that changed nothing.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// A context for work on the same file done on another thread: same policy, depth,
    /// deadline and pass, nothing recorded yet. Hand it back with [`Context::join`].
    /// Takes up to `wanted` helper threads from the registry's budget (see
    /// [`crate::threads`]): the work must come out the same with any number granted.
    pub(crate) fn helper_threads(&self, wanted: usize) -> crate::threads::Permit {
        self.registry.threads.take(wanted)
    }

    pub(crate) fn fork(&self) -> Context<'a> {
        Context {
            removed: Vec::new(),
            warnings: Vec::new(),
            children: Vec::new(),
            ..*self
        }
    }

    /// Takes in what a [`Context::fork`] recorded, after what this one recorded so far.
    pub(crate) fn join(&mut self, forked: Context<'a>) {
        self.removed.extend(forked.removed);
        self.warnings.extend(forked.warnings);
        self.children.extend(forked.children);
    }

    /// Removals recorded so far.
    pub fn removed(&self) -> &[Removal] {
        &self.removed
    }

    /// Fails once the file's time budget is spent. Sanitizers call it in every loop whose
    /// length the input decides.
    ///
    /// # Errors
    /// [`Error::is_timeout`] once the deadline has passed.
    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(Error::timeout("time budget for this file exhausted"));
        }
        Ok(())
    }

    /// Time left before the deadline (zero once it has passed). Work that cannot be
    /// interrupted once started (a renderer from another crate) is sized against this up
    /// front and refused when it would not fit.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Holds a result that arrived after the deadline: whatever a sanitizer or validator produced
/// late — one that never looked at the clock — is not delivered.
fn in_time<T>(result: Result<T>, deadline: Instant) -> Result<T> {
    match result {
        Ok(_) if Instant::now() > deadline => Err(Error::timeout(
            "time budget for this file exhausted before the result was ready",
        )),
        other => other,
    }
}

/// One file's place in the work: its policy, nesting, deadline, and whether its output gets
/// the second pass (not when the file itself is being re-read in its container's second pass).
#[derive(Clone, Copy)]
struct Job<'a> {
    policy: &'a Policy,
    depth: u32,
    deadline: Instant,
    recheck_output: bool,
}

/// Bytes mukaika rebuilt itself and may hand to a forwarding sink. Only the registry makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanFile {
    name: String,
    bytes: Vec<u8>,
    kind: FileKind,
}

impl CleanFile {
    /// The output file name (possibly with a new extension, docm → docx).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The output bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The output's kind.
    pub fn kind(&self) -> FileKind {
        self.kind
    }
    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The result of processing one file: always a report, and delivered bytes only for
/// `sanitized` and `passed` verdicts.
#[derive(Debug)]
pub struct Outcome {
    /// What happened.
    pub report: Report,
    output: Option<CleanFile>,
}

impl Outcome {
    /// The bytes to deliver, if the verdict allows delivery.
    pub fn output(&self) -> Option<&CleanFile> {
        self.output.as_ref()
    }
    /// Splits into report and deliverable.
    pub fn into_parts(self) -> (Report, Option<CleanFile>) {
        (self.report, self.output)
    }
}

/// The set of sanitizers, keyed by kind, and the optional antivirus engine.
pub struct Registry {
    sanitizers: Vec<Box<dyn Sanitizer>>,
    scanner: Option<std::sync::Arc<dyn crate::scanner::Scanner>>,
    /// Helper threads all conversions of this registry share (see [`crate::threads`]).
    threads: std::sync::Arc<crate::threads::ThreadBudget>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

impl Registry {
    /// Every sanitizer mukaika ships, with no fonts for SVG text (an SVG with text is held).
    pub fn standard() -> Self {
        Self::standard_with_fonts(Box::new(crate::fontdb::Database::new))
    }

    /// Every sanitizer mukaika ships; SVG text is drawn with the fonts `fonts` returns, asked
    /// once when the first SVG with text arrives (this crate reads no files).
    pub fn standard_with_fonts(fonts: crate::svg::FontSource) -> Self {
        Self {
            sanitizers: vec![
                Box::new(crate::pdf::PdfSanitizer),
                Box::new(crate::ooxml::OoxmlSanitizer),
                Box::new(crate::text::TextSanitizer),
                Box::new(crate::html::HtmlSanitizer),
                Box::new(crate::raster::ImageSanitizer),
                Box::new(crate::archive::ArchiveSanitizer),
                Box::new(crate::tnef::TnefSanitizer),
                Box::new(crate::mp3::Mp3Sanitizer),
                Box::new(crate::ole::OleSanitizer),
                Box::new(crate::rtf::rebuild::RtfSanitizer),
                Box::new(crate::odf::OdfSanitizer),
                Box::new(crate::svg::SvgSanitizer::new(fonts)),
            ],
            scanner: None,
            threads: crate::threads::ThreadBudget::per_core(),
        }
    }

    /// A registry with exactly these sanitizers (tests use it to inject failing ones).
    pub fn with_sanitizers(sanitizers: Vec<Box<dyn Sanitizer>>) -> Self {
        Self {
            sanitizers,
            scanner: None,
            threads: crate::threads::ThreadBudget::per_core(),
        }
    }

    /// Asks `scanner` about every input and every nested member before judging it.
    pub fn with_scanner(mut self, scanner: std::sync::Arc<dyn crate::scanner::Scanner>) -> Self {
        self.scanner = Some(scanner);
        self
    }

    /// Limits the helper threads the sanitizers may start beside their callers' threads, over
    /// all conversions together (the default is one per core; 0 runs everything on the
    /// callers' threads).
    pub fn with_helper_threads(mut self, limit: usize) -> Self {
        self.threads = crate::threads::ThreadBudget::new(limit);
        self
    }

    /// The helper-thread budget.
    pub fn threads(&self) -> &std::sync::Arc<crate::threads::ThreadBudget> {
        &self.threads
    }

    fn sanitizer_for(&self, kind: FileKind) -> Option<&dyn Sanitizer> {
        self.sanitizers
            .iter()
            .find(|s| s.kinds().contains(&kind))
            .map(|s| s.as_ref())
    }

    fn validator_for(&self, kind: FileKind) -> Option<&dyn Sanitizer> {
        self.sanitizers
            .iter()
            .find(|s| s.validates().contains(&kind))
            .map(|s| s.as_ref())
    }

    /// Checks that a policy only asks for what this registry can do.
    ///
    /// # Errors
    /// `sanitize` for a kind without a sanitizer, or `pass` for a kind without a validator.
    pub fn check_policy(&self, policy: &Policy) -> std::result::Result<(), PolicyError> {
        policy.check_shape()?;
        for kind in FileKind::ALL {
            match policy.action_for(*kind) {
                Action::Sanitize if self.sanitizer_for(*kind).is_none() => {
                    return Err(PolicyError::new(format!(
                        "actions.{kind}: mukaika has no sanitizer for this kind yet; use \"quarantine\" or \"block\""
                    )))
                }
                Action::Pass if *kind != FileKind::Empty && self.validator_for(*kind).is_none() => {
                    return Err(PolicyError::new(format!(
                        "actions.{kind}: \"pass\" needs a validator for the kind; mukaika has none for it"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The report for an input too large to read: its hash was computed while streaming it.
    pub fn over_limit_report(
        name: Option<&str>,
        sha256: String,
        size: u64,
        policy: &Policy,
    ) -> Report {
        let mut report = Report::new(name, &[], FileKind::Unknown);
        report.input_sha256 = sha256;
        report.input_size = size;
        report.reason = Some(Reason::new(
            "limit-exceeded",
            format!(
                "input is {size} bytes, limit is {}",
                policy.limits.max_input_bytes
            ),
        ));
        report
    }

    /// Processes one top-level file.
    pub fn process(&self, input: &[u8], declared: &Declared<'_>, policy: &Policy) -> Outcome {
        let deadline = Instant::now() + Duration::from_millis(policy.limits.max_millis);
        self.process_at(input, declared, policy, 1, deadline)
    }

    /// Processes a nested member at `depth`, sharing the parent's deadline.
    pub fn process_at(
        &self,
        input: &[u8],
        declared: &Declared<'_>,
        policy: &Policy,
        depth: u32,
        deadline: Instant,
    ) -> Outcome {
        self.process_nested(input, declared, policy, depth, deadline, true)
    }

    /// [`Registry::process_at`], with the output re-check optional for members re-read during
    /// their container's own re-check.
    fn process_nested(
        &self,
        input: &[u8],
        declared: &Declared<'_>,
        policy: &Policy,
        depth: u32,
        deadline: Instant,
        recheck_output: bool,
    ) -> Outcome {
        let job = Job {
            policy,
            depth,
            deadline,
            recheck_output,
        };
        // Hashing a large input costs as much as rebuilding a small document, so it runs on
        // a second thread beside the rebuild. Every path below leaves the hash empty; it is
        // filled in here, once, for all of them.
        let helper = (input.len() >= HASH_BESIDE_MIN_BYTES).then(|| self.threads.take(1));
        let (hash, mut outcome) = if helper.as_ref().is_some_and(|p| p.count() == 1) {
            std::thread::scope(|scope| {
                let hasher = scope.spawn(|| sha256_hex(input));
                let outcome = self.judge(input, declared, &job);
                let hash = hasher
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (hash, outcome)
            })
        } else {
            (sha256_hex(input), self.judge(input, declared, &job))
        };
        outcome.report.input_sha256 = hash;
        if outcome
            .report
            .reason
            .as_ref()
            .is_some_and(|r| r.code == "encrypted")
        {
            // What staff can see without the password, for deciding whether to ask for it.
            outcome.report.encrypted = crate::unlock::encrypted_listing(input);
        }
        outcome
    }

    /// Decides one file; the report's `input_sha256` is left for [`Registry::process_at`].
    fn judge(&self, input: &[u8], declared: &Declared<'_>, job: &Job<'_>) -> Outcome {
        let Job {
            policy,
            depth,
            deadline,
            ..
        } = *job;
        if input.len() as u64 > policy.limits.max_input_bytes {
            let report = Report::unhashed(declared.name, input.len(), FileKind::Unknown);
            let detail = format!(
                "input is {} bytes, limit is {}",
                input.len(),
                policy.limits.max_input_bytes
            );
            return refuse(report, Verdict::Quarantined, "limit-exceeded", detail);
        }
        let Detection {
            kind,
            findings,
            encrypted,
            detail,
        } = detect(input, declared);
        // What made the content this kind, for reasons that name the kind.
        let because = detail.map(|d| format!(" ({d})")).unwrap_or_default();
        let mut report = Report::unhashed(declared.name, input.len(), kind);
        report.findings = findings;

        // The antivirus engine sees every original and every member, before anything else
        // decides; no answer is a hold (callers defer), never a pass.
        if let Some(scanner) = &self.scanner {
            match scanner.scan(input) {
                Ok(Some(signature)) => {
                    return refuse(
                        report,
                        Verdict::Blocked,
                        crate::scanner::DETECTED,
                        signature,
                    )
                }
                Ok(None) => {}
                Err(e) => {
                    let code = if e.is_transient() {
                        crate::scanner::UNAVAILABLE
                    } else {
                        crate::scanner::UNSCANNABLE
                    };
                    return refuse(report, Verdict::Quarantined, code, e.to_string());
                }
            }
        }

        if depth > policy.limits.max_depth {
            return refuse(
                report,
                Verdict::Quarantined,
                "limit-exceeded",
                format!("nesting depth {depth} over the limit"),
            );
        }
        // Order matters: a blocked kind is blocked whatever else is true of it; encryption and
        // name tricks are held before any sanitizer looks at the content.
        let action = policy.action_for(kind);
        if action == Action::Block {
            return refuse(
                report,
                Verdict::Blocked,
                "blocked-kind",
                format!("{kind} is blocked by policy{because}"),
            );
        }
        if let Some(name) = declared.name.filter(|n| policy.blocks_name(n)) {
            let detail = format!("the name {name:?} is one Windows runs, mounts or acts on");
            return refuse(report, Verdict::Blocked, "blocked-name", detail);
        }
        if encrypted || kind == FileKind::EncryptedOoxml {
            return refuse(
                report,
                Verdict::Quarantined,
                "encrypted",
                if encrypted {
                    "the container has encrypted members"
                } else {
                    "the Office document is password-protected (EncryptedPackage)"
                },
            );
        }
        if let Some(finding) = report.findings.first() {
            let code = if matches!(finding, Finding::Polyglot { .. }) {
                "polyglot"
            } else {
                "type-mismatch"
            };
            // A sentence for the admin view; the structured finding stays in `findings`.
            let detail = crate::report::finding_detail_en(finding);
            let verdict = if policy.on_mismatch == Action::Block {
                Verdict::Blocked
            } else {
                Verdict::Quarantined
            };
            return refuse(report, verdict, code, detail);
        }
        match action {
            Action::Sanitize => self.sanitize_checked(input, kind, declared, job, report),
            Action::Pass if kind == FileKind::Empty => {
                let name = output_name(declared.name, kind, kind);
                deliver(
                    report,
                    Verdict::Passed,
                    CleanFile {
                        name,
                        bytes: Vec::new(),
                        kind,
                    },
                )
            }
            Action::Pass => {
                self.validate_checked(input, kind, declared, policy, depth, deadline, report)
            }
            Action::Quarantine | Action::Block => refuse(
                report,
                Verdict::Quarantined,
                "policy-quarantine",
                format!("{kind} is not sanitized; held by policy{because}"),
            ),
        }
    }

    /// Delivers `input` unchanged when a validator proves it inert; anything else holds it.
    #[allow(clippy::too_many_arguments)]
    fn validate_checked(
        &self,
        input: &[u8],
        kind: FileKind,
        declared: &Declared<'_>,
        policy: &Policy,
        depth: u32,
        deadline: Instant,
        mut report: Report,
    ) -> Outcome {
        let Some(validator) = self.validator_for(kind) else {
            return refuse(
                report,
                Verdict::Quarantined,
                "policy-quarantine",
                format!("no validator for {kind}"),
            );
        };
        let mut cx = Context::new(self, policy, depth, deadline);
        let result = in_time(
            run_guarded(|| validator.validate(input, kind, &mut cx)),
            deadline,
        );
        report.warnings = std::mem::take(&mut cx.warnings);
        if let Some(removal) = cx.removed.first() {
            // A validator never changes anything; one that found something to remove has
            // refused the file, whatever it returned.
            return refuse(
                report,
                Verdict::Quarantined,
                "internal-error",
                format!("validator wanted to remove {:?}", removal.what),
            );
        }
        match result {
            Ok(()) => {
                let name = output_name(declared.name, kind, kind);
                deliver(
                    report,
                    Verdict::Passed,
                    CleanFile {
                        name,
                        bytes: input.to_vec(),
                        kind,
                    },
                )
            }
            Err(err) => refuse(
                report,
                Verdict::Quarantined,
                err.reason_code(),
                err.message(),
            ),
        }
    }

    fn sanitize_checked(
        &self,
        input: &[u8],
        kind: FileKind,
        declared: &Declared<'_>,
        job: &Job<'_>,
        mut report: Report,
    ) -> Outcome {
        let Job {
            policy,
            depth,
            deadline,
            recheck_output,
        } = *job;
        let Some(sanitizer) = self.sanitizer_for(kind) else {
            return refuse(
                report,
                Verdict::Quarantined,
                "unsupported",
                format!("no sanitizer for {kind}"),
            );
        };
        let mut cx = Context::new(self, policy, depth, deadline);
        cx.name = declared
            .name
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n));
        // The output's hash is needed for the report either way; a large output is hashed on
        // a second thread while the re-check re-reads it.
        let mut output_hash: Option<String> = None;
        let result = run_guarded(|| sanitizer.sanitize(input, kind, &mut cx)).and_then(|out| {
            if recheck_output {
                let helper =
                    (out.bytes.len() >= HASH_BESIDE_MIN_BYTES).then(|| self.threads.take(1));
                if helper.as_ref().is_some_and(|p| p.count() == 1) {
                    let hash = std::thread::scope(|scope| {
                        let hasher = scope.spawn(|| sha256_hex(&out.bytes));
                        let checked = verify(self, sanitizer, &out, policy, depth, deadline);
                        let hash = hasher
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        checked.map(|()| hash)
                    })?;
                    output_hash = Some(hash);
                } else {
                    verify(self, sanitizer, &out, policy, depth, deadline)?;
                }
            }
            Ok(out)
        });
        let result = in_time(result, deadline);
        report.removed = std::mem::take(&mut cx.removed);
        report.warnings = std::mem::take(&mut cx.warnings);
        report.children = std::mem::take(&mut cx.children);
        match result {
            Ok(Sanitized {
                bytes,
                kind: out_kind,
            }) => {
                let name = output_name(declared.name, kind, out_kind);
                deliver_hashed(
                    report,
                    Verdict::Sanitized,
                    CleanFile {
                        name,
                        bytes,
                        kind: out_kind,
                    },
                    output_hash,
                )
            }
            Err(err) => {
                let verdict = if err.is_blocked() {
                    Verdict::Blocked
                } else {
                    Verdict::Quarantined
                };
                refuse(report, verdict, err.reason_code(), err.message())
            }
        }
    }
}

/// An outcome that delivers `file`, recording what it is in the report.
fn deliver(report: Report, verdict: Verdict, file: CleanFile) -> Outcome {
    deliver_hashed(report, verdict, file, None)
}

/// [`deliver`] with the output's SHA-256 when it was computed already.
fn deliver_hashed(
    mut report: Report,
    verdict: Verdict,
    file: CleanFile,
    hash: Option<String>,
) -> Outcome {
    report.verdict = verdict;
    report.output = Some(file.name.clone());
    report.output_sha256 = Some(hash.unwrap_or_else(|| sha256_hex(&file.bytes)));
    report.output_type = Some(file.kind);
    Outcome {
        report,
        output: Some(file),
    }
}

/// An outcome that delivers nothing.
fn refuse(mut report: Report, verdict: Verdict, code: &str, detail: impl Into<String>) -> Outcome {
    report.verdict = verdict;
    report.reason = Some(Reason::new(code, detail));
    Outcome {
        report,
        output: None,
    }
}

/// Runs a sanitizer step, turning a panic into an internal error.
fn run_guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::internal(format!("sanitizer panicked: {msg}")))
        }
    }
}

/// Re-opens an output with our own detector and parser: it must be of the promised kind, and a
/// second pass must find nothing left to remove.
fn verify(
    registry: &Registry,
    sanitizer: &dyn Sanitizer,
    out: &Sanitized,
    policy: &Policy,
    depth: u32,
    deadline: Instant,
) -> Result<()> {
    let detected = detect(&out.bytes, &Declared::default()).kind;
    // CSV has no magic: without a name it reads as plain text.
    let csv_as_text = out.kind == FileKind::Csv && detected == FileKind::Text;
    if detected != out.kind && !csv_as_text {
        return Err(Error::internal(format!(
            "output re-check: rebuilt file detects as {detected}, expected {}",
            out.kind
        )));
    }
    let mut cx = Context::new(registry, policy, depth, deadline);
    cx.recheck = true;
    // The output is re-read by whichever sanitizer owns its kind (TNEF becomes a ZIP); a kind
    // no one else owns (HTML's text output) goes back to the sanitizer that made it.
    let checker = registry.sanitizer_for(out.kind).unwrap_or(sanitizer);
    run_guarded(|| checker.sanitize(&out.bytes, out.kind, &mut cx)).map_err(|e| {
        Error::internal(format!(
            "output re-check: rebuilt file does not re-open: {e}"
        ))
    })?;
    if let Some(left) = cx.removed.first() {
        return Err(Error::internal(format!(
            "output re-check: a second pass still removes {:?} at {} ({})",
            left.what, left.location, left.detail
        )));
    }
    Ok(())
}

/// The delivered name: the input's base name (never a path) with the output kind's extension
/// when the kind changed or the extension did not fit, shortened to what a file system holds.
pub fn output_name(input: Option<&str>, in_kind: FileKind, out_kind: FileKind) -> String {
    let name = full_output_name(input, in_kind, out_kind);
    crate::names::shorten(&name, crate::names::NAME_MAX).into_owned()
}

fn full_output_name(input: Option<&str>, in_kind: FileKind, out_kind: FileKind) -> String {
    let base = input
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|n| !n.trim().is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "attachment".to_string());
    let Some(ext) = out_kind.preferred_extension() else {
        return base;
    };
    let current = crate::detect::extension(&base);
    if in_kind == out_kind
        && current
            .as_deref()
            .is_some_and(|e| out_kind.extensions().contains(&e))
    {
        return base;
    }
    let stem = match &current {
        Some(cur)
            if FileKind::ALL
                .iter()
                .any(|k| k.extensions().contains(&cur.as_str())) =>
        {
            base[..base.len() - cur.len() - 1].to_string()
        }
        _ => base,
    };
    // `a.tar.gz` → `a.zip`, not `a.tar.zip`.
    let stem = match stem.len().checked_sub(4) {
        Some(cut)
            if out_kind == FileKind::Zip
                && in_kind.class() == crate::kind::KindClass::Archive
                && stem.is_char_boundary(cut)
                && stem[cut..].eq_ignore_ascii_case(".tar") =>
        {
            stem[..cut].to_string()
        }
        _ => stem,
    };
    format!("{stem}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_follow_the_output_kind() {
        assert_eq!(
            output_name(Some("見積書.docm"), FileKind::Docm, FileKind::Docx),
            "見積書.docx"
        );
        assert_eq!(
            output_name(Some("a.pdf"), FileKind::Pdf, FileKind::Pdf),
            "a.pdf"
        );
        assert_eq!(
            output_name(Some("../../etc/x.pdf"), FileKind::Pdf, FileKind::Pdf),
            "x.pdf"
        );
        assert_eq!(
            output_name(None, FileKind::Pdf, FileKind::Pdf),
            "attachment.pdf"
        );
        assert_eq!(
            output_name(Some("noext"), FileKind::Pdf, FileKind::Pdf),
            "noext.pdf"
        );
    }
}
