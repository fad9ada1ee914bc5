//! The client-certificate verifier: webpki's chain, date and revocation
//! checks, then an EKU extension naming clientAuth ([`ClientAuthOnly`]).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
