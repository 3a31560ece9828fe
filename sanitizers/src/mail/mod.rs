//! Mail → text: the メールテキスト化 engine.
//!
//! Owns: turning any internet message into a brand-new message LGWAN staff can read — one
//! text/plain body (HTML rendered as text with defanged links, calendars summarised, forwarded
//! messages quoted), a small set of carried-over headers, marker headers, a Japanese notice
//! listing every attachment and its fate, and the attachments the registry rebuilt.
//! Invariants:
//! - Nothing of the original MIME passes through: [`CleanMessage`] (private constructor) holds
//!   bytes written by `build` from decoded text and registry outputs only, and is re-parsed
//!   before it is handed out.
//! - Ambiguous structure (duplicate MIME headers, a multipart without a boundary, CRLF mixed
//!   with bare CR/LF, depth/part/header limits) and encryption (S/MIME enveloped, PGP) hold
//!   the whole message; every attachment (inline parts and parts without a name included) goes
//!   through the registry and is attached, removed or held.
//!
//! Must never: forward an attachment's original bytes, or lose one silently — each appears in
//! the notice and the report.

pub mod build;
pub mod charset;
pub mod headers;
pub mod html;
mod links;
pub mod ppap;
mod smuggle;
mod text;
pub mod unlocked;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

use crate::detect::Declared;
use crate::kind::{FileKind, KindClass};
use crate::policy::{Action, AttachmentMode, LinkMode, Policy};
use crate::registry::Registry;
use crate::report::{sha256_hex, Reason, Report, Verdict};
use crate::unlock::Password;

use std::time::{Duration, Instant};

use build::{Mailbox, OutPart, Outgoing};

/// A converted message, written by mukaika. Only [`convert`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanMessage {
    bytes: Vec<u8>,
}

impl CleanMessage {
    /// The message bytes (CRLF line endings).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The decision for the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailVerdict {
    /// The converted message goes on.
    Delivered,
    /// The original is held whole; nothing goes on.
    Quarantined,
    /// Nothing goes on and nothing is kept (policy `on_ambiguous = "block"`).
    Blocked,
}

/// Something about the message's structure that makes it ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailFinding {
    /// `duplicate-mime-header`, `missing-boundary`, `hidden-part`, `bare-line-ending`,
    /// `nesting-limit`, `part-limit`, `header-limit`.
    pub code: String,
    /// Where and what.
    pub detail: String,
}

/// What happened to an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Rebuilt and attached.
    Attached,
    /// Not delivered: a blocked file (its original kept in quarantine, with its
    /// `quarantine_id`), or a part the policy drops unkept (text-only mode, empty placeholders).
    Removed,
    /// Original kept in quarantine; not delivered.
    Held,
}

/// One attachment's entry: the sanitizer core's report plus its fate in the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentEntry {
    /// What happened.
    pub disposition: Disposition,
    /// The quarantine ID of a held original.
    pub quarantine_id: Option<String>,
    /// Where it sat in the message (`1.2`, `1.3/forwarded 1.2`).
    pub location: String,
    /// The sanitizer report.
    #[serde(flatten)]
    pub report: Report,
}

/// The report for one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailReport {
    /// The gateway's ID for this message (X-Mukaika-Id).
    pub id: String,
    /// SHA-256 of the original message.
    pub input_sha256: String,
    /// Size of the original in bytes.
    pub input_size: u64,
    /// `delivered`, `quarantined` or `blocked`.
    pub verdict: MailVerdict,
    /// Why it was not delivered.
    pub reason: Option<Reason>,
    /// Structural findings.
    pub findings: Vec<MailFinding>,
    /// Original Message-ID.
    pub message_id: Option<String>,
    /// Decoded From addresses.
    pub from: Vec<String>,
    /// Decoded To addresses.
    pub to: Vec<String>,
    /// Decoded subject.
    pub subject: String,
    /// The message was signed (S/MIME or PGP); the signature is not carried over.
    pub signed: bool,
    /// Characters that could not be decoded and were shown as U+FFFD.
    pub replaced_characters: u64,
    /// Links whose visible text names another host than their target (marked in the body).
    #[serde(default)]
    pub misleading_links: u64,
    /// One entry per attachment, in message order.
    pub attachments: Vec<AttachmentEntry>,
    /// SHA-256 of the converted message.
    pub output_sha256: Option<String>,
}

/// An attachment whose original is held for administrators.
#[derive(Debug, Clone)]
pub struct HeldAttachment {
    /// Its quarantine ID (also in the notice and the report).
    pub quarantine_id: String,
    /// Its name as sent.
    pub name: String,
    /// The original bytes, decoded from their transfer encoding.
    pub bytes: Vec<u8>,
}

/// The result of converting one message.
#[derive(Debug)]
pub struct MailOutcome {
    /// What happened.
    pub report: MailReport,
    message: Option<CleanMessage>,
    /// Attachments held in quarantine (empty when the whole message is held: the caller keeps
    /// the original message itself).
    pub held: Vec<HeldAttachment>,
    /// PPAP password candidates found in the delivered text (policy
    /// `mail.password_candidates`). Private, never serialized, never in a report: they are
    /// [`Password`]s, which print `***`.
    candidates: Vec<Password>,
    /// What the delivered message was written from, kept only when candidates were found so
    /// a note can be added once the caller knows what they unlocked.
    rebuild: Option<Box<(build::Outgoing, crate::policy::OutputCharset)>>,
}

impl MailOutcome {
    /// The converted message, when the verdict is `delivered`.
    pub fn message(&self) -> Option<&CleanMessage> {
        self.message.as_ref()
    }

    /// The PPAP password candidates found in this message's text (empty unless the policy's
    /// `mail.password_candidates` is above 0 and the message is delivered).
    pub fn password_candidates(&self) -> &[Password] {
        &self.candidates
    }

    /// Takes the password candidates out (they are wiped when dropped).
    pub fn take_password_candidates(&mut self) -> Vec<Password> {
        std::mem::take(&mut self.candidates)
    }

