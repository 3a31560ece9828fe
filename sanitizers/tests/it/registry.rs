//! Registry behaviour: detection-driven policy, and failing closed on every sanitizer failure.

use crate::common;

use std::time::Duration;

use common::generate::*;
use common::*;
use mukaika_sanitizers::{
    Context, Declared, FileKind, Policy, Registry, Sanitized, Sanitizer, Verdict, What,
};

struct Panics;
impl Sanitizer for Panics {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Pdf]
    }
    fn sanitize(
        &self,
        _: &[u8],
        _: FileKind,
        _: &mut Context<'_>,
    ) -> Result<Sanitized, mukaika_sanitizers::Error> {
        panic!("boom in a sanitizer");
    }
}

/// Wraps the real PDF sanitizer but claims to remove something on every pass, so the
/// registry's second pass never comes back clean.
struct NeverClean;
impl Sanitizer for NeverClean {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Pdf]
    }
    fn sanitize(
        &self,
        input: &[u8],
        kind: FileKind,
        cx: &mut Context<'_>,
    ) -> Result<Sanitized, mukaika_sanitizers::Error> {
        cx.remove(What::Javascript, "somewhere", "always something left");
        mukaika_sanitizers::pdf::PdfSanitizer.sanitize(input, kind, cx)
    }
}

struct Slow;
impl Sanitizer for Slow {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Pdf]
    }
    fn sanitize(
        &self,
        input: &[u8],
        kind: FileKind,
        cx: &mut Context<'_>,
    ) -> Result<Sanitized, mukaika_sanitizers::Error> {
        std::thread::sleep(Duration::from_millis(60));
        cx.check_deadline()?;
        mukaika_sanitizers::pdf::PdfSanitizer.sanitize(input, kind, cx)
    }
}

fn run(registry: Registry, policy: &Policy) -> mukaika_sanitizers::Outcome {
    registry.process(
        &pdf_js_openaction(),
        &Declared {
            name: Some("a.pdf"),
            mime: None,
        },
        policy,
    )
}

#[test]
fn quarantines_on_sanitizer_panic() {
    let outcome = run(
        Registry::with_sanitizers(vec![Box::new(Panics)]),
        &Policy::default(),
    );
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, INTERNAL_ERROR);
    assert!(reason.detail.contains("boom in a sanitizer"));
}

#[test]
fn the_suite_helpers_fail_on_a_verdict_reached_by_a_panic() {
    // Fail-closed hides a bug as a quarantine; the helpers every other test goes through
    // must refuse that verdict, or "never panics" is untested.
    let outcome = run(
        Registry::with_sanitizers(vec![Box::new(Panics)]),
        &Policy::default(),
    );
    let caught = std::panic::catch_unwind(|| assert_not_internal_error("a.pdf", &outcome.report));
    assert!(caught.is_err(), "a caught panic passed the helper");
    let clean = process(b"an ordinary memo\n", "memo.txt");
    assert_not_internal_error("memo.txt", &clean.report);
}

#[test]
fn quarantines_when_a_second_pass_still_finds_something() {
    let outcome = run(
        Registry::with_sanitizers(vec![Box::new(NeverClean)]),
        &Policy::default(),
    );
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    // This test injects the bug on purpose, so it is the one place internal-error is the
    // expected verdict (everywhere else `common::process` fails on it).
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, INTERNAL_ERROR);
    assert!(reason.detail.contains("second pass"));
}

#[test]
fn quarantines_on_timeout() {
    let mut policy = Policy::default();
    policy.limits.max_millis = 10;
    let outcome = run(Registry::with_sanitizers(vec![Box::new(Slow)]), &policy);
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "timeout");
}

#[test]
fn quarantines_a_kind_without_a_sanitizer_even_if_policy_asks() {
    let outcome = run(Registry::with_sanitizers(vec![]), &Policy::default());
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");
}

