//! rustls configurations: TLS 1.3 only, client certificates required.
//!
//! This module owns the gateway's server config, the client configs (to the
//! gateway, and from it to backends and OpenBao), the PEM loading of
//! certificates, keys and CRLs behind them, the rule for which URLs may
//! receive credentials, and the TLS channel of the client SDK. The server
//! verifies client chains against our CA (and its CRLs) with
//! webpki, which also enforces validity dates and refuses an EKU extension
//! without clientAuth; [`ClientAuthOnly`] also refuses a certificate with
//! no EKU extension at all, which webpki would accept.
//! Provider: aws-lc-rs, whose default key-exchange groups put the hybrid
//! post-quantum X25519MLKEM768 first. This module never accepts TLS 1.2,
//! never runs without a client certificate, and never logs key material.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::keys::read_private;

/// Why a TLS configuration could not be built. Names files, never key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or CRL file could not be read from disk.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// The I/O error from the read.
        source: std::io::Error,
    },
    /// A PEM file held a malformed item, or none of the expected kind.
    #[error("{path}: no {what} found in PEM")]
    Pem {
        /// The file, as given.
        path: String,
        /// The kind that was expected, e.g. `certificate` or `valid CRL`.
        what: &'static str,
    },
    /// A private key file was unreadable or readable by group or others.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// rustls refused the parts (unusable CA, key not matching the
    /// certificate, unparsable CRL, …).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider every config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_pem(path, "certificate", "valid certificate")
}

/// Reads every item of one kind `T` from a PEM file (other kinds are
/// skipped). A malformed item is a [`TlsError::Pem`] naming `valid_what`, a
/// file without any naming `what`.
fn load_pem<T: PemObject>(
    path: &Path,
    what: &'static str,
    valid_what: &'static str,
) -> Result<Vec<T>, TlsError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let items: Vec<T> = T::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: p.clone(),
            what: valid_what,
        })?;
    if items.is_empty() {
        return Err(TlsError::Pem { path: p, what });
    }
    Ok(items)
}

/// Reads a PEM private key, refusing group/world-readable files.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_private(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Pem {
        path: path.display().to_string(),
        what: "private key",
    })
}

/// Reads every CRL of every file; each file must hold at least one.
fn load_crls(
    paths: &[impl AsRef<Path>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        crls.extend(load_pem(path.as_ref(), "CRL", "valid CRL")?);
    }
    Ok(crls)
}

/// The serial numbers (lowercase hex, as in [`crate::identity::ClientIdentity`])
/// revoked by the given CRL files.
pub fn revoked_serials(
    paths: &[impl AsRef<Path>],
) -> Result<std::collections::HashSet<String>, TlsError> {
    use x509_parser::prelude::FromDer;
    let mut out = std::collections::HashSet::new();
    for crl in load_crls(paths)? {
        let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl)
            .map_err(|_| TlsError::Config("a CRL could not be parsed".into()))?;
        for revoked in parsed.iter_revoked_certificates() {
            out.insert(hex::encode(revoked.raw_serial()));
        }
    }
    Ok(out)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| {
            TlsError::Config(format!("{}: unusable CA certificate: {e}", ca.display()))
        })?;
    }
    Ok(roots)
}

/// The gateway's TLS config: TLS 1.3 only, ALPN h2, client certificate
/// required and verified against `client_ca` and `crls`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[impl AsRef<Path>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone())
            .with_crls(load_crls(crls)?)
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let verifier = Arc::new(ClientAuthOnly(webpki));
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

/// The gateway's client-certificate verifier: webpki's chain, date and
/// revocation checks, and then an EKU extension naming clientAuth, which
/// webpki does not require (it accepts a certificate without any EKU
/// extension). A certificate without one fails the handshake with the
/// `unsupported_certificate` alert, as one whose EKU lacks clientAuth does.
#[derive(Debug)]
pub struct ClientAuthOnly(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ClientAuthOnly {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if !has_client_auth_eku(end_entity)? {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// Whether a certificate has an EKU extension naming clientAuth; a
/// certificate that does not parse (or has two EKU extensions) is a
/// `bad_certificate`.
fn has_client_auth_eku(cert: &CertificateDer<'_>) -> Result<bool, rustls::Error> {
    use x509_parser::prelude::FromDer;
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert).map_err(|_| bad())?;
    let eku = parsed.extended_key_usage().map_err(|_| bad())?;
    Ok(eku.is_some_and(|e| e.value.client_auth))
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

/// Whether the gateway may send credentials to `url`: `https://`, or plain
/// `http://` to a loopback address only (host exactly `localhost` or a
/// loopback IP; no user info). Parsed, not prefix-matched, so
/// `http://localhost.evil.example` and `http://127.0.0.1.nip.io` are refused.
pub fn transport_allowed(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Sets ALPN h2 on a client config.
pub fn with_h2(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Opens a tonic channel over our own rustls connector, so the client side
/// is TLS 1.3-only with exactly the config given (tonic's built-in TLS
/// would not let us pin the protocol version).
pub async fn connect_channel(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, ConnectError> {
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ConnectError::ServerName(server_name.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let target = addr.to_string();
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(ConnectError::Transport)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(ConnectError::Transport)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_only_to_loopback() {
        use super::transport_allowed as ok;
        for good in [
            "https://bao.internal:8200",
            "http://127.0.0.1:8200",
            "http://localhost:1/mcp",
            "http://[::1]:9/x",
            "http://127.9.9.9/",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "http://localhost.evil.example/mcp",
            "http://127.0.0.1.nip.io/",
            "http://localhost@evil.example/",
            "http://user:pw@127.0.0.1/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}

/// Why [`connect_channel`] could not open a channel to the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configured server name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The endpoint was malformed, or the TCP connection or TLS handshake
    /// failed or timed out (after 10 s).
    #[error("cannot connect: {0}")]
    Transport(#[source] tonic::transport::Error),
}