    /// Adds a line to the end of the delivered text (PPAP: "this mail's password unlocked …")
    /// and writes the message again from the same decoded text and registry outputs. False
    /// (and nothing changed) when there is no message, it was not kept for rewriting (no
    /// candidates were found), or the rewritten message fails its re-check.
    pub fn add_note(&mut self, note: &str) -> bool {
        let Some(rebuild) = self.rebuild.as_mut() else {
            return false;
        };
        if self.message.is_none() {
            return false;
        }
        let (outgoing, charset) = &mut **rebuild;
        let before = outgoing.body.len();
        if !outgoing.body.ends_with('\n') {
            outgoing.body.push('\n');
        }
        outgoing.body.push_str(note);
        outgoing.body.push('\n');
        let bytes = build::write(outgoing, *charset);
        if recheck(&bytes, outgoing.attachments.len()).is_err() {
            outgoing.body.truncate(before);
            return false;
        }
        self.report.output_sha256 = Some(sha256_hex(&bytes));
        self.message = Some(CleanMessage { bytes });
        true
    }
    /// Splits into its parts.
    pub fn into_parts(self) -> (MailReport, Option<CleanMessage>, Vec<HeldAttachment>) {
        (self.report, self.message, self.held)
    }
}

/// Why conversion stopped and the whole message is held.
struct Stop {
    code: &'static str,
    detail: String,
}

impl Stop {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// Converts one message. `id` becomes X-Mukaika-Id and prefixes quarantine IDs.
///
/// Never unwinds: a panic anywhere in conversion (a bug, ours or the MIME parser's) holds
/// the message whole with reason `internal-error`, as any other failure would.
pub fn convert(raw: &[u8], id: &str, registry: &Registry, policy: &Policy) -> MailOutcome {
    convert_by(raw, id, registry, policy, None)
}

/// [`convert`] that gives up at `deadline`: the service's per-message timeout. The walk stops
/// at the next part, body or attachment once it has passed (attachments are processed by the
/// registry under it too), and a message finished after it is held with reason `timeout`, so
/// a conversion the caller has stopped waiting for ends instead of running on.
pub fn convert_by(
    raw: &[u8],
    id: &str,
    registry: &Registry,
    policy: &Policy,
    deadline: Option<Instant>,
) -> MailOutcome {
    let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        convert_unguarded(raw, id, registry, policy, deadline)
    }));
    converted.unwrap_or_else(|_| {
        let mut report = empty_report(raw, id);
        report.reason = Some(Reason::new(
            "internal-error",
            "the converter failed on this message (a bug); held whole",
        ));
        MailOutcome {
            report,
            message: None,
            held: Vec::new(),
            candidates: Vec::new(),
            rebuild: None,
        }
    })
}

/// A report for `raw` before anything is known about it: quarantined, with nothing found.
fn empty_report(raw: &[u8], id: &str) -> MailReport {
    MailReport {
        id: id.to_string(),
        input_sha256: sha256_hex(raw),
        input_size: raw.len() as u64,
        verdict: MailVerdict::Quarantined,
        reason: None,
        findings: Vec::new(),
        message_id: None,
        from: Vec::new(),
        to: Vec::new(),
        subject: String::new(),
        signed: false,
        replaced_characters: 0,
        misleading_links: 0,
        attachments: Vec::new(),
        output_sha256: None,
    }
}

fn convert_unguarded(
    raw: &[u8],
    id: &str,
    registry: &Registry,
    policy: &Policy,
    deadline: Option<Instant>,
) -> MailOutcome {
    let mut report = empty_report(raw, id);
    let hold = |mut report: MailReport, stop: Stop| {
        report.verdict = MailVerdict::Quarantined;
        report.attachments.clear();
        report.reason = Some(Reason::new(stop.code, stop.detail));
        MailOutcome {
            report,
            message: None,
            held: Vec::new(),
            candidates: Vec::new(),
            rebuild: None,
        }
    };
    if raw.len() as u64 > policy.limits.max_input_bytes {
        let detail = format!(
            "message is {} bytes, limit is {}",
            raw.len(),
            policy.limits.max_input_bytes
        );
        return hold(report, Stop::new("limit-exceeded", detail));
    }
    let (normalized, ending) = normalize_line_endings(raw);
    report.findings.extend(ending);
    let prepared = prepare_header_block(&normalized);
    let prepared = neutralize_stray_boundaries(prepared);
    let Some(message) = MessageParser::default().parse(&prepared[..]) else {
        return hold(report, Stop::new("malformed", "not a parseable message"));
    };
    report.message_id = message.message_id().map(str::to_string);
    let top = Headers::of(&message, 0);
    report.subject = top.subject(&message);
    report.from = addresses(&top.mailboxes(&message, "From"));
    report.to = addresses(&top.mailboxes(&message, "To"));
    check_structure(&message, policy, 0, "1", &mut report.findings);
    if let Some(first) = report.findings.first() {
        let stop = Stop::new(
            "ambiguous-mime",
            format!("{}: {}", first.code, first.detail),
        );
        let mut out = hold(report, stop);
        if policy.mail.on_ambiguous == Action::Block {
            out.report.verdict = MailVerdict::Blocked;
        }
        return out;
    }

    let mut walker = Walker {
        registry,
        policy,
        id,
        body: String::new(),
        out_parts: Vec::new(),
        held: Vec::new(),
        entries: Vec::new(),
        signed: false,
        replaced: 0,
        held_count: 0,
        lifted: 0,
        deadline,
    };
    if let Err(stop) = walker.message(&message, 0, "1") {
        return hold(report, stop);
    }
    if let Err(stop) = walker.in_time("message") {
        return hold(report, stop);
    }
    report.signed = walker.signed;
    report.replaced_characters = walker.replaced;
    report.attachments = std::mem::take(&mut walker.entries);

    let mut body = html::tidy(&walker.body);
    report.misleading_links = body.matches(links::MISLEADING).count() as u64;
    // PPAP: the candidates are read from the text as it will be shown (HTML rendered), before
    // links are defanged (which would change a value such as `a.b.c1`), and masked with the
    // very same finder, so what is tried is what is hidden.
    let candidates = match policy.mail.password_candidates {
        0 => Vec::new(),
        n => ppap::password_candidates(&body, n as usize),
    };
    let mut masked = 0;
    if !candidates.is_empty() && policy.mail.mask_passwords {
        (body, masked) = ppap::mask_passwords(&body);
    }
    if policy.mail.links == LinkMode::Defang {
        body = links::defang_all(&body);
    }
    body.push_str(&notice(&report, policy.mail.links));
    if masked > 0 {
        body.push_str(&format!(
            "パスワードと思われる文字列 {masked} 件を「{}」で伏せています。\n",
            ppap::MASK
        ));
    }
    let subject = match &policy.mail.subject_tag {
        Some(tag) if !tag.is_empty() => format!("{tag} {}", report.subject),
        _ => report.subject.clone(),
    };
    let outgoing = Outgoing {
        from: top.mailboxes(&message, "From"),
        to: top.mailboxes(&message, "To"),
        cc: top.mailboxes(&message, "Cc"),
        reply_to: if policy.mail.keep_reply_to {
            top.mailboxes(&message, "Reply-To")
        } else {
            Vec::new()
        },
        date: top.date(&message),
        subject,
        message_id: report.message_id.clone(),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        mukaika_id: id.to_string(),
        sanitized: marker(&report),
        extra: Vec::new(),
        body,
        attachments: std::mem::take(&mut walker.out_parts),
    };
    let bytes = build::write(&outgoing, policy.mail.output_charset);
    if let Err(detail) = recheck(&bytes, outgoing.attachments.len()) {
        return hold(report, Stop::new("internal-error", detail));
    }
    report.output_sha256 = Some(sha256_hex(&bytes));
    report.verdict = MailVerdict::Delivered;
    let rebuild =
        (!candidates.is_empty()).then(|| Box::new((outgoing, policy.mail.output_charset)));
    MailOutcome {
        report,
        message: Some(CleanMessage { bytes }),
        held: walker.held,
        candidates,
        rebuild,
    }
}

