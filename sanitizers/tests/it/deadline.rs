//! The per-file deadline holds inside work that cannot look at the clock: HTML → text on deeply
//! nested markup (as a file and as a mail body), SVG filters that would run for minutes, a
//! PowerPoint edit chain that merges one huge persist directory thousands of times, the scan
//! that reconstructs a PDF's damaged cross-reference data, and any result that is ready only
//! after the deadline. Each slow input must come back within
//! twice its deadline, its conversion thread finished (no core left busy), and quarantined
//! with a limit or timeout reason.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mukaika_sanitizers::mail::{self, MailVerdict};
use mukaika_sanitizers::{
    Action, Context, Declared, FileKind, Outcome, Policy, Registry, Sanitized, Sanitizer, Verdict,
};

/// The deadline the slow inputs get: small, so a test that passes is quick, and one that
/// fails on a slow input fails in seconds rather than hours.
const DEADLINE_MS: u64 = 500;

fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.limits.max_millis = DEADLINE_MS;
    policy.actions.insert("svg".into(), Action::Sanitize);
    policy.actions.insert("html".into(), Action::Sanitize);
    policy
}

/// Runs `work` on its own thread and waits at most twice the deadline for the thread to
/// finish: a result that arrives but leaves its thread running would still hold a core.
fn within_twice_the_deadline<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(work());
    });
    let limit = Duration::from_millis(2 * DEADLINE_MS);
    let result = rx.recv_timeout(limit).unwrap_or_else(|_| {
        panic!("no result within {limit:?} (twice the deadline); the conversion runs on")
    });
    while !worker.is_finished() {
        assert!(
            started.elapsed() < limit,
            "the conversion thread still runs after {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    result
}

fn process_within_deadline(input: Vec<u8>, name: &'static str) -> Outcome {
    within_twice_the_deadline(move || {
        Registry::standard().process(
            &input,
            &Declared {
                name: Some(name),
                mime: None,
            },
            &policy(),
        )
    })
}

fn assert_held_for(outcome: &Outcome, codes: &[&str]) {
    assert_eq!(
        outcome.report.verdict,
        Verdict::Quarantined,
        "{:?}",
        outcome.report.reason
    );
    assert!(outcome.output().is_none());
    let code = outcome.report.reason.as_ref().map(|r| r.code.as_str());
    assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "reason {:?}",
        outcome.report.reason
    );
}

fn nested_divs(n: usize) -> String {
    format!(
        "<!DOCTYPE html><html><body>{}深い{}</body></html>",
        "<div>".repeat(n),
        "</div>".repeat(n)
    )
}

#[test]
fn deeply_nested_html_file_is_held_within_twice_the_deadline() {
    let outcome = process_within_deadline(nested_divs(200_000).into_bytes(), "deep.html");
    assert_held_for(&outcome, &["limit-exceeded"]);
}

#[test]
fn html_file_nested_within_the_limit_is_still_converted() {
    let outcome = process_within_deadline(nested_divs(100).into_bytes(), "ok.html");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let text = String::from_utf8_lossy(outcome.output().unwrap().bytes()).into_owned();
    assert!(text.contains("深い"), "{text}");
}

#[test]
fn deeply_nested_html_mail_body_is_held_within_twice_the_deadline() {
    let raw = format!(
        "From: a@example.jp\r\nTo: b@example.jp\r\nSubject: deep\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n{}\r\n",
        nested_divs(200_000)
    );
    let outcome = within_twice_the_deadline(move || {
        mail::convert(raw.as_bytes(), "deep", &Registry::standard(), &policy())
    });
    assert_eq!(outcome.report.verdict, MailVerdict::Quarantined);
    assert!(outcome.message().is_none());
    let code = outcome.report.reason.as_ref().map(|r| r.code.clone());
    assert_eq!(code.as_deref(), Some("limit-exceeded"));
}

#[test]
fn mail_past_its_deadline_is_held_not_delivered() {
    let raw = b"From: a@example.jp\r\nTo: b@example.jp\r\nSubject: late\r\n\r\nhello\r\n";
    let deadline = Instant::now();
    thread::sleep(Duration::from_millis(5));
    let outcome = mail::convert_by(
        raw,
        "late",
        &Registry::standard(),
        &policy(),
        Some(deadline),
    );
    assert_eq!(outcome.report.verdict, MailVerdict::Quarantined);
    assert!(outcome.message().is_none());
    let code = outcome.report.reason.as_ref().map(|r| r.code.clone());
    assert_eq!(code.as_deref(), Some("timeout"));
}

