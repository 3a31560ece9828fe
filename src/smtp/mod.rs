//! The SMTP source: the sans-IO session and the tokio listener.

pub mod server;
pub mod session;