/// Rewrites the top-level header block into a form every parser reads the same way, as
/// Python's and Thunderbird's parsers do: white-space-only lines and an mbox `From ` line before
/// the first field are dropped; a line that is neither a field nor a continuation ends the
/// header block (a blank line is inserted before it, so the body is not read as headers);
/// `Date` is rewritten in RFC 5322 form by our own parser (mail-parser reads a date ending in
/// `Z` or a one-letter zone into the next line and so loses the field after it — a
/// `Content-Type: multipart/…` there turned a message with an attachment into text) or, when it
/// cannot be read, renamed so no date parser sees it. Only the parser's input changes: the
/// converted message is written from scratch either way.
fn prepare_header_block(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() + 64);
    let mut changed = false;
    let mut pos = 0;
    let mut started = false;
    let line_at = |pos: usize| -> (&[u8], usize) {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        (&raw[pos..end], end)
    };
    let is_field = |line: &[u8]| {
        let name_len = line
            .iter()
            .position(|&b| !(0x21..=0x7E).contains(&b) || b == b':')
            .unwrap_or(line.len());
        if name_len == 0 {
            return false;
        }
        let after = &line[name_len..];
        let ws = after
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        after.get(ws) == Some(&b':')
    };
    while pos < raw.len() {
        let (line, next) = line_at(pos);
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // The end of the header block.
            break;
        }
        if !started
            && (content.iter().all(|b| b.is_ascii_whitespace()) || content.starts_with(b"From "))
        {
            changed = true;
            pos = next;
            continue;
        }
        if started && (content[0] == b' ' || content[0] == b'\t') {
            out.extend_from_slice(line);
            pos = next;
            continue;
        }
        if !is_field(content) {
            if started {
                // No blank line before the body: end the header block here.
                out.extend_from_slice(if line.ends_with(b"\r\n") {
                    b"\r\n"
                } else {
                    b"\n"
                });
                changed = true;
            }
            break;
        }
        started = true;
        // The whole field, continuation lines included.
        let mut end = next;
        while end < raw.len() && matches!(raw[end], b' ' | b'\t') {
            end = line_at(end).1;
        }
        let field = &raw[pos..end];
        let eol: &[u8] = if field.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&field[..colon])
            .trim()
            .to_ascii_lowercase();
        if name == "date" || name == "resent-date" {
            let value = String::from_utf8_lossy(&field[colon + 1..]);
            changed = true;
            match headers::parse_date(&value) {
                Some(date) => {
                    out.extend_from_slice(&field[..colon + 1]);
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(date.as_bytes());
                    out.extend_from_slice(eol);
                }
                None => {
                    out.extend_from_slice(b"X-Mukaika-Unread-Date:");
                    out.extend_from_slice(&field[colon + 1..]);
                }
            }
        } else {
            out.extend_from_slice(field);
        }
        pos = end;
    }
    if !changed {
        return std::borrow::Cow::Borrowed(raw);
    }
    out.extend_from_slice(&raw[pos..]);
    std::borrow::Cow::Owned(out)
}

