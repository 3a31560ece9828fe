//! Fuzzes メールテキスト化: raw internet mail in, a clean text message (or a hold) out —
//! MIME structure, every charset and transfer encoding, HTML to text, attachments through
//! the registry. Every message the relay accepts goes through this. A panic aborts (see
//! `setup`); hangs and memory blow-ups are reported by libFuzzer's limits.
#![no_main]

mod setup;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (registry, policy) = setup::registry();
    let outcome = mukaika_sanitizers::mail::convert(data, "Q0001", registry, policy);
    // A hold by a bug (a re-check that still removes something) is a crash, not a decision.
    let reasons = std::iter::once(&outcome.report.reason)
        .chain(outcome.report.attachments.iter().map(|a| &a.report.reason));
    for reason in reasons.flatten() {
        assert_ne!(reason.code, "internal-error", "{}", reason.detail);
    }
    // What goes out was written by mukaika: it must parse as mail again.
    if let Some(message) = outcome.message() {
        assert!(mail_parser::MessageParser::default()
            .parse(message.bytes())
            .is_some());
    }
});
