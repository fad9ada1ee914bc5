//! Client configs, TLS 1.3 only: to the gateway (with the client
//! certificate), to the enrollment service (without one), and from the
//! gateway to backends and OpenBao.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use super::error::TlsError;
use super::pem::{load_certs, load_private_key, roots};
use super::provider::provider;

/// A client TLS config for the enrollment service's `Enroll`: TLS 1.3
/// only, ALPN h2, `ca` as the only root, and no client certificate (the
/// client has none yet).
pub fn enroll_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(with_h2(config))
}

/// A client TLS config for the gateway: TLS 1.3 only, our CA as the only
/// root, and the client certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)
        .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?;
    Ok(with_h2(config))
}

/// The TLS config for connections *from* the gateway to backends and to
/// OpenBao: TLS 1.3 only, trusting only the given CA, no client certificate.
pub fn backend_client_config(ca: &Path) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Sets ALPN h2 on a client config.
pub fn with_h2(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}