/// mail-parser ends a part at `--boundary` wherever it stands, also in the middle of a line;
/// RFC 2046 (and Python, Thunderbird, Outlook) take only a line that starts with it. Such
/// mid-line occurrences are broken up (`- -boundary`) so the parser reads the same parts every
/// client does and no text is cut. Boundaries are read from every `boundary=` parameter in the
/// message; what starts a line is never touched.
fn neutralize_stray_boundaries(raw: std::borrow::Cow<'_, [u8]>) -> std::borrow::Cow<'_, [u8]> {
    let boundaries = boundary_params(&raw);
    if boundaries.is_empty() {
        return raw;
    }
    let mut stray = Vec::new();
    for b in &boundaries {
        let needle = [b"--".as_slice(), b.as_slice()].concat();
        let mut from = 0;
        while let Some(at) = find(&raw[from..], &needle) {
            let i = from + at;
            from = i + 2;
            // At a line start it is a delimiter, or a longer word (`--hbx` for `hb`) that the
            // hidden-part check holds rather than guesses about.
            if i == 0 || raw[i - 1] == b'\n' {
                continue;
            }
            stray.push(i);
        }
    }
    if stray.is_empty() {
        return raw;
    }
    stray.sort_unstable();
    stray.dedup();

    let mut out = Vec::with_capacity(raw.len() + stray.len());
    let mut copied = 0;
    for i in stray {
        out.extend_from_slice(&raw[copied..=i]);
        out.push(b' ');
        copied = i + 1;
    }
    out.extend_from_slice(&raw[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Every `boundary=` parameter value in the message (quoted or not), without duplicates.
fn boundary_params(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut from = 0;
    while let Some(at) = find_ignore_case(&raw[from..], b"boundary=") {
        let start = from + at + b"boundary=".len();
        from = start;
        let value: Vec<u8> = match raw.get(start) {
            Some(b'"') => raw[start + 1..]
                .iter()
                .take_while(|&&c| c != b'"' && c != b'\r' && c != b'\n')
                .copied()
                .collect(),
            _ => raw[start..]
                .iter()
                .take_while(|&&c| !c.is_ascii_whitespace() && c != b';')
                .copied()
                .collect(),
        };
        if !value.is_empty() && value.len() <= 200 && !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Consistent LF-only (files on disk) and CR-only (classic Mac) messages are normal and are
/// normalised; CRLF mixed with bare CR or LF is the smuggling-shaped ambiguity and a finding.
fn normalize_line_endings(raw: &[u8]) -> (std::borrow::Cow<'_, [u8]>, Option<MailFinding>) {
    let (mut crlf, mut lf, mut cr) = (0usize, 0usize, 0usize);
    // A stray CR or LF as the very last byte ends nothing and hides nothing.
    let body = raw
        .strip_suffix(b"\r")
        .or_else(|| raw.strip_suffix(b"\n").filter(|r| !r.ends_with(b"\r")))
        .unwrap_or(raw);
    let raw_all = raw;
    let raw = body;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                crlf += 1;
                i += 1;
            }
            b'\r' => cr += 1,
            b'\n' => lf += 1,
            _ => {}
        }
        i += 1;
    }
    if crlf > 0 && (lf > 0 || cr > 0) {
        let detail = format!("{crlf} CRLF line endings mixed with {lf} bare LF and {cr} bare CR");
        return (
            raw_all.into(),
            Some(MailFinding {
                code: "bare-line-ending".into(),
                detail,
            }),
        );
    }
    if crlf == 0 && lf == 0 && cr > 0 {
        let converted: Vec<u8> = raw_all
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        return (converted.into(), None);
    }
    (raw_all.into(), None)
}

fn check_structure(
    msg: &Message<'_>,
    policy: &Policy,
    depth: u32,
    path: &str,
    out: &mut Vec<MailFinding>,
) {
    let limits = &policy.mail;
    let mut finding = |code: &str, detail: String| {
        out.push(MailFinding {
            code: code.into(),
            detail,
        })
    };
    if depth > limits.max_depth {
        finding(
            "nesting-limit",
            format!("{path}: nested deeper than {}", limits.max_depth),
        );
        return;
    }
    if msg.parts.len() > limits.max_parts as usize {
        finding(
            "part-limit",
            format!(
                "{path}: {} parts (limit {})",
                msg.parts.len(),
                limits.max_parts
            ),
        );
        return;
    }
    let mut nested = Vec::new();
    for (i, part) in msg.parts.iter().enumerate() {
        let here = format!("{path}.{i}");
        if part.headers.len() > limits.max_headers as usize {
            finding(
                "header-limit",
                format!("{here}: {} header fields", part.headers.len()),
            );
        }
        for name in [
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Disposition",
        ] {
            let values: Vec<&[u8]> = part
                .headers
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
                .map(|h| raw_value(msg, h))
                .collect();
            let count = values.len();
            // The same field twice, byte for byte, means one thing to every reader.
            let differ = values.windows(2).any(|w| trim_ws(w[0]) != trim_ws(w[1]));
            if count > 1 && differ {
                finding(
                    "duplicate-mime-header",
                    format!("{here}: {name} appears {count} times"),
                );
            }
        }
        if let Some(ct) = part.content_type() {
            if ct.ctype().eq_ignore_ascii_case("multipart")
                && ct.attribute("boundary").is_none_or(str::is_empty)
            {
                finding(
                    "missing-boundary",
                    format!("{here}: multipart without a boundary"),
                );
            }
        }
        if let PartType::Multipart(children) = &part.body {
            if let Some(detail) = hidden_part(msg, part, children) {
                finding("hidden-part", format!("{here}: {detail}"));
            }
        }
        if let PartType::Message(inner) = &part.body {
            nested.push((here, inner));
        }
    }
    for (here, inner) in nested {
        check_structure(inner, policy, depth + 1, &here, out);
    }
}

/// MIME part headers in a multipart's preamble or epilogue: text this parser skips but another
/// client may read as a part (boundaries that conflict or are mistyped hide parts this way).
fn hidden_part(msg: &Message<'_>, part: &MessagePart<'_>, children: &[u32]) -> Option<String> {
    let raw = &msg.raw_message;
    let first = children.first().and_then(|&c| msg.parts.get(c as usize))?;
    let last = children.last().and_then(|&c| msg.parts.get(c as usize))?;
    let preamble = raw
        .get(part.offset_body as usize..first.offset_header as usize)
        .unwrap_or_default();
    let epilogue = raw
        .get(last.offset_end as usize..part.offset_end as usize)
        .unwrap_or_default();
    for (where_, text) in [("preamble", preamble), ("epilogue", epilogue)] {
        let mut after_delimiter = false;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if after_delimiter
                && line.len() > 13
                && line[..13].eq_ignore_ascii_case(b"content-type:")
            {
                return Some(format!("a part with its own headers sits in the {where_}"));
            }
            after_delimiter = line.starts_with(b"--") && line.len() > 2 && !line.ends_with(b"--");
        }
    }
    None
}

struct Walker<'a> {
    registry: &'a Registry,
    policy: &'a Policy,
    id: &'a str,
    body: String,
    out_parts: Vec<OutPart>,
    held: Vec<HeldAttachment>,
    entries: Vec<AttachmentEntry>,
    signed: bool,
    replaced: u64,
    /// Held attachments so far, across nested messages (quarantine IDs count on from it).
    held_count: usize,
    /// How deep MIME structure found in body text is being walked (bounded by max_depth).
    lifted: u32,
    /// The caller's deadline for the whole message, if it set one.
    deadline: Option<Instant>,
}

impl Walker<'_> {
    /// Stops the walk once the message's deadline has passed.
    fn in_time(&self, here: &str) -> Result<(), Stop> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(Stop::new(
                "timeout",
                format!("{here}: time budget for this message exhausted"),
            )),
            _ => Ok(()),
        }
    }

    /// The deadline for one piece of work starting now: its own budget (`max_millis`, as for
    /// any file), never later than the message's.
    fn budget(&self) -> Instant {
        let own = Instant::now() + Duration::from_millis(self.policy.limits.max_millis);
        self.deadline.map_or(own, |d| d.min(own))
    }

    fn message(&mut self, msg: &Message<'_>, depth: u32, path: &str) -> Result<(), Stop> {
        if depth > self.policy.mail.max_depth {
            return Err(Stop::new(
                "limit-exceeded",
                format!("{path}: messages nested too deeply"),
            ));
        }
        self.part(msg, 0, depth, path, false)
    }

    fn part(
        &mut self,
        msg: &Message<'_>,
        id: u32,
        depth: u32,
        path: &str,
        as_attachment: bool,
    ) -> Result<(), Stop> {
        let Some(part) = msg.parts.get(id as usize) else {
            return Ok(());
        };
        self.in_time(&format!("{path}.{id}"))?;
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        let mime = format!("{ctype}/{subtype}");
        let here = format!("{path}.{id}");
        match &part.body {
            PartType::Multipart(children) => {
                self.multipart(msg, part, &subtype, children, depth, &here)
            }
            PartType::Message(inner) => {
                self.body.push_str(&format!(
                    "\n---------- 添付されたメッセージ ({}) ----------\n",
                    here
                ));
                let mut quoted = Walker {
                    body: String::new(),
                    out_parts: Vec::new(),
                    held: Vec::new(),
                    entries: Vec::new(),
                    signed: false,
                    replaced: 0,
                    ..*self
                };
                quoted.body.push_str(&header_summary(inner));
                quoted.message(inner, depth + 1, &here)?;
                for line in html::tidy(&quoted.body).lines() {
                    self.body.push_str("> ");
                    self.body.push_str(line);
                    self.body.push('\n');
                }
                self.body.push_str("---------- ここまで ----------\n");
                self.signed |= quoted.signed;
                self.replaced += quoted.replaced;
                self.held_count = quoted.held_count;
                self.out_parts.extend(quoted.out_parts);
                self.held.extend(quoted.held);
                self.entries.extend(quoted.entries);
                Ok(())
            }
            PartType::Text(_) | PartType::Html(_) if !as_attachment && !is_file(part) => {
                let text = part_text(msg, part, &mime);
                self.text(&mime, &text, &here)
            }
            _ => self.binary(msg, part, &mime, &here),
        }
    }

    fn multipart(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        subtype: &str,
        children: &[u32],
        depth: u32,
        here: &str,
    ) -> Result<(), Stop> {
        if depth > self.policy.mail.max_depth {
            return Err(Stop::new(
                "limit-exceeded",
                format!("{here}: multiparts nested too deeply"),
            ));
        }
        match subtype {
            "encrypted" => Err(Stop::new(
                "encrypted",
                format!("{here}: multipart/encrypted (PGP/MIME)"),
            )),
            "alternative" => match best_alternative(msg, children) {
                Some(best) => self.part(msg, best, depth + 1, here, false),
                None => Ok(()),
            },
            "signed" => {
                self.signed = true;
                let protocol = part
                    .content_type()
                    .and_then(|ct| ct.attribute("protocol"))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                for (i, &child) in children.iter().enumerate() {
                    let is_signature = i > 0
                        && msg
                            .parts
                            .get(child as usize)
                            .and_then(|p| p.content_type())
                            .is_some_and(|ct| {
                                let m = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
                                    .to_ascii_lowercase();
                                m == protocol || m.ends_with("signature")
                            });
                    if !is_signature {
                        self.part(msg, child, depth + 1, here, false)?;
                    }
                }
                Ok(())
            }
            "related" => {
                for (i, &child) in children.iter().enumerate() {
                    self.part(msg, child, depth + 1, here, i > 0)?;
                }
                Ok(())
            }
            _ => {
                for &child in children {
                    self.part(msg, child, depth + 1, here, false)?;
                }
                Ok(())
            }
        }
    }

    fn text(&mut self, mime: &str, text: &str, here: &str) -> Result<(), Stop> {
        if text.contains("-----BEGIN PGP MESSAGE-----") {
            return Err(Stop::new(
                "encrypted",
                format!("{here}: inline PGP encrypted text"),
            ));
        }
        self.replaced += text.chars().filter(|&c| c == '\u{FFFD}').count() as u64;
        let rendered = match mime {
            "text/html" => {
                let until = self.budget();
                let left = until.saturating_duration_since(Instant::now());
                let rendered = html::to_text(text, self.policy.limits.max_html_depth, left)
                    .map_err(|e| Stop::new(e.reason_code(), format!("{here}: {}", e.message())))?;
                // The renderer cannot look at the clock; a body it finished late is not used.
                if Instant::now() > until {
                    return Err(Stop::new(
                        "timeout",
                        format!("{here}: rendering the HTML body took longer than its budget"),
                    ));
                }
                rendered
            }
            "text/calendar" => text::calendar_summary(text),
            "text/enriched" | "text/richtext" => text::strip_enriched(text),
            _ => {
                if text.contains("-----BEGIN PGP SIGNED MESSAGE-----") {
                    self.signed = true;
                }
                text::drop_cid_junk(text)
            }
        };
        // Whatever the part was, its text is scanned as it will be delivered: a file hidden
        // in it (uuencode in an HTML <pre>, base64 runs, MIME structure a broken header block
        // left as text) is cut out and goes through the registry like any attachment.
        let (rest, found) = smuggle::extract(&rendered);
        if !self.body.is_empty() && !self.body.ends_with("\n\n") {
            self.body.push('\n');
        }
        self.body.push_str(&rest);
        self.body.push('\n');
        for (i, embedded) in found.into_iter().enumerate() {
            self.embedded(embedded, &format!("{here}/本文中 {i}"))?;
        }
        Ok(())
    }

    /// Puts one thing found in body text through the registry (or, for MIME structure, through
    /// this walker as a multipart of its own, so its text is shown and its files handled).
    fn embedded(&mut self, found: smuggle::Embedded, location: &str) -> Result<(), Stop> {
        match found {
            smuggle::Embedded::File { name, bytes } => {
                self.attach(&name, "application/octet-stream", &bytes, location)
            }
            smuggle::Embedded::BinHex { name, encoded } => {
                self.attach(&name, "application/mac-binhex40", &encoded, location)
            }
            smuggle::Embedded::Mime { boundary, body } => {
                self.lifted += 1;
                if self.lifted > self.policy.mail.max_depth {
                    return Err(Stop::new(
                        "limit-exceeded",
                        format!("{location}: MIME structure nested in text too deeply"),
                    ));
                }
                let boundary = boundary.replace(['"', '\\'], "");
                let synthetic =
                    format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n{body}");
                let Some(inner) = MessageParser::default().parse(synthetic.as_bytes()) else {
                    return Err(Stop::new(
                        "ambiguous-mime",
                        format!("{location}: MIME structure in body text that does not parse"),
                    ));
                };
                let mut findings = Vec::new();
                check_structure(&inner, self.policy, 0, location, &mut findings);
                if let Some(first) = findings.first() {
                    return Err(Stop::new(
                        "ambiguous-mime",
                        format!("{}: {}", first.code, first.detail),
                    ));
                }
                let result = self.part(&inner, 0, 1, location, false);
                self.lifted -= 1;
                result
            }
        }
    }

    fn binary(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        mime: &str,
        here: &str,
    ) -> Result<(), Stop> {
        let smime = part
            .content_type()
            .and_then(|ct| ct.attribute("smime-type"))
            .unwrap_or("")
            .to_ascii_lowercase();
        match mime {
            "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
            | "application/pgp-signature" => {
                self.signed = true;
                Ok(())
            }
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                if smime.contains("signed-data") || smime == "certs-only" {
                    Err(Stop::new(
                        "unsupported",
                        format!("{here}: opaque S/MIME signed data cannot be inspected"),
                    ))
                } else {
                    Err(Stop::new(
                        "encrypted",
                        format!("{here}: S/MIME enveloped (encrypted) message"),
                    ))
                }
            }
            "application/pgp-encrypted" => {
                Err(Stop::new("encrypted", format!("{here}: PGP encrypted")))
            }
            // Machine-readable reports are plain header-like text: shown in the body.
            "message/delivery-status"
            | "message/global-delivery-status"
            | "message/disposition-notification"
            | "message/feedback-report"
            | "text/rfc822-headers"
            | "message/global-headers"
                if !is_file(part) =>
            {
                let text = part_text(msg, part, "text/plain");
                self.text("text/plain", &text, here)
            }
            _ => {
                let name = file_name(msg, part).unwrap_or_default();
                self.attach(&name, mime, &part_bytes(msg, part), here)
            }
        }
    }

    /// Sends one attachment through the registry and records its fate. Stops only where a
    /// winmail.dat's body holds something that holds the whole message (see [`Self::text`]).
    fn attach(&mut self, name: &str, mime: &str, bytes: &[u8], location: &str) -> Result<(), Stop> {
        let name = if name.trim().is_empty() {
            None
        } else {
            Some(name)
        };
        let declared = Declared {
            name,
            mime: Some(mime),
        };
        let removed = |report: Report| AttachmentEntry {
            disposition: Disposition::Removed,
            quarantine_id: None,
            location: location.to_string(),
            report,
        };
        // A part removed without going through the registry, with the reason it went.
        let decided = |kind: FileKind, code: &str, detail: &str| {
            let mut report = Report::new(name, bytes, kind);
            report.verdict = Verdict::Blocked;
            report.reason = Some(Reason::new(code, detail));
            report
        };
        if self.policy.mail.attachments == AttachmentMode::RemoveAll {
            let kind = crate::detect::detect(bytes, &declared).kind;
            self.entries.push(removed(decided(
                kind,
                "text-only",
                "the site accepts message text only",
            )));
            return Ok(());
        }
        if mime == "application/mac-binhex40" {
            self.entries.push(removed(decided(
                FileKind::Unknown,
                "unsupported-encoding",
                "BinHex is not decoded; the part is removed",
            )));
            return Ok(());
        }
        // winmail.dat: unpacked in place, its body quoted and its attachments handled like
        // the message's own. A TNEF stream that does not parse goes to the registry, which
        // holds it.
        if crate::tnef::is_tnef(bytes) {
            if let Ok(tnef) = crate::tnef::parse(bytes) {
                let label = name.unwrap_or("winmail.dat");
                if tnef.attachments.is_empty()
                    && tnef.body.as_deref().is_none_or(|b| b.trim().is_empty())
                {
                    // Nothing to quote and nothing to attach (a DSN's property-only
                    // winmail.dat): the part still leaves a record and a notice line, so no
                    // part of a message ever vanishes unaccounted for.
                    self.entries.push(removed(decided(
                        FileKind::Tnef,
                        "placeholder",
                        "a winmail.dat (TNEF) with neither message text nor files",
                    )));
                    return Ok(());
                }
                if let Some(body) = tnef.body.filter(|b| !b.trim().is_empty()) {
                    self.body.push_str(&format!(
                        "\n---------- {label} (Outlook 形式) の本文 ----------\n"
                    ));
                    // Through the same path as every other text body, so a file hidden in
                    // it is lifted out like one in the message's own text.
                    self.text("text/plain", &body, &format!("{location}/{label}"))?;
                    self.body.push_str("---------- ここまで ----------\n");
                }
                for (n, (inner, data)) in tnef.attachments.iter().enumerate() {
                    let mime = "application/octet-stream";
                    self.attach(inner, mime, data, &format!("{location}/{label}/{n}"))?;
                }
                return Ok(());
            }
        }
        let outcome = match self.deadline {
            Some(_) => self
                .registry
                .process_at(bytes, &declared, self.policy, 1, self.budget()),
            None => self.registry.process(bytes, &declared, self.policy),
        };
        let (mut report, output) = outcome.into_parts();
        if let Some(clean) = output {
            self.out_parts.push(OutPart {
                name: clean.name().to_string(),
                content_type: clean.kind().mime_type(),
                bytes: clean.into_bytes(),
            });
            self.entries.push(AttachmentEntry {
                disposition: Disposition::Attached,
                quarantine_id: None,
                location: location.to_string(),
                report,
            });
            return Ok(());
        }
        // A few bytes of nothing under an image/audio/video label (parser-test placeholders,
        // broken inline logos) carry no content to hold: removed, with a notice line.
        let media = ["image/", "audio/", "video/"]
            .iter()
            .any(|p| mime.starts_with(p))
            || name.and_then(crate::detect::extension).is_some_and(|ext| {
                FileKind::ALL.iter().any(|k| {
                    matches!(k.class(), KindClass::Image | KindClass::Media)
                        && k.extensions().contains(&ext.as_str())
                })
            });
        let no_content = matches!(
            report.detected_type.class(),
            KindClass::Unknown | KindClass::Text | KindClass::Empty
        );
        if media && no_content && bytes.len() < 1024 {
            report.verdict = Verdict::Blocked;
            report.reason = Some(Reason::new(
                "placeholder",
                "a few bytes that are not a picture or media file",
            ));
            self.entries.push(removed(report));
            return Ok(());
        }
        // A blocked file (its kind, a virus) is not delivered — and its original is kept in
        // the quarantine under an ID, as the import folder keeps it: one story per file, and
        // a file blocked by mistake can still be released by two people.
        let disposition = if report.verdict == Verdict::Blocked {
            Disposition::Removed
        } else {
            Disposition::Held
        };
        let quarantine_id = self.keep(name, bytes);
        self.entries.push(AttachmentEntry {
            disposition,
            quarantine_id: Some(quarantine_id),
            location: location.to_string(),
            report,
        });
        Ok(())
    }

    /// Keeps an attachment's original for the quarantine; returns its quarantine ID.
    fn keep(&mut self, name: Option<&str>, bytes: &[u8]) -> String {
        self.held_count += 1;
        let quarantine_id = format!("{}-{}", self.id, self.held_count);
        self.held.push(HeldAttachment {
            quarantine_id: quarantine_id.clone(),
            name: name.unwrap_or("attachment").to_string(),
            bytes: bytes.to_vec(),
        });
        quarantine_id
    }
}

