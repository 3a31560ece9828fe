//! Fuzzes the one entry point untrusted bytes go through: detection, policy, every
//! sanitizer and the re-check of its output. A panic aborts (see `setup`); a hang past
//! the per-file deadline shows up as a libFuzzer timeout, unbounded memory as an OOM, and an
//! output that fails its own re-check (reason `internal-error`: a bug, not a decision) as a
//! crash.
#![no_main]

mod setup;

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::Declared;

fuzz_target!(|data: &[u8]| {
    let (registry, policy) = setup::registry();
    let outcome = registry.process(data, &Declared::default(), policy);
    if let Some(reason) = &outcome.report.reason {
        assert_ne!(reason.code, "internal-error", "{}", reason.detail);
    }
});
