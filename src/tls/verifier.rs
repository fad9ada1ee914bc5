//! The client-certificate verifier: webpki's chain, date and revocation
//! checks, then an EKU extension naming clientAuth and a client CA within
//! its own validity ([`ClientAuthOnly`]).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::error::TlsError;

/// The gateway's client-certificate verifier: webpki's chain, date and
/// revocation checks, and then two checks webpki does not make:
/// - an EKU extension naming clientAuth (webpki accepts a certificate
///   without any EKU extension). A certificate without one fails the
///   handshake with the `unsupported_certificate` alert, as one whose EKU
///   lacks clientAuth does.
/// - the client CA the chain ends on is within its own validity. webpki
///   treats a trust anchor as a name and a key (RFC 5280 6.1.1 (d)) and
///   never reads its dates, so an expired CA would go on vouching for any
///   leaf its key signed. An expired client CA fails the handshake with
///   `certificate_expired`, a not-yet-valid one likewise (`NotValidYet`).
#[derive(Debug)]
pub struct ClientAuthOnly {
    inner: Arc<dyn ClientCertVerifier>,
    anchors: Vec<Anchor>,
}

/// One client CA certificate, as the anchor check needs it: its subject
/// (raw DER, compared byte for byte as webpki compares names), its
/// validity in Unix seconds and its DER (to tell apart two CAs of one name).
#[derive(Debug)]
struct Anchor {
    subject: Vec<u8>,
    not_before: i64,
    not_after: i64,
    der: CertificateDer<'static>,
}

impl ClientAuthOnly {
    /// Wraps webpki's verifier `inner`, built over the anchors of
    /// `ca_certs` (the client CA file's certificates, each of which must
    /// parse).
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        ca_certs: &[CertificateDer<'static>],
    ) -> Result<Self, TlsError> {
        let anchors = ca_certs
            .iter()
            .map(|der| {
                let (_, ca) = X509Certificate::from_der(der).map_err(|e| {
                    TlsError::Config(format!("unusable client CA certificate: {e}"))
                })?;
                Ok(Anchor {
                    subject: ca.subject().as_raw().to_vec(),
                    not_before: ca.validity().not_before.timestamp(),
                    not_after: ca.validity().not_after.timestamp(),
                    der: der.clone(),
                })
            })
            .collect::<Result<_, TlsError>>()?;
        Ok(Self { inner, anchors })
    }

    /// Whether the client CA that `leaf`'s chain (through `intermediates`,
    /// as presented) ends on is valid at `now`. webpki has already built a
    /// path by name and signature, so the walk follows issuer names up to
    /// an anchor; when several anchors share the name and only some are in
    /// validity, the one whose key signed the certificate below decides.
    fn anchor_in_validity(
        &self,
        leaf: &X509Certificate<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<(), rustls::Error> {
        let parsed: Vec<X509Certificate<'_>> = intermediates
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect();
        let mut child = leaf;
        // Each step moves to a distinct intermediate, so the walk ends.
        for _ in 0..=parsed.len() {
            let issuer = child.issuer().as_raw();
            let named: Vec<&Anchor> = self
                .anchors
                .iter()
                .filter(|a| a.subject == issuer)
                .collect();
            if !named.is_empty() {
                return anchor_verdict(&named, child, now);
            }
            match parsed.iter().find(|c| c.subject().as_raw() == issuer) {
                Some(next) if !std::ptr::eq(next, child) => child = next,
                _ => break,
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }
}

/// The verdict on the anchors `named` that carry the issuer name of
/// `child`: in validity at `now`, or (when they disagree) the verdict of
/// the one whose key signed `child`.
fn anchor_verdict(
    named: &[&Anchor],
    child: &X509Certificate<'_>,
    now: i64,
) -> Result<(), rustls::Error> {
    let dated = |a: &Anchor| {
        if now < a.not_before {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ))
        } else if now > a.not_after {
            Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
        } else {
            Ok(())
        }
    };
    let verdicts: Vec<_> = named.iter().map(|a| dated(a)).collect();
    if verdicts.iter().all(|v| v.is_ok()) {
        return Ok(());
    }
    if named.len() > 1 {
        for (anchor, verdict) in named.iter().zip(&verdicts) {
            let signed = X509Certificate::from_der(&anchor.der)
                .ok()
                .is_some_and(|(_, ca)| child.verify_signature(Some(ca.public_key())).is_ok());
            if signed {
                return verdict.clone();
            }
        }
    }
    verdicts.into_iter().find(|v| v.is_err()).unwrap_or(Ok(()))
}

impl ClientCertVerifier for ClientAuthOnly {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, leaf) = X509Certificate::from_der(end_entity).map_err(|_| bad())?;
        if !has_client_auth_eku(&leaf)? {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.anchor_in_validity(&leaf, intermediates, now)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// Whether a certificate has an EKU extension naming clientAuth; two EKU
/// extensions are a `bad_certificate`.
fn has_client_auth_eku(cert: &X509Certificate<'_>) -> Result<bool, rustls::Error> {
    let eku = cert
        .extended_key_usage()
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(eku.is_some_and(|e| e.value.client_auth))
}
