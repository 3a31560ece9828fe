//! The service crate's integration tests, one binary (link time and disk: one binary instead
//! of one per file). Each module is one area; `support` starts services, clients and sinks;
//! fixtures come from the `mukaika-fixtures` crate.

mod support;

mod antivirus;
mod audit;
mod browser;
mod cli;
mod cluster;
mod cluster_audit;
mod cluster_import;
mod cluster_quarantine;
mod durability;
mod hostile_names;
mod import;
mod mail_e2e;
mod packaging;
mod permissions;
mod ppap;
mod relay;
mod review;
mod serve;
mod smtp_robustness;
mod web;
