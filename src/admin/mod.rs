//! The administrators' side of the running service: the review web UI, the metrics endpoint,
//! the local control socket that the CLI talks to, and `selfcheck`.
//!
//! Owns: every way a person looks at or steers a running gateway.
//! Invariant: nothing here touches a message's bytes except through `review` (which enforces
//! the two-person rule) and `store` (read-only views).
//! Must never: be imported by the layers below it (sources, pipeline, sinks, stores) — except
//! `metrics`, whose counters the sources bump.

pub mod control;
pub mod metrics;
pub mod selfcheck;
pub mod server;
pub mod web;
