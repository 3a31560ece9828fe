//! TLS server configuration from PEM files, shared by the SMTP listener and `selfcheck`.
//!
//! Owns: building a rustls acceptor with the ring provider only and safe protocol defaults.
//! Must never: fall back to plaintext or to a weaker provider when the files are unusable.

use std::sync::Arc;

use crate::error::Error;

/// Builds the STARTTLS acceptor from PEM files (rustls with the ring provider only).
///
/// # Errors
/// Unreadable or unusable certificate or key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> crate::error::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| Error::config(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::config(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::config(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| Error::config(format!("TLS certificate: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS client configuration that trusts only the certificates in the PEM file `ca` (the
/// syslog forwarder's SIEM, `mukaika health` against an HTTPS admin listener): ring provider,
/// safe protocol versions, no client certificate.
///
/// # Errors
/// The file cannot be read, holds no certificate, or one cannot be used as a trust anchor.
pub fn client_config(ca: &std::path::Path) -> crate::error::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| Error::config(format!("{}: {e}", ca.display())))?;
    if certs.is_empty() {
        return Err(Error::config(format!("{}: no certificate", ca.display())));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| Error::config(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
