//! Fuzzes the one entry point untrusted bytes go through: detection, policy, every
//! sanitizer and the re-check of its output.
//!
//! The registry turns a panic into a quarantine (fail closed), which would hide it from the
//! fuzzer; the hook below aborts first, so a panic is reported as the bug it is. A hang
//! past the per-file deadline shows up as a libFuzzer timeout, unbounded memory as an OOM.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::{Declared, Policy, Registry};

fuzz_target!(|data: &[u8]| {
    static REGISTRY: OnceLock<(Registry, Policy)> = OnceLock::new();
    let (registry, policy) = REGISTRY.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort()
        }));
        (Registry::standard(), Policy::default())
    });
    let _ = registry.process(data, &Declared::default(), policy);
});
