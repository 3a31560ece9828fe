//! What the registry and mail targets share: one registry with the default policy, built on
//! the first input, and a panic hook that aborts. The registry and the mail converter turn a
//! panic into a quarantine (fail closed), which would hide it from the fuzzer; aborting
//! first reports it as the bug it is.

use std::sync::OnceLock;

use mukaika_sanitizers::{Policy, Registry};

/// The shared registry and policy (the hook is installed with them).
pub fn registry() -> &'static (Registry, Policy) {
    static REGISTRY: OnceLock<(Registry, Policy)> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort()
        }));
        (Registry::standard(), Policy::default())
    })
}