/// A part's body decoded from its transfer encoding by our own decoders: base64 as clients read
/// it (an unpadded last group keeps its bytes; mail-parser drops them) and quoted-printable.
/// Bodies mail-parser could not decode (`is_encoding_problem`) and 7bit/8bit/binary bodies are
/// its bytes as they are.
fn part_bytes<'a>(msg: &'a Message<'_>, part: &'a MessagePart<'_>) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let raw = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize);
    // The declared transfer encoding, even where mail-parser gave up on it (a base64 body with
    // stray characters is still base64 to every client).
    let cte = part
        .headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("Content-Transfer-Encoding"))
        .map(|h| String::from_utf8_lossy(trim_ws(raw_value(msg, h))).to_ascii_lowercase());
    let is_text = matches!(part.body, PartType::Text(_) | PartType::Html(_));
    match (cte.as_deref(), raw) {
        (Some("base64"), Some(raw)) => Cow::Owned(crate::util::base64_lenient(raw)),
        (Some("quoted-printable"), Some(raw)) => Cow::Owned(qp_decode(raw)),
        (_, Some(raw)) if is_text && !matches!(part.body, PartType::Binary(_)) => {
            Cow::Borrowed(raw)
        }
        _ => Cow::Borrowed(part.contents()),
    }
}

