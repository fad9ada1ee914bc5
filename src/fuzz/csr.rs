//! Fuzz surface: a PKCS#10 certificate signing request (DER), as
//! `sealgate ca sign-csr` and the enrollment service's Enroll and Renew
//! receive it: `check_client_csr_der` (rcgen's parse and self-signature
//! check, then sealgate's key, CA and SAN checks) for the sample client's
//! SPIFFE ID, and the refusal the enrollment service sends for it.
//! The first byte picks the mode: 0x30 (a DER SEQUENCE) the whole input
//! is the request as received; any other byte the rest is a
//! certificationRequestInfo, signed here by a sample key (even: P-256,
//! odd: Ed25519) as its holder would, so the key, CA and SAN checks after
//! the self-signature see fuzzed fields.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use super::pki_sample::{request_info, signed_request, SampleKey, CLIENT_ID, CSRS, TRUST_DOMAIN};
use crate::ca::{check_client_csr_der, CaError};
use crate::enroll::reasons::{csr_refusal, EnrollReason};

/// Runs one input. Invariants: a request accepted for the sample SPIFFE ID
/// is, read by a second parser (x509-parser), a P-256 key whose requested
/// SANs are exactly that one URI, and it is refused for any other identity
/// with `CsrIdentity`; a refused one is `Invalid` or `CsrIdentity`, which
/// the enrollment service sends as CSR_INVALID or CSR_IDENTITY_MISMATCH
/// (never INTERNAL). A request signed by the sample key it names is never
/// refused for its signature.
pub fn csr(data: &[u8]) {
    match data.split_first() {
        Some((0x30, _)) => received(data),
        Some((mode, cri)) => {
            let key = if mode % 2 == 0 {
                SampleKey::P256
            } else {
                SampleKey::Ed25519
            };
            let der = signed_request(cri, key);
            if let Err(CaError::Invalid(m)) = check_client_csr_der(&der, &expected(CLIENT_ID)) {
                assert_signature_holds(cri, key, &m);
            }
            received(&der);
        }
        None => {}
    }
}

/// A request whose info names the key that signed it (its whole
/// SubjectPublicKeyInfo, algorithm and curve included, byte for byte) is
/// not refused for its signature, when the info is all that was signed
/// (bytes after it are signed here but are not the request's info).
fn assert_signature_holds(cri: &[u8], key: SampleKey, refusal: &str) {
    use rcgen::PublicKeyData as _;
    let names_key =
        X509CertificationRequest::from_der(&signed_request(cri, key)).is_ok_and(|(_, p)| {
            p.certification_request_info.raw == cri
                && p.certification_request_info.subject_pki.raw
                    == key.pair().subject_public_key_info()
        });
    assert!(
        !(names_key && refusal.contains("signature does not verify")),
        "a request signed by the key it names refused: {refusal}"
    );
}

/// The request as `sign-csr` or the enrollment service receives it.
fn received(data: &[u8]) {
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

/// Seeds: the request `sealgate csr` makes, and the ones it never makes;
/// then the same shapes as request infos for the sample keys to sign.
pub fn csr_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = CSRS.iter().map(|(_, b)| b.to_vec()).collect();
    for (key, params) in resign_shapes() {
        let mode = u8::from(key == SampleKey::Ed25519);
        out.push([vec![mode], request_info(&params, key)].concat());
    }
    out
}

/// Requests for the re-signing mode: the one `sealgate csr` makes for the
/// sample client, another identity, a DNS SAN beside the URI, two URIs, a
/// CA, no SAN, an uppercase scheme, and an Ed25519 key.
fn resign_shapes() -> Vec<(SampleKey, rcgen::CertificateParams)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, SanType};
    let uri =
        |s: &str| SanType::URI(rcgen::string::Ia5String::try_from(s.to_string()).expect("ia5"));
    let with = |sans: Vec<SanType>, ca: bool| {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p
    };
    let me = uri(&expected(CLIENT_ID));
    let dns = SanType::DnsName("gw.fuzz.example".try_into().expect("dns"));
    vec![
        (SampleKey::P256, with(vec![me.clone()], false)),
        (SampleKey::P256, with(vec![uri(&expected("admin"))], false)),
        (SampleKey::P256, with(vec![me.clone(), dns], false)),
        (
            SampleKey::P256,
            with(vec![me.clone(), uri(&expected("admin"))], false),
        ),
        (SampleKey::P256, with(vec![me.clone()], true)),
        (SampleKey::P256, with(vec![], false)),
        (
            SampleKey::P256,
            with(vec![uri("SPIFFE://fuzz.example/client/sample")], false),
        ),
        (SampleKey::Ed25519, with(vec![me], false)),
    ]
}

