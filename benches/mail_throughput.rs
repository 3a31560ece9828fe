//! Mail → text throughput and latency on the shared bench messages, one core.
//!
//! `cargo bench --bench mail_throughput` prints messages per second and p50/p99 latency for
//! the 10 KB ISO-2022-JP text mail, the 50 KB HTML mail and the 1.4 MB mail with a 170-page
//! PDF attachment (converted and its PDF rebuilt), then a mixed run. Target (#3): at least
//! 2,000 msg/s per core on the 10 KB message.

use std::time::{Duration, Instant};

use mukaika_sanitizers::mail;
use mukaika_sanitizers::{Policy, Registry};

fn main() {
    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench");
    let load =
        |name: &str| std::fs::read(bench.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = [
        ("mail-10k.eml", load("mail-10k.eml"), 5000),
        ("mail-50k-html.eml", load("mail-50k-html.eml"), 1000),
        ("mail-2m-pdf.eml", load("mail-2m-pdf.eml"), 60),
    ];
    // `MAIL_BENCH_ONLY=mail-10k.eml` measures one message alone (for a profiler).
    let only = std::env::var("MAIL_BENCH_ONLY").ok();
    let inputs: Vec<_> = inputs
        .into_iter()
        .filter(|(name, _, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    let registry = Registry::standard();
    let policy = Policy::default();
    println!(
        "{:<20} {:>7} {:>10} {:>10} {:>10}",
        "message", "runs", "msg/s", "p50 ms", "p99 ms"
    );
    let mut mixed: Vec<&[u8]> = Vec::new();
    for (name, raw, runs) in &inputs {
        for _ in 0..(runs / 20).max(3) {
            let outcome = mail::convert(raw, "bench", &registry, &policy);
            assert!(outcome.message().is_some(), "{name} must convert");
        }
        let (rate, p50, p99) = measure(*runs, || {
            std::hint::black_box(mail::convert(raw, "bench", &registry, &policy));
        });
        println!("{name:<20} {runs:>7} {rate:>10.0} {p50:>10.3} {p99:>10.3}");
        for _ in 0..(*runs / 60).max(1) {
            mixed.push(raw);
        }
    }
    let mut i = 0;
    let (rate, p50, p99) = measure(mixed.len() * 3, || {
        std::hint::black_box(mail::convert(
            mixed[i % mixed.len()],
            "bench",
            &registry,
            &policy,
        ));
        i += 1;
    });
    println!(
        "{:<20} {:>7} {rate:>10.0} {p50:>10.3} {p99:>10.3}",
        "mixed",
        mixed.len() * 3
    );
    println!("\ntarget: >= 2000 msg/s per core on mail-10k.eml (single thread above)");
}

fn measure(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    let total = start.elapsed().as_secs_f64();
    times.sort();
    let pct = |p: f64| {
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0
    };
    (runs as f64 / total, pct(0.50), pct(0.99))
}