/// Quoted-printable, leniently: `=XX` is a byte, `=` at a line end is a soft break, anything
/// else (a lone `=`, lower-case hex) is kept or read as clients do.
fn qp_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'=' {
            if let Some(v) = crate::util::hex_pair(raw, i + 1) {
                out.push(v);
                i += 3;
                continue;
            }
            // A soft line break: `=`, optional trailing white space, then the line end.
            let ws = raw[i + 1..]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            match raw.get(i + 1 + ws..) {
                Some([b'\r', b'\n', ..]) => {
                    i += 3 + ws;
                    continue;
                }
                Some([b'\n', ..]) => {
                    i += 2 + ws;
                    continue;
                }
                Some([]) => break,
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A text part's body as text: transfer encoding undone by [`part_bytes`], then the charset
/// label read through our alias table and sniffed where the label cannot be right (see
/// [`charset`]). An HTML part without a label is read by its `<meta charset>`.
fn part_text(msg: &Message<'_>, part: &MessagePart<'_>, mime: &str) -> String {
    let bytes = part_bytes(msg, part);
    let label = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_string)
        .or_else(|| {
            (mime == "text/html")
                .then(|| html_meta_charset(&bytes))
                .flatten()
        });
    // A label no decoder here knows (UTF-7): mail-parser's own reading of the part.
    if label
        .as_deref()
        .is_some_and(|l| charset::for_label(l).is_none())
    {
        if let PartType::Text(text) | PartType::Html(text) = &part.body {
            return text.to_string();
        }
    }
    charset::decode_text(label.as_deref(), &bytes).0
}

/// The charset an HTML document declares in its first 2 KB (`<meta charset=…>` or the
/// `http-equiv` form).
fn html_meta_charset(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(2048)];
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    let at = lower.find("charset=")? + "charset=".len();
    let label: String = lower[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        .collect();
    (!label.is_empty()).then_some(label)
}

/// The part's file name, decoded from the raw headers (RFC 2231 continuations joined as bytes,
/// encoded-words inside quotes decoded); mail-parser's reading is the fallback.
fn file_name(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let raw = |header: &str| {
        part.headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(header))
            .and_then(|h| {
                msg.raw_message
                    .get(h.offset_start as usize..h.offset_end as usize)
            })
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    raw("Content-Disposition")
        .and_then(|v| headers::param(&v, "filename"))
        .or_else(|| raw("Content-Type").and_then(|v| headers::param(&v, "name")))
        .filter(|n| !n.trim().is_empty())
        .or_else(|| part.attachment_name().map(str::to_string))
}

/// A part that is a file, not body text: a name or an attachment disposition.
fn is_file(part: &MessagePart<'_>) -> bool {
    part.attachment_name().is_some()
        || part
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
}

/// The best text of a multipart/alternative: plain text with content, else HTML, else any text.
fn best_alternative(msg: &Message<'_>, children: &[u32]) -> Option<u32> {
    let kind = |id: u32| {
        msg.parts
            .get(id as usize)
            .and_then(|p| p.content_type())
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into())
    };
    let has_text = |id: u32| {
        msg.parts
            .get(id as usize)
            .is_some_and(|p| matches!(&p.body, PartType::Text(t) if !t.trim().is_empty()))
    };
    children
        .iter()
        .copied()
        .find(|&c| kind(c) == "text/plain" && has_text(c))
        .or_else(|| children.iter().copied().find(|&c| kind(c) == "text/html"))
        .or_else(|| {
            children
                .iter()
                .copied()
                .find(|&c| kind(c).starts_with("text/"))
        })
        .or_else(|| {
            children
                .iter()
                .copied()
                .find(|&c| kind(c).starts_with("multipart/"))
        })
}