#[test]
fn svg_with_huge_morphology_radius_is_held_within_twice_the_deadline() {
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600"><filter id="m"><feMorphology operator="dilate" radius="5000"/></filter><rect width="600" height="600" fill="red" filter="url(#m)"/></svg>"#;
    assert!(svg.len() < 300);
    let outcome = process_within_deadline(svg.to_vec(), "m.svg");
    assert_held_for(&outcome, &["limit-exceeded"]);
}

#[test]
fn svg_with_big_blur_on_a_large_canvas_is_held_within_twice_the_deadline() {
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="3000" height="3000"><filter id="b"><feGaussianBlur stdDeviation="800"/></filter>"#,
    );
    for i in 0..8 {
        svg.push_str(&format!(
            r##"<rect width="3000" height="3000" fill="#{i}{i}{i}" filter="url(#b)"/>"##
        ));
    }
    svg.push_str("</svg>");
    let outcome = process_within_deadline(svg.into_bytes(), "b.svg");
    assert_held_for(&outcome, &["limit-exceeded"]);
}

#[test]
fn svg_with_a_small_filter_is_still_drawn() {
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><filter id="b"><feGaussianBlur stdDeviation="3"/><feMorphology radius="2"/></filter><rect x="10" y="10" width="80" height="80" fill="red" filter="url(#b)"/></svg>"#;
    let outcome = process_within_deadline(svg.to_vec(), "small.svg");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert_eq!(outcome.output().unwrap().kind(), FileKind::Png);
}

/// Converts HTML with the real sanitizer, then stays busy past the deadline before handing
/// the (perfectly clean) result back: a sanitizer that never looked at the clock.
struct LateHtml;
impl Sanitizer for LateHtml {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Html]
    }
    fn sanitize(
        &self,
        input: &[u8],
        kind: FileKind,
        cx: &mut Context<'_>,
    ) -> Result<Sanitized, mukaika_sanitizers::Error> {
        let out = mukaika_sanitizers::html::HtmlSanitizer.sanitize(input, kind, cx)?;
        thread::sleep(Duration::from_millis(40));
        Ok(out)
    }
}

/// Validates plain text as inert, but only after the deadline has passed.
struct LateValidator;
impl Sanitizer for LateValidator {
    fn kinds(&self) -> &'static [FileKind] {
        &[]
    }
    fn sanitize(
        &self,
        _: &[u8],
        kind: FileKind,
        _: &mut Context<'_>,
    ) -> Result<Sanitized, mukaika_sanitizers::Error> {
        Err(mukaika_sanitizers::Error::unsupported(format!("{kind}")))
    }
    fn validates(&self) -> &'static [FileKind] {
        &[FileKind::Text]
    }
    fn validate(
        &self,
        _: &[u8],
        _: FileKind,
        _: &mut Context<'_>,
    ) -> Result<(), mukaika_sanitizers::Error> {
        thread::sleep(Duration::from_millis(40));
        Ok(())
    }
}

#[test]
fn output_produced_after_the_deadline_is_never_delivered() {
    let mut policy = Policy::default();
    policy.limits.max_millis = 20;
    let late = Registry::with_sanitizers(vec![Box::new(LateHtml)]);
    let outcome = late.process(
        b"<html><body><p>hello</p></body></html>",
        &Declared {
            name: Some("a.html"),
            mime: None,
        },
        &policy,
    );
    assert_held_for(&outcome, &["timeout"]);

    let late = Registry::with_sanitizers(vec![Box::new(LateValidator)]);
    let outcome = late.process(
        b"plain text\r\n",
        &Declared {
            name: Some("a.txt"),
            mime: None,
        },
        &policy,
    );
    assert_held_for(&outcome, &["timeout"]);
}

#[test]
fn html_whose_rendering_would_outlast_the_deadline_is_held_within_twice_the_deadline() {
    // Tables nested 250 deep, under the depth limit: their layout alone costs about as long
    // as the deadline, and the renderer cannot be stopped once it starts.
    let n = 250;
    let html = format!(
        "{}表{}",
        "<table><tr><td>x".repeat(n),
        "</td></tr></table>".repeat(n)
    );
    let outcome = process_within_deadline(html.into_bytes(), "tables.html");
    assert_held_for(&outcome, &["limit-exceeded"]);
}

/// A PowerPoint record header.
fn ppt_record(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut r = 0u16.to_le_bytes().to_vec();
    r.extend_from_slice(&kind.to_le_bytes());
    r.extend_from_slice(&(body.len() as u32).to_le_bytes());
    r.extend_from_slice(body);
    r
}

