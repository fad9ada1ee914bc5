//! `ca sign-csr` and the enrollment service's issuance: a client
//! certificate for the key of a request the client made, after checking
//! that the request asks for exactly the identity it is issued for.

use std::path::Path;

use rcgen::{IsCa, SanType};
use x509_parser::prelude::FromDer;

use super::authority::Ca;
use super::error::{file_err, CaError};
use super::ledger::CertKind;
use crate::identity::{client_spiffe_id, ClientId};
use crate::keys::write_public;

impl Ca {
    /// `ca sign-csr`: a client certificate for the public key of a PKCS#10
    /// request (PEM) the client made with `sealgate csr`, so its TLS private
    /// key never leaves it.
    ///
    /// The request's self-signature must verify, its key must be P-256 and
    /// its only SAN must be the URI `spiffe://<trust-domain>/client/<id>`;
    /// a request for another identity, with another SAN, or for a CA is
    /// refused. Nothing else is taken from it: subject, key usages, EKU,
    /// validity and serial are the CA's, as for `issue-client`.
    pub fn sign_csr(&self, csr_pem: &[u8], id: &str, days: u32) -> Result<String, CaError> {
        let id =
            ClientId::parse(id).map_err(|e| CaError::Invalid(format!("client id {id:?}: {e}")))?;
        let expected = client_spiffe_id(&self.trust_domain, &id);
        let csr = check_csr(csr_pem, &expected)?;
        let params = self.client_params(&id, days)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        self.record_issued(&params, CertKind::Client, id.as_str())?;
        Ok(cert.pem())
    }

    /// The enrollment service's issuance: a client certificate for `id`
    /// from a PKCS#10 request in DER, checked as [`Ca::sign_csr`] checks
    /// one, recorded in the index. Returns the certificate (DER) and its
    /// not_after in Unix milliseconds.
    pub fn sign_csr_der(
        &self,
        csr_der: &[u8],
        id: &ClientId,
        days: u32,
    ) -> Result<(Vec<u8>, i64), CaError> {
        let expected = client_spiffe_id(&self.trust_domain, id);
        let csr = check_csr_der(csr_der, &expected)?;
        let params = self.client_params(id, days)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        self.record_issued(&params, CertKind::Client, id.as_str())?;
        let not_after_ms = i64::try_from(params.not_after.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| CaError::Invalid("certificate not_after out of range".into()))?;
        Ok((cert.der().to_vec(), not_after_ms))
    }

    /// [`Ca::sign_csr`] from a file, writing the certificate to `out`; an
    /// error names the CSR file. Reads only the request: the client's
    /// private keys are never asked for.
    pub fn sign_csr_file(
        &self,
        csr: &Path,
        id: &str,
        days: u32,
        out: &Path,
        force: bool,
    ) -> Result<String, CaError> {
        let bytes = std::fs::read(csr).map_err(|e| file_err(csr, format!("cannot read: {e}")))?;
        let pem = self.sign_csr(&bytes, id, days).map_err(|e| match e {
            CaError::Invalid(m) | CaError::CsrIdentity(m) => file_err(csr, m),
            other => other,
        })?;
        write_public(out, pem.as_bytes(), force)?;
        Ok(client_spiffe_id(
            &self.trust_domain,
            &ClientId::parse(id).map_err(|e| CaError::Invalid(e.to_string()))?,
        ))
    }
}

/// Parses and checks a client's certificate signing request: the
/// self-signature verifies (rcgen checks it while parsing), the key is
/// P-256, it asks for no CA, and its only SAN is `expected`. Errors say
/// what is wrong and never echo the request.
fn check_csr(
    csr_pem: &[u8],
    expected: &str,
) -> Result<rcgen::CertificateSigningRequestParams, CaError> {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem).map_err(|_| {
            CaError::Invalid("not a PEM certificate signing request (CERTIFICATE REQUEST)".into())
        })?;
    check_csr_der(&der, expected)
}

/// Checks a PKCS#10 request (DER) as [`Ca::sign_csr`] would for the SPIFFE
/// ID `expected`, without issuing anything; a request for another identity
/// is [`CaError::CsrIdentity`].
pub fn check_client_csr_der(der: &[u8], expected: &str) -> Result<(), CaError> {
    check_csr_der(der, expected).map(|_| ())
}

