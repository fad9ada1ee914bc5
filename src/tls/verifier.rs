//! The client-certificate verifier: webpki's chain, date and revocation
//! checks, then an EKU extension naming clientAuth and a client CA within
//! its own validity ([`ClientAuthOnly`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::error::TlsError;

/// The gateway's client-certificate verifier: webpki's chain, date and
/// revocation checks, and then two checks webpki does not make:
/// - the chain ends on a client CA within its own validity. webpki treats
///   a trust anchor as a name and a key (RFC 5280 6.1.1 (d)) and never
///   reads its dates, so an expired CA would go on vouching for any leaf
///   its key signed. So webpki builds the path only among the client CAs
///   in their dates at the handshake's time (rebuilt when one crosses a
///   date, not per handshake): path building, by name and signature with
///   backtracking, stays webpki's. A chain that only a CA outside its
///   dates would have accepted fails with `certificate_expired` (or
///   `NotValidYet`), any other with webpki's own error.
/// - an EKU extension naming clientAuth (webpki accepts a certificate
///   without any EKU extension). A certificate without one fails the
///   handshake with the `unsupported_certificate` alert, as one whose EKU
///   lacks clientAuth does.
#[derive(Debug)]
pub struct ClientAuthOnly {
    /// webpki over every client CA: the hints offered, and the verdict
    /// that tells a date refusal from any other.
    all: Arc<dyn ClientCertVerifier>,
    anchors: Vec<Anchor>,
    settings: WebpkiSettings,
    /// webpki over the CAs in their dates, for the last set seen.
    in_date: ArcSwap<InDate>,
}

/// How webpki's verifier is built (the same for every anchor set).
#[derive(Debug, Clone)]
pub struct WebpkiSettings {
    /// The CRLs checked.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Whether a CRL past its next update refuses every client.
    pub enforce_crl_expiry: bool,
    /// Whether a client must present a certificate.
    pub required: bool,
    /// The crypto provider.
    pub provider: Arc<rustls::crypto::CryptoProvider>,
}

impl WebpkiSettings {
    fn build(&self, roots: RootCertStore) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .with_crls(self.crls.clone());
        if self.enforce_crl_expiry {
            builder = builder.enforce_revocation_expiration();
        }
        if !self.required {
            builder = builder.allow_unauthenticated();
        }
        builder
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier: {e}")))
    }
}

/// One client CA certificate and its validity in Unix seconds.
#[derive(Debug)]
struct Anchor {
    der: CertificateDer<'static>,
    not_before: i64,
    not_after: i64,
}

impl Anchor {
    fn covers(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The anchors in their dates (one flag per anchor, in file order) and
/// webpki's verifier over them (`None` when there is none).
#[derive(Debug)]
struct InDate {
    mask: Vec<bool>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl ClientAuthOnly {
    /// The verifier over the client CA certificates `ca_certs` (each must
    /// parse; an error names it by its position in the file), webpki built
    /// with `settings`.
    pub fn new(
        ca_certs: &[CertificateDer<'static>],
        settings: WebpkiSettings,
    ) -> Result<Self, TlsError> {
        let mut anchors = Vec::with_capacity(ca_certs.len());
        let mut all = RootCertStore::empty();
        for (i, der) in ca_certs.iter().enumerate() {
            let unusable =
                |e: String| TlsError::Config(format!("client CA certificate {}: {e}", i + 1));
            let (_, ca) = X509Certificate::from_der(der).map_err(|e| unusable(e.to_string()))?;
            anchors.push(Anchor {
                der: der.clone(),
                not_before: ca.validity().not_before.timestamp(),
                not_after: ca.validity().not_after.timestamp(),
            });
            all.add(der.clone()).map_err(|e| unusable(e.to_string()))?;
        }
        let all = settings.build(all)?;
        let verifier = Self {
            all,
            anchors,
            settings,
            in_date: ArcSwap::from_pointee(InDate {
                mask: Vec::new(),
                verifier: None,
            }),
        };
        verifier.in_date_at(unix_now())?;
        Ok(verifier)
    }

    /// webpki over the anchors in their dates at `now`, rebuilt only when
    /// that set changed since the last call.
    fn in_date_at(&self, now: i64) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
        let mask: Vec<bool> = self.anchors.iter().map(|a| a.covers(now)).collect();
        let current = self.in_date.load();
        if current.mask == mask && !mask.is_empty() {
            return Ok(current.verifier.clone());
        }
        let mut roots = RootCertStore::empty();
        for (a, _) in self.anchors.iter().zip(&mask).filter(|(_, on)| **on) {
            roots
                .add(a.der.clone())
                .map_err(|e| TlsError::Config(format!("client CA certificate: {e}")))?;
        }
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(self.settings.build(roots)?)
        };
        self.in_date.store(Arc::new(InDate {
            mask,
            verifier: verifier.clone(),
        }));
        Ok(verifier)
    }

    /// The refusal of a chain only a CA outside its dates accepts: expired
    /// when one of those has expired, else not yet valid.
    fn date_refusal(&self, now: i64) -> rustls::Error {
        let expired = self.anchors.iter().any(|a| now > a.not_after);
        rustls::Error::InvalidCertificate(if expired {
            CertificateError::Expired
        } else {
            CertificateError::NotValidYet
        })
    }
}

fn unix_now() -> i64 {
    let secs = UnixTime::now().as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl ClientCertVerifier for ClientAuthOnly {
    fn offer_client_auth(&self) -> bool {
        self.all.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.all.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.all.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let in_date = self
            .in_date_at(secs)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verdict = match &in_date {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let verified = match verdict {
            Ok(v) => v,
            // Say why when a CA outside its dates is what it would take.
            Err(e) => {
                return Err(
                    if self
                        .all
                        .verify_client_cert(end_entity, intermediates, now)
                        .is_ok()
                    {
                        self.date_refusal(secs)
                    } else {
                        e
                    },
                )
            }
        };
        let (_, leaf) = X509Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !has_client_auth_eku(&leaf)? {
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
        self.all.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.all.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.all.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.all.requires_raw_public_keys()
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