fn header_summary(msg: &Message<'_>) -> String {
    let h = Headers::of(msg, 0);
    let mut out = String::new();
    let from = addresses(&h.mailboxes(msg, "From")).join(", ");
    out.push_str(&format!("From: {from}\n"));
    if let Some(date) = h.date(msg) {
        out.push_str(&format!("Date: {date}\n"));
    }
    out.push_str(&format!(
        "To: {}\n",
        addresses(&h.mailboxes(msg, "To")).join(", ")
    ));
    out.push_str(&format!("Subject: {}\n\n", h.subject(msg)));
    out
}

fn addresses(list: &[Mailbox]) -> Vec<String> {
    list.iter()
        .map(|m| match &m.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", m.address),
            _ => m.address.clone(),
        })
        .collect()
}

/// The raw bytes of a header's value (after the colon, folding included).
fn raw_value<'a>(msg: &'a Message<'_>, h: &mail_parser::Header<'_>) -> &'a [u8] {
    msg.raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default()
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// The header fields of one part, read from the raw bytes by our own decoders: mail-parser
/// finds the fields, but its decoding of display names, raw 8-bit/JIS text, folded
/// ISO-2022-JP words, unpadded base64 and obsolete dates is not what Japanese clients show.
struct Headers<'p, 'x> {
    part: Option<&'p MessagePart<'x>>,
}