/// [`check_csr`] on the DER of a request (as the enrollment service
/// receives it).
fn check_csr_der(
    der: &[u8],
    expected: &str,
) -> Result<rcgen::CertificateSigningRequestParams, CaError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};

    let invalid = |m: &str| CaError::Invalid(m.to_string());
    let der = rustls_pki_types::CertificateSigningRequestDer::from(der);
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => {
            invalid("the CSR's signature does not verify; refused")
        }
        rcgen::Error::UnsupportedExtension => {
            invalid("the CSR requests an extension sealgate does not issue; refused")
        }
        _ => invalid("not a valid PKCS#10 certificate signing request"),
    })?;
    let (_, parsed) = X509CertificationRequest::from_der(&der)
        .map_err(|_| invalid("not a valid PKCS#10 certificate signing request"))?;
    let spki = &parsed.certification_request_info.subject_pki;
    let p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid == OID_EC_P256)
        && csr.public_key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256;
    if !p256 {
        return Err(invalid(
            "the CSR's key must be ECDSA P-256, signed with SHA-256 (as `sealgate csr` makes); refused",
        ));
    }
    if let IsCa::Ca(_) = csr.params.is_ca {
        return Err(invalid(
            "the CSR asks for a CA certificate; sealgate signs only client certificates; refused",
        ));
    }
    let sans = &csr.params.subject_alt_names;
    if let Some(other) = sans.iter().find(|s| !matches!(s, SanType::URI(_))) {
        let kind = match other {
            SanType::DnsName(_) => "a DNS",
            SanType::IpAddress(_) => "an IP",
            SanType::Rfc822Name(_) => "an email",
            _ => "a non-URI",
        };
        return Err(CaError::Invalid(format!(
            "the CSR carries {kind} SAN; its only SAN must be the URI {expected}; refused"
        )));
    }
    match sans.as_slice() {
        [SanType::URI(uri)] if uri.as_str() == expected => Ok(csr),
        [SanType::URI(uri)] => Err(CaError::CsrIdentity(format!(
            "the CSR is for {}, not {expected}; refused",
            uri.as_str()
        ))),
        _ => Err(CaError::Invalid(format!(
            "the CSR carries {} SANs; its only SAN must be the URI {expected}; refused",
            sans.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, KeyPair};
    use time::OffsetDateTime;

    use super::*;
    use crate::ca::client_csr::write_client_csr;
    use crate::ca::init::tests::new_ca;
    use crate::ca::inspect::inspect_der;

    /// A CSR made by hand, for requests `sealgate csr` would never make.
    fn csr_with(params: &CertificateParams) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(rcgen::string::Ia5String::try_from(s.to_string()).expect("ia5"))
    }

    fn refusal(ca: &Ca, csr: &str, id: &str) -> String {
        match ca.sign_csr(csr.as_bytes(), id, 30) {
            Err(CaError::Invalid(m)) | Err(CaError::CsrIdentity(m)) => m,
            Err(other) => panic!("wrong error kind: {other}"),
            Ok(_) => panic!("CSR accepted"),
        }
    }

    #[test]
    fn sign_csr_issues_exactly_the_checked_identity() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&d.path().join("ca"));
        let made =
            write_client_csr(&d.path().join("client"), "ca.test", "carol", false).expect("csr");
        assert_eq!(made.spiffe_id, "spiffe://ca.test/client/carol");
        let csr = std::fs::read(&made.csr).expect("read csr");
        let pem = ca.sign_csr(&csr, "carol", 30).expect("signed");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .expect("pem cert");
        let info = inspect_der(&der).expect("inspect");
        assert_eq!(info.sans, vec!["URI:spiffe://ca.test/client/carol"]);
        assert_eq!(info.extended_key_usage, vec!["clientAuth"]);
        assert!(!info.is_ca);
        assert_eq!(info.subject, "CN=sealgate client carol");
        let id = crate::identity::identity_from_cert(&der, "ca.test").expect("identity");
        assert_eq!(id.client_id.as_str(), "carol");
        // A second signature of the same request gets a fresh serial.
        let again = ca.sign_csr(&csr, "carol", 30).expect("signed");
        assert_ne!(again, pem);
        let listed = ca.list(OffsetDateTime::now_utc()).expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].serial, info.serial);
        assert_ne!(listed[0].serial, listed[1].serial);
    }

    #[test]
    fn sign_csr_refuses_other_identities_and_extra_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/mallory")];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR is for spiffe://ca.test/client/mallory, not spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![uri("spiffe://other.test/client/alice")];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR is for spiffe://other.test/client/alice, not spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![
            uri("spiffe://ca.test/client/alice"),
            uri("spiffe://ca.test/client/admin"),
        ];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries 2 SANs; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![
            uri("spiffe://ca.test/client/alice"),
            SanType::DnsName("gw.example".try_into().expect("dns")),
        ];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries a DNS SAN; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![];
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR carries 0 SANs; its only SAN must be the URI spiffe://ca.test/client/alice; refused"
        );
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/alice")];
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert_eq!(
            refusal(&ca, &csr_with(&p), "alice"),
            "the CSR asks for a CA certificate; sealgate signs only client certificates; refused"
        );
        assert_eq!(
            refusal(&ca, "not a csr", "alice"),
            "not a PEM certificate signing request (CERTIFICATE REQUEST)"
        );
        assert!(ca.list(OffsetDateTime::now_utc()).expect("list").is_empty());
    }

    #[test]
    fn sign_csr_refuses_a_tampered_request_and_other_key_types() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![uri("spiffe://ca.test/client/alice")];
        // Ed25519 keys are not leaf TLS keys here.
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let csr = p.serialize_request(&ed).expect("csr").pem().expect("pem");
        assert_eq!(
            refusal(&ca, &csr, "alice"),
            "the CSR's key must be ECDSA P-256, signed with SHA-256 (as `sealgate csr` makes); refused"
        );
        // Flip one byte of the signed content: the self-signature fails.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let csr = p.serialize_request(&key).expect("csr");
        let mut der = csr.der().to_vec();
        let at = der
            .windows(5)
            .position(|w| w == b"alice")
            .expect("id in the CSR");
        der[at] = b'b';
        let pem = pem_of(&der);
        assert_eq!(
            refusal(&ca, &pem, "blice"),
            "the CSR's signature does not verify; refused"
        );
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("ascii"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE REQUEST-----\n");
        out
    }
}
