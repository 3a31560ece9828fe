//! The SMTP source: the sans-IO session, the shared memory budget and the tokio listener.

pub mod budget;
pub mod server;
pub mod session;
