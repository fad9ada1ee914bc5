//! Building one rustls server config: TLS 1.3 only, ALPN h2, no session
//! tickets, client certificates verified against the client CA and its
//! CRLs by [`ClientAuthOnly`] (required on the gateway's port, optional on
//! the enrollment listener's).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::ServerConfig;

use super::crl::{load_crls_now, DEFAULT_CRL_GRACE};
use super::error::TlsError;
use super::pem::{load_certs, load_private_key};
use super::provider::provider;
use super::verifier::{ClientAuthOnly, WebpkiSettings};

/// The gateway's TLS config: TLS 1.3 only, ALPN h2, client certificate
/// required and verified against `client_ca` and `crls`, with the default
/// CRL grace ([`DEFAULT_CRL_GRACE`]); see [`server_config_with_grace`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_grace(cert, key, client_ca, crls, DEFAULT_CRL_GRACE)
}

/// The gateway's TLS config: TLS 1.3 only, ALPN h2, client certificate
/// required and verified against `client_ca` and `crls`.
///
/// A CRL past its next update is still used, with a warning on every load,
/// for `crl_grace` (`[tls] crl_grace_secs`); beyond that the verifier
/// enforces CRL expiry, so every client certificate of that CA is refused
/// at the handshake (alert `unknown_ca`: its revocation status cannot be
/// known) until the CRL is re-issued and the gateway reloads. A CRL
/// without a next update never expires, but is warned about.
pub fn server_config_with_grace(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<Arc<ServerConfig>, TlsError> {
    let checked = load_crls_now(crls, crl_grace)?;
    build_server_config(
        cert,
        key,
        client_ca,
        checked.crls,
        checked.enforce,
        true,
        provider(),
    )
}

/// The enrollment listener's TLS config: as [`server_config_with_grace`]
/// (TLS 1.3 only, ALPN h2, the same chain, date, CRL and EKU checks of a
/// certificate that *is* presented), except that a client may connect
/// without one: `Enroll` is how a client without a certificate gets its
/// first. Never used for the gateway's own port.
pub fn enrollment_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<Arc<ServerConfig>, TlsError> {
    let checked = load_crls_now(crls, crl_grace)?;
    build_server_config(
        cert,
        key,
        client_ca,
        checked.crls,
        checked.enforce,
        false,
        provider(),
    )
}

/// One server config from its files and checked CRLs: `enforce` turns on
/// CRL expiry enforcement, `client_cert_required` refuses a client without
/// a certificate.
pub(super) fn build_server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: Vec<CertificateRevocationListDer<'static>>,
    enforce: bool,
    client_cert_required: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = client_verifier(
        &load_certs(client_ca)?,
        crls,
        enforce,
        client_cert_required,
        provider.clone(),
    )
    .map_err(|e| TlsError::Config(format!("{}: {e}", client_ca.display())))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_private_key(key)?)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption tickets: every connection authenticates with a
    // full handshake and a fresh client-certificate check.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The client-certificate verifier every server config uses: webpki's
/// chain, date and revocation checks against the client CA certificates
/// `ca_certs` in their dates and `crls`, then [`ClientAuthOnly`]'s
/// clientAuth EKU check. Public so the X.509 path vectors
/// (tests/x509_cases) run the very verifier a handshake runs, at a
/// validation time of theirs.
pub fn client_verifier(
    ca_certs: &[rustls::pki_types::CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
    enforce: bool,
    client_cert_required: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let settings = WebpkiSettings {
        crls,
        enforce_crl_expiry: enforce,
        required: client_cert_required,
        provider,
    };
    Ok(Arc::new(ClientAuthOnly::new(ca_certs, settings)?))
}