fn expected(id: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/client/{id}")
}

/// What x509-parser reads from an accepted request: a P-256 key, no CA
/// request, and exactly the one expected URI as its SANs (what `sign-csr`
/// promises to issue for).
pub(super) fn check_accepted(der: &[u8], expected: &str) {
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
        if let ParsedExtension::BasicConstraints(bc) = ext {
            assert!(!bc.ca, "an accepted request asks for a CA");
        }
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
    fn re_signed_requests_reach_the_checks_after_the_signature() {
        let seeds = csr_seeds();
        let resigned = |i: usize| {
            let s: &[u8] = &seeds[CSRS.len() + i];
            let key = if s[0] % 2 == 0 {
                SampleKey::P256
            } else {
                SampleKey::Ed25519
            };
            check_client_csr_der(&signed_request(&s[1..], key), &expected(CLIENT_ID))
        };
        resigned(0).expect("the sample key's request for the sample client");
        assert!(matches!(resigned(1), Err(CaError::CsrIdentity(m)) if m.contains("client/admin")));
        for (i, says) in [
            (2, "the CSR carries a DNS SAN"),
            (3, "the CSR carries 2 SANs"),
            (4, "the CSR asks for a CA certificate"),
            (5, "the CSR carries 0 SANs"),
            (7, "the CSR's key must be ECDSA P-256"),
        ] {
            let m = resigned(i).expect_err(says).to_string();
            assert!(m.contains(says), "{i}: {m}");
        }
        assert!(matches!(resigned(6), Err(CaError::CsrIdentity(_))));
        for s in &seeds {
            csr(s);
        }
    }

    /// fuzz/regressions/csr/curve-oid-changed: the sample key's point under
    /// another curve OID is another key; its refusal for the signature is
    /// right, and the invariant (first written on the point alone) holds.
    #[test]
    fn a_request_naming_the_point_under_another_curve_is_refused_for_its_signature() {
        let input = include_bytes!("../../fuzz/regressions/csr/curve-oid-changed");
        let m = check_client_csr_der(
            &signed_request(&input[1..], SampleKey::P256),
            &expected(CLIENT_ID),
        )
        .expect_err("another curve")
        .to_string();
        assert!(m.contains("signature does not verify"), "{m}");
        csr(input);
    }

    /// fuzz/regressions/csr/trailing-bytes-after-request-info: bytes after
    /// the info are signed here but the verifier checks the info alone.
    #[test]
    fn trailing_bytes_after_the_request_info_are_refused_for_the_signature() {
        let input = include_bytes!("../../fuzz/regressions/csr/trailing-bytes-after-request-info");
        assert!(check_client_csr_der(
            &signed_request(&input[1..], SampleKey::P256),
            &expected(CLIENT_ID)
        )
        .is_err());
        csr(input);
    }

    #[test]
    #[should_panic(expected = "a request signed by the key it names refused")]
    fn the_signature_invariant_fails_on_a_refused_genuine_signature() {
        let seeds = csr_seeds();
        assert_signature_holds(
            &seeds[CSRS.len()][1..],
            SampleKey::P256,
            "the CSR's signature does not verify; refused",
        );
    }

    #[test]
    #[should_panic(expected = "an accepted request asks for a CA")]
    fn the_invariant_fails_for_a_ca_request() {
        let seeds = csr_seeds();
        check_accepted(
            &signed_request(&seeds[CSRS.len() + 4][1..], SampleKey::P256),
            &expected(CLIENT_ID),
        );
    }

    #[test]
    #[should_panic(expected = "an accepted request names another identity")]
    fn the_invariant_fails_for_another_identity() {
        check_accepted(fixture("client.csr.der"), &expected("other"));
    }
}