impl<'p, 'x> Headers<'p, 'x> {
    fn of(msg: &'p Message<'x>, id: usize) -> Self {
        Self {
            part: msg.parts.get(id),
        }
    }

    /// The raw value of the first field called `name`.
    fn raw<'m>(&self, msg: &'m Message<'_>, name: &str) -> Option<&'m [u8]> {
        let h = self
            .part?
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))?;
        Some(raw_value(msg, h))
    }

    fn subject(&self, msg: &Message<'_>) -> String {
        self.raw(msg, "Subject")
            .and_then(headers::decode_unstructured)
            // A charset our decoders do not know (UTF-7): mail-parser's reading.
            .or_else(|| msg.subject().map(headers::without_controls))
            .unwrap_or_default()
    }

    fn mailboxes(&self, msg: &Message<'_>, name: &str) -> Vec<Mailbox> {
        self.raw(msg, name)
            .map(headers::address_list)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !m.address.is_empty() || m.name.is_some())
            .map(|m| Mailbox {
                name: m.name,
                address: m.address,
            })
            .collect()
    }

    fn date(&self, msg: &Message<'_>) -> Option<String> {
        headers::parse_date(&String::from_utf8_lossy(self.raw(msg, "Date")?))
    }
}

fn id_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// X-Mukaika-Sanitized: which actions ran.
fn marker(report: &MailReport) -> String {
    let count = |d: Disposition| {
        report
            .attachments
            .iter()
            .filter(|a| a.disposition == d)
            .count()
    };
    format!(
        "text-converted; attachments-sanitized={}; attachments-removed={}; attachments-held={}{}",
        count(Disposition::Attached),
        count(Disposition::Removed),
        count(Disposition::Held),
        if report.signed {
            "; signature-dropped"
        } else {
            ""
        }
    )
}

/// The Japanese notice block appended to every converted body.
fn notice(report: &MailReport, links: LinkMode) -> String {
    let mut out = String::from("\n\n----------------------------------------\n【無害化ゲートウェイ mukaika からのお知らせ】\n");
    out.push_str(
        "このメールはインターネットから受信したため、本文をテキスト形式に変換しました。\n",
    );
    match links {
        LinkMode::Defang => out.push_str(
            "HTML・書式は取り除かれ、リンクは「hxxps://example[.]jp」の形で無効化されています。\n",
        ),
        LinkMode::Keep => out.push_str("HTML・書式は取り除かれています。\n"),
    }
    if report.misleading_links > 0 {
        out.push_str(&format!(
            "表示されている文字と実際のリンク先が異なるリンクが {} 件あり、「{}」と表示しています。\n",
            report.misleading_links,
            links::MISLEADING
        ));
    }
    if report.signed {
        out.push_str("電子署名付きのメールでしたが、署名は引き継がれていません。\n");
    }
    if report.replaced_characters > 0 {
        out.push_str(&format!(
            "判読できない文字が {} 文字あり、「\u{FFFD}」で表示しています。\n",
            report.replaced_characters
        ));
    }
    if report.attachments.is_empty() {
        return out;
    }
    out.push_str("添付ファイル:\n");
    for a in &report.attachments {
        let r = &a.report;
        let name = r.input.clone().unwrap_or_else(|| "(名前なし)".into());
        // The verdict word (report.rs, the same in import reports, the CLI and the UI), then
        // what it means in plain Japanese; a held original carries its quarantine ID.
        let kept = a
            .quarantine_id
            .as_ref()
            .map(|id| format!("（隔離ID: {id}）"))
            .unwrap_or_default();
        let fate = match a.disposition {
            Disposition::Attached => attached_label(r),
            Disposition::Removed => format!(
                "{}{kept}: {}",
                Verdict::Blocked.label_ja(),
                reason_label(r, BLOCKED)
            ),
            Disposition::Held => format!(
                "{}{kept}: {}",
                Verdict::Quarantined.label_ja(),
                reason_label(r, HELD)
            ),
        };
        out.push_str(&format!(
            "・{name}（{} バイト, SHA-256 {}…）— {fate}\n",
            thousands(r.input_size),
            &r.input_sha256[..16]
        ));
    }
    out
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A delivered attachment: `無害化済み: 見積.docx として添付しました（取り除いたもの: …）`.
fn attached_label(r: &Report) -> String {
    let output = r.output.clone().unwrap_or_default();
    if r.verdict == Verdict::Passed {
        return format!("{}: そのまま添付しました", Verdict::Passed.label_ja());
    }
    let mut s = format!("{}: {output} として添付しました", r.verdict.label_ja());
    let mut whats: Vec<&str> = Vec::new();
    for w in r.removed.iter().map(|x| x.what.description_ja()) {
        if !whats.contains(&w) {
            whats.push(w);
        }
    }
    if !whats.is_empty() {
        s.push_str(&format!("（取り除いたもの: {}）", whats.join("・")));
    }
    s
}

/// What a blocked attachment is, when its report says nothing more.
const BLOCKED: &str = "受け付けられない種類のファイルです。";
/// What a held attachment is, when its report says nothing more.
const HELD: &str = "安全に作り直せないファイルです。";

/// Why an attachment was removed or held, in plain Japanese ([`Report::explain_ja`]: the one
/// place reasons become staff sentences), or `fallback`.
fn reason_label(r: &Report, fallback: &str) -> String {
    r.explain_ja().unwrap_or_else(|| fallback.into())
}

/// Parses the converted message back: one text/plain body, attachments only as announced, no
/// HTML anywhere.
fn recheck(bytes: &[u8], attachments: usize) -> Result<(), String> {
    let parsed = MessageParser::default()
        .parse(bytes)
        .ok_or("converted message does not parse")?;
    if parsed.html_body_count() > 0
        && parsed
            .parts
            .iter()
            .any(|p| matches!(p.body, PartType::Html(_)))
    {
        return Err("converted message contains HTML".into());
    }
    let texts = parsed
        .parts
        .iter()
        .filter(|p| matches!(p.body, PartType::Text(_)) && !is_file(p))
        .count();
    if texts != 1 {
        return Err(format!("converted message has {texts} text bodies"));
    }
    if parsed.attachment_count() != attachments {
        return Err(format!(
            "converted message has {} attachments, expected {attachments}",
            parsed.attachment_count()
        ));
    }
    Ok(())
}
