//! Fuzzes the one entry point untrusted bytes go through: detection, policy, every
//! sanitizer and the re-check of its output. A panic aborts (see `setup`); a hang past
//! the per-file deadline shows up as a libFuzzer timeout, unbounded memory as an OOM.
#![no_main]

mod setup;

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::Declared;

fuzz_target!(|data: &[u8]| {
    let (registry, policy) = setup::registry();
    let _ = registry.process(data, &Declared::default(), policy);
});
