//! Fuzzes メールテキスト化: raw internet mail in, a clean text message (or a hold) out —
//! MIME structure, every charset and transfer encoding, HTML to text, attachments through
//! the registry. Every message the relay accepts goes through this.
//!
//! As in the registry target, a panic aborts (the pipeline would hold the message, which
//! hides the bug); hangs and memory blow-ups are reported by libFuzzer's limits.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::{Policy, Registry};

fuzz_target!(|data: &[u8]| {
    static REGISTRY: OnceLock<(Registry, Policy)> = OnceLock::new();
    let (registry, policy) = REGISTRY.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort()
        }));
        (Registry::standard(), Policy::default())
    });
    let outcome = mukaika_sanitizers::mail::convert(data, "Q0001", registry, policy);
    // What goes out was written by mukaika: it must parse as mail again.
    if let Some(message) = outcome.message() {
        assert!(mail_parser::MessageParser::default()
            .parse(message.bytes())
            .is_some());
    }
});