/// A compound file of the given streams (version 3, in the root storage).
fn compound(streams: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::{Cursor, Write};
    let mut file =
        cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        file.create_stream(path).unwrap().write_all(data).unwrap();
    }
    file.flush().unwrap();
    file.into_inner().into_inner()
}

#[test]
fn powerpoint_edits_sharing_one_huge_persist_directory_are_held_within_twice_the_deadline() {
    // One PersistDirectoryAtom of ~100,000 ids, and a chain of 2,000 fast-save edits that all
    // name it: a few hundred KB whose directory merge is 200 million map inserts (a minute of
    // work) unless the rebuild looks at the clock between edits.
    let ids = 4095 * 25;
    let mut directory = Vec::new();
    for run in 0..25u32 {
        directory.extend_from_slice(&((1 + run * 4095) | (4095 << 20)).to_le_bytes());
        directory.extend(std::iter::repeat_n(0u8, 4 * 4095));
    }
    let mut stream = ppt_record(0x1772, &directory);
    let mut previous = 0u32;
    for _ in 0..2000 {
        let at = stream.len() as u32;
        let mut edit = Vec::new();
        edit.extend_from_slice(&256u32.to_le_bytes()); // lastSlideIdRef
        edit.extend_from_slice(&0u16.to_le_bytes()); // version
        edit.extend_from_slice(&[0, 3]); // minor, major
        edit.extend_from_slice(&previous.to_le_bytes()); // offsetLastEdit
        edit.extend_from_slice(&0u32.to_le_bytes()); // offsetPersistDirectory: the shared one
        edit.extend_from_slice(&1u32.to_le_bytes()); // docPersistIdRef
        edit.extend_from_slice(&(ids as u32).to_le_bytes()); // persistIdSeed
        edit.extend_from_slice(&[1, 0, 0, 0]); // lastView, unused
        stream.extend(ppt_record(0x0FF5, &edit));
        previous = at;
    }
    let mut user = Vec::new();
    user.extend_from_slice(&0x14u32.to_le_bytes());
    user.extend_from_slice(&0xE391_C05Fu32.to_le_bytes());
    user.extend_from_slice(&previous.to_le_bytes());
    user.extend_from_slice(&0u16.to_le_bytes()); // lenUserName
    user.extend_from_slice(&0x03F4u16.to_le_bytes());
    user.extend_from_slice(&[3, 0, 0, 0]);
    user.extend_from_slice(&8u32.to_le_bytes()); // relVersion
    let user = ppt_record(0x0FF6, &user);
    let input = compound(&[("PowerPoint Document", &stream), ("Current User", &user)]);
    assert!(input.len() < 1024 * 1024);
    let outcome = process_within_deadline(input, "edits.ppt");
    assert_held_for(&outcome, &["timeout"]);
}

/// A PDF with no cross-reference data at all (so the objects must be found by a scan): a
/// catalog, one page, then `filler` repeated `times`.
fn pdf_without_xref(filler: &[u8], times: usize) -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
        2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n\
        3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n"
        .to_vec();
    pdf.reserve(filler.len() * times + 16);
    for _ in 0..times {
        pdf.extend_from_slice(filler);
    }
    pdf.extend_from_slice(b"%%EOF\n");
    pdf
}

#[test]
fn pdf_whose_damaged_cross_reference_needs_a_long_scan_is_held_within_twice_the_deadline() {
    // 60,000 small objects and no table: locating them all is seconds of work (lopdf's own
    // attempt, which cannot be interrupted, takes a fraction of that).
    let mut objects = Vec::new();
    for n in 4..60_004u32 {
        objects.extend_from_slice(format!("{n} 0 obj\n<< /K [{n} 1 2 3] >>\nendobj\n").as_bytes());
    }
    let input = pdf_without_xref(&objects, 1);
    let outcome = process_within_deadline(input, "objects.pdf");
    assert_held_for(&outcome, &["timeout"]);
}

#[test]
fn pdf_scan_through_a_long_stretch_without_objects_is_held_within_twice_the_deadline() {
    // A million trailer dictionaries and no cross-reference table: no object header for the
    // scan to count, 20 MB to read.
    let input = pdf_without_xref(b"trailer\n<< /Size 4 /Root 1 0 R >>\n", 600_000);
    let outcome = process_within_deadline(input, "trailers.pdf");
    assert_held_for(&outcome, &["timeout"]);
}
