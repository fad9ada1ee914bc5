//! Fuzz surface: a PKCS#10 certificate signing request (DER), as
//! `sealgate ca sign-csr` and the enrollment service's Enroll and Renew
//! receive it: `check_client_csr_der` (rcgen's parse and self-signature
//! check, then sealgate's key, CA and SAN checks) for the sample client's
//! SPIFFE ID, and the refusal the enrollment service sends for it.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use super::pki_sample::{CLIENT_ID, CSRS, TRUST_DOMAIN};
use crate::ca::{check_client_csr_der, CaError};
use crate::enroll::reasons::{csr_refusal, EnrollReason};

/// Runs one input. Invariants: a request accepted for the sample SPIFFE ID
/// is, read by a second parser (x509-parser), a P-256 key whose requested
/// SANs are exactly that one URI, and it is refused for any other identity
/// with `CsrIdentity`; a refused one is `Invalid` or `CsrIdentity`, which
/// the enrollment service sends as CSR_INVALID or CSR_IDENTITY_MISMATCH
/// (never INTERNAL).
pub fn csr(data: &[u8]) {
    let expected = expected(CLIENT_ID);
    match check_client_csr_der(data, &expected) {
        Ok(()) => {
            check_accepted(data, &expected);
            assert!(
                matches!(
                    check_client_csr_der(data, &self::expected("other")),
                    Err(CaError::CsrIdentity(_))
                ),
                "one request accepted for two identities"
            );
        }
        Err(e) => {
            let reason = csr_refusal(e).reason;
            assert!(
                matches!(
                    reason,
                    EnrollReason::CsrInvalid | EnrollReason::CsrIdentityMismatch
                ),
                "a request refused as {reason:?}"
            );
        }
    }
}

/// Seeds: the request `sealgate csr` makes, and the ones it never makes.
pub fn csr_seeds() -> Vec<Vec<u8>> {
    CSRS.iter().map(|(_, b)| b.to_vec()).collect()
}

fn expected(id: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/client/{id}")
}

/// What x509-parser reads from an accepted request.
fn check_accepted(der: &[u8], expected: &str) {
    let (_, parsed) = X509CertificationRequest::from_der(der).expect("an accepted request parses");
    let spki = &parsed.certification_request_info.subject_pki;
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    assert_eq!(curve, Some(OID_EC_P256), "an accepted key is not P-256");
    let mut uris = Vec::new();
    for ext in parsed.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    other => panic!("an accepted request carries the SAN {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        uris,
        [expected],
        "an accepted request names another identity"
    );
}

#[cfg(test)]
mod tests {
    use super::super::pki_sample::fixture;
    use super::*;

    #[test]
    fn the_request_sealgate_csr_makes_is_accepted() {
        check_client_csr_der(fixture("client.csr.der"), &expected(CLIENT_ID)).expect("accepted");
        for (_, seed) in CSRS {
            csr(seed);
        }
    }

    #[test]
    fn each_refused_request_gets_its_typed_error() {
        let refusal = |name| {
            let e = check_client_csr_der(fixture(name), &expected(CLIENT_ID)).expect_err(name);
            let message = e.to_string();
            (csr_refusal(e).reason, message)
        };
        let (reason, message) = refusal("other-id.csr.der");
        assert_eq!(reason, EnrollReason::CsrIdentityMismatch);
        assert!(message.contains("the CSR is for spiffe://fuzz.example/client/admin, not spiffe://fuzz.example/client/sample; refused"), "{message}");
        let (reason, _) = refusal("other-domain.csr.der");
        assert_eq!(reason, EnrollReason::CsrIdentityMismatch);
        for (name, says) in [
            ("dns-and-uri.csr.der", "the CSR carries a DNS SAN"),
            ("two-uris.csr.der", "the CSR carries 2 SANs"),
            ("no-san.csr.der", "the CSR carries 0 SANs"),
            ("ca.csr.der", "the CSR asks for a CA certificate"),
            ("ed25519.csr.der", "the CSR's key must be ECDSA P-256"),
        ] {
            let (reason, message) = refusal(name);
            assert_eq!(reason, EnrollReason::CsrInvalid, "{name}");
            assert!(message.contains(says), "{name}: {message}");
        }
        let e = check_client_csr_der(b"\x30\x00", &expected(CLIENT_ID)).expect_err("garbage");
        assert_eq!(csr_refusal(e).reason, EnrollReason::CsrInvalid);
    }

    #[test]
    #[should_panic(expected = "an accepted request names another identity")]
    fn the_invariant_fails_for_another_identity() {
        check_accepted(fixture("client.csr.der"), &expected("other"));
    }
}