#[test]
fn blocks_executables_by_content_whatever_the_name() {
    for (bytes, name) in [
        (&b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"[..], "readme.txt"),
        (b"\x7fELF\x02\x01\x01", "photo.jpg"),
        (b"WScript.Echo 1\r\n", "run.vbs"),
        (b"@echo off\r\n", "setup.bat"),
        (b"L\x00\x00\x00\x01\x14\x02\x00\x00\x00", "書類.lnk"),
        (b"<html><hta:application id=x/></html>", "page.hta"),
    ] {
        let outcome = process(bytes, name);
        assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
        assert!(outcome.output().is_none());
        assert_eq!(outcome.report.reason.as_ref().unwrap().code, "blocked-kind");
    }
}

#[test]
fn quarantines_name_tricks_and_type_mismatches() {
    let pdf = pdf_js_openaction();
    for name in ["請求書.docx", "invoice\u{202E}fdp.pdf", "report.pdf.zip"] {
        let outcome = process(&pdf, name);
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert!(outcome.output().is_none());
        assert!(!outcome.report.findings.is_empty(), "{name}");
    }
    let docx = docx_benign().build();
    let outcome = Registry::standard().process(
        &docx,
        &Declared {
            name: Some("a.docx"),
            mime: Some("application/pdf"),
        },
        &Policy::default(),
    );
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "type-mismatch");
}

#[test]
fn quarantines_kinds_not_yet_sanitized() {
    for (bytes, name) in [
        (&b"Rar!\x1a\x07\x00\xcf\x90\x73\x00\x00\x0d"[..], "a.rar"),
        (b"\x20\x00-lh5-\x00\x00\x00\x00\x00\x00", "a.lzh"),
    ] {
        let outcome = process(bytes, name);
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert_eq!(outcome.report.reason.unwrap().code, "policy-quarantine");
    }
}

#[test]
fn passes_an_empty_file() {
    let outcome = process(b"", "empty.txt");
    assert_eq!(outcome.report.verdict, Verdict::Passed);
    assert_eq!(outcome.output().unwrap().bytes(), b"");
}

#[test]
fn refuses_a_policy_it_cannot_honour() {
    let registry = Registry::standard();
    let policy = Policy::from_toml("[actions]\nrar = \"sanitize\"\n").unwrap();
    assert!(registry
        .check_policy(&policy)
        .unwrap_err()
        .to_string()
        .contains("no sanitizer"));
    let policy = Policy::from_toml("[actions]\nrar = \"pass\"\n").unwrap();
    assert!(registry.check_policy(&policy).is_err());
    assert!(registry.check_policy(&Policy::default()).is_ok());
}

#[test]
fn reports_serialise_to_the_stable_schema() {
    let outcome = process(&docm_with_macro().build(), "a.docm");
    let json = serde_json::to_value(&outcome.report).unwrap();
    for key in [
        "input",
        "input_sha256",
        "detected_type",
        "verdict",
        "reason",
        "removed",
        "output",
        "output_sha256",
        "children",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["verdict"], "sanitized");
    assert_eq!(json["detected_type"], "docm");
    assert_eq!(json["output"], "a.docx");
    let whats: Vec<&str> = json["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert!(
        whats.contains(&"macro") && whats.contains(&"metadata"),
        "{whats:?}"
    );
    let back: mukaika_sanitizers::Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, outcome.report);
}

mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    fn prefixed() -> impl Strategy<Value = Vec<u8>> {
        let magic = prop_oneof![
            Just(b"%PDF-1.7\n".to_vec()),
            Just(b"PK\x03\x04".to_vec()),
            Just(vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]),
            Just(Vec::new()),
        ];
        (magic, proptest::collection::vec(any::<u8>(), 0..2048))
            .prop_map(|(m, rest)| [m, rest].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes never panic detection or the registry, and whatever is delivered
        /// went through a rebuild (or is empty).
        #[test]
        fn never_panics_and_never_passes_arbitrary_bytes_through(bytes in prefixed()) {
            let outcome = process(&bytes, "input.bin");
            if let Some(out) = outcome.output() {
                prop_assert!(matches!(outcome.report.verdict, Verdict::Sanitized | Verdict::Passed));
                prop_assert!(out.bytes() != bytes.as_slice() || bytes.is_empty());
            } else {
                prop_assert!(outcome.report.reason.is_some());
            }
        }

        /// Mutating one byte of a real package or PDF never panics and never delivers the
        /// mutated bytes themselves.
        #[test]
        fn single_byte_corruption_fails_closed(pos in 0usize..4096, value in any::<u8>(), pdf in any::<bool>()) {
            let mut bytes = if pdf { pdf_kitchen_sink() } else { docm_with_macro().build() };
            let at = pos % bytes.len();
            bytes[at] = value;
            let outcome = process(&bytes, if pdf { "a.pdf" } else { "a.docm" });
            if let Some(out) = outcome.output() {
                prop_assert_eq!(outcome.report.verdict, Verdict::Sanitized);
                prop_assert!(out.bytes() != bytes.as_slice());
            }
        }
    }
}

#[test]
fn reports_the_sha256_of_input_and_output_whatever_the_path() {
    // Small, large (hashed on a second thread beside the rebuild) and refused inputs.
    let small = docm_with_macro().build();
    // xorshift: incompressible, so the package stays over the threshold once deflated.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let large = docx_benign()
        .part(
            "word/media/big.png",
            "image/png",
            [&tiny_png()[..], &noise].concat(),
        )
        .build();
    assert!(large.len() > 2 * 1024 * 1024);
    let garbage = noise[..2_500_000].to_vec();
    for (name, input) in [("a.docm", &small), ("b.docx", &large), ("c.bin", &garbage)] {
        let outcome = process(input, name);
        assert_eq!(outcome.report.input_sha256, sha(input), "{name}");
        assert_eq!(outcome.report.input_size, input.len() as u64, "{name}");
        match outcome.output() {
            Some(out) => assert_eq!(
                outcome.report.output_sha256.as_deref(),
                Some(sha(out.bytes()).as_str()),
                "{name}"
            ),
            None => assert_eq!(name, "c.bin", "only the garbage is refused"),
        }
    }
}

#[test]
fn the_same_output_whatever_the_helper_thread_budget() {
    // Large parts (rewritten in lanes when helpers are free) and a large input (hashed beside
    // the rebuild): with no helpers at all, and with the budget exhausted by another holder,
    // the output and report are what the default budget gives.
    let big_text = para(&"令和八年度 予算説明資料（架空）".repeat(20_000));
    let input = docx_benign()
        .part(
            "word/document.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            word_document(&big_text),
        )
        .part(
            "word/styles.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml",
            format!(
                "<w:styles xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">{}</w:styles>",
                "<w:style w:styleId=\"a\"/>".repeat(40_000)
            ),
        )
        .build();
    assert!(big_text.len() > 512 * 1024, "enough XML for part lanes");
    let run = |registry: &Registry| {
        let declared = Declared {
            name: Some("big.docx"),
            mime: None,
        };
        let outcome = registry.process(&input, &declared, &Policy::default());
        assert_eq!(
            outcome.report.verdict,
            Verdict::Sanitized,
            "{:?}",
            outcome.report
        );
        (
            outcome.output().map(|o| o.bytes().to_vec()),
            outcome.report.removed.len(),
        )
    };
    let default = Registry::standard();
    let expected = run(&default);
    assert_eq!(run(&Registry::standard().with_helper_threads(0)), expected);
    let starved = Registry::standard().with_helper_threads(1);
    let held = starved.threads().take(1);
    assert_eq!(held.count(), 1);
    assert_eq!(run(&starved), expected);
    drop(held);
    assert_eq!(default.threads().in_use(), 0, "every permit is given back");
}
