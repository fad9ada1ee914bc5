//! The x509-limbo subset in tests/vectors/x509-limbo/cases.json.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde::Deserialize;

use super::{gateway_verifier, verify};

#[derive(Deserialize)]
struct Limbo {
    testcases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    expected_result: String,
    trusted_certs: Vec<String>,
    untrusted_intermediates: Vec<String>,
    peer_certificate: String,
    validation_time: Option<String>,
    #[serde(default)]
    crls: Vec<String>,
}

/// Cases limbo expects to pass that sealgate refuses, with why: rules
/// stricter than RFC 5280 path validation, for client certificates.
const STRICTER: &[(&str, &str)] = &[
    (
        "crl::issuer-no-keyusage-extension",
        "the case's own leaf has serverAuth only",
    ),
    (
        "crl::issuer-valid-crlsign-and-keycertsign",
        "the case's own leaf has serverAuth only",
    ),
    (
        "rfc5280::eku::ee-without-eku",
        "ClientAuthOnly: a client certificate must name clientAuth",
    ),
    (
        "rfc5280::ca-as-leaf",
        "webpki: a CA certificate is never an end entity",
    ),
    (
        "pathlen::validation-ignores-pathlen-in-leaf",
        "webpki: a CA certificate is never an end entity",
    ),
    (
        "pathlen::self-issued-certs-pathlen",
        "webpki builds no path through self-issued intermediates",
    ),
    (
        "rfc5280::nc::permitted-self-issued",
        "webpki builds no path through self-issued intermediates",
    ),
    (
        "rfc5280::nc::permitted-dn-match",
        "webpki does not evaluate directoryName constraints: refused",
    ),
    (
        "rfc5280::nc::nc-permits-email-exact",
        "webpki does not evaluate rfc822Name constraints: refused",
    ),
    (
        "rfc5280::nc::nc-permits-email-domain",
        "webpki does not evaluate rfc822Name constraints: refused",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match",
        "webpki does not evaluate rfc822Name constraints: refused",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-double-asterisk",
        "webpki does not evaluate rfc822Name constraints: refused",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-mid-asterisk",
        "webpki does not evaluate rfc822Name constraints: refused",
    ),
];

/// Cases limbo expects to fail whose chain the client verifier accepts,
/// with why none of them lets a client in that our CA did not issue for:
/// the trust anchor is the operator's own client CA (RFC 5280 6.1.1 (d):
/// a name and a key, not a certificate whose fields are checked; only its
/// dates are, by `ClientAuthOnly`, so limbo's expired-root is refused), and
/// every leaf that chains to it was issued by `sealgate ca`, which never
/// makes these shapes. A leaf key the TLS provider cannot use fails the
/// handshake's CertificateVerify, after this check.
const LENIENT: &[(&str, &str)] = &[
    (
        "rfc5280::eku::ee-wrong-eku",
        "limbo requires serverAuth; a clientAuth-only leaf is exactly a client certificate",
    ),
    (
        "rfc5280::unknown-critical-extension-root",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::root-missing-basic-constraints",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::root-non-critical-basic-constraints",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::root-inconsistent-ca-extensions",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::ca-empty-subject",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::ski::root-missing-ski",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::aki::root-with-aki-missing-keyidentifier",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::aki::root-with-aki-authoritycertissuer",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::aki::root-with-aki-authoritycertserialnumber",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::aki::root-with-aki-all-fields",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::aki::root-with-aki-ski-mismatch",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::eku::root-has-eku",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "webpki::forbidden-rsa-not-divisible-by-8-in-root",
        "anchor fields unchecked (6.1.1 (d))",
    ),
    (
        "rfc5280::aki::critical-aki",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::aki::leaf-missing-aki",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::aki::intermediate-missing-aki",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::aki::cross-signed-root-missing-aki",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::ski::critical-ski",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::ski::intermediate-missing-ski",
        "webpki builds paths by name and signature, not AKI/SKI",
    ),
    (
        "rfc5280::serial::too-long",
        "webpki does not police serial encodings (sealgate ca issues 20-byte positive ones)",
    ),
    (
        "rfc5280::serial::zero",
        "webpki does not police serial encodings (sealgate ca issues 20-byte positive ones)",
    ),
    (
        "rfc5280::leaf-ku-keycertsign",
        "a leaf's keyCertSign is unused: it can still sign nothing webpki would chain",
    ),
    (
        "rfc5280::pc::ica-noncritical-pc",
        "policy constraints are not processed (no policies are used)",
    ),
    ("webpki::malformed-aia", "AIA is not read (no fetching)"),
    (
        "rfc5280::nc::permitted-dns-match-noncritical",
        "name constraints need an intermediate CA; sealgate ca issues none",
    ),
    (
        "rfc5280::nc::invalid-dnsname-leading-period",
        "name constraints need an intermediate CA; sealgate ca issues none",
    ),
    (
        "rfc5280::nc::not-allowed-in-ee-noncritical",
        "name constraints in a leaf are ignored; sealgate ca never writes them",
    ),
    (
        "rfc5280::nc::not-allowed-in-ee-critical",
        "name constraints in a leaf are ignored; sealgate ca never writes them",
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        "name constraints need an intermediate CA; sealgate ca issues none",
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        "name constraints need an intermediate CA; sealgate ca issues none",
    ),
    (
        "webpki::forbidden-p192-leaf",
        "leaf key unusable: CertificateVerify fails in the handshake",
    ),
    (
        "webpki::forbidden-dsa-leaf",
        "leaf key unusable: CertificateVerify fails in the handshake",
    ),
    (
        "webpki::forbidden-weak-rsa-in-leaf",
        "leaf key unusable: CertificateVerify fails in the handshake (RSA < 2048)",
    ),
    (
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        "leaf key unusable: CertificateVerify fails in the handshake",
    ),
];

fn certs(pems: &[String]) -> Vec<CertificateDer<'static>> {
    pems.iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).expect("limbo PEM"))
        .collect()
}

fn at(validation_time: Option<&str>) -> UnixTime {
    match validation_time {
        None => UnixTime::now(),
        Some(t) => {
            let ms = sealgate::identity::parse_rfc3339_ms(t).expect("limbo validation_time");
            UnixTime::since_unix_epoch(std::time::Duration::from_millis(ms as u64))
        }
    }
}

/// sealgate's verdict on one case: `Ok` or why it was refused.
fn run(case: &Case) -> Result<(), String> {
    let crls = case
        .crls
        .iter()
        .map(|p| CertificateRevocationListDer::from_pem_slice(p.as_bytes()).expect("limbo CRL"))
        .collect();
    let verifier = gateway_verifier(&certs(&case.trusted_certs), crls)?;
    let leaf = CertificateDer::from_pem_slice(case.peer_certificate.as_bytes())
        .map_err(|e| format!("leaf PEM: {e}"))?;
    let at = at(case.validation_time.as_deref());
    verify(
        verifier.as_ref(),
        &leaf,
        &certs(&case.untrusted_intermediates),
        at,
    )
    .map_err(|e| format!("{e:?}"))
}

fn cases() -> Vec<Case> {
    let path = std::env::var("LIMBO_JSON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/x509-limbo/cases.json"
        )
        .to_string()
    });
    let text = std::fs::read_to_string(&path).expect("limbo cases");
    serde_json::from_str::<Limbo>(&text)
        .expect("limbo JSON")
        .testcases
}

/// Every case's verdict against limbo's, as two sets of ids: limbo
/// "SUCCESS" refused, limbo "FAILURE" accepted.
fn differences(
    cases: &[Case],
    run: impl Fn(&Case) -> Result<(), String>,
) -> (Vec<String>, Vec<String>) {
    let (mut refused, mut accepted) = (Vec::new(), Vec::new());
    for case in cases {
        let got = run(case);
        println!(
            "{} limbo={} sealgate={got:?}",
            case.id, case.expected_result
        );
        match (case.expected_result.as_str(), got) {
            ("SUCCESS", Err(_)) => refused.push(case.id.clone()),
            ("FAILURE", Ok(())) => accepted.push(case.id.clone()),
            _ => {}
        }
    }
    (refused, accepted)
}

fn ids(table: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<String> = table.iter().map(|(id, _)| id.to_string()).collect();
    v.sort();
    v
}

#[test]
fn every_limbo_case_is_refused_or_accepted_as_documented() {
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let (mut refused, mut accepted) = differences(&cases, run);
    refused.sort();
    accepted.sort();
    assert_eq!(
        refused,
        ids(STRICTER),
        "limbo SUCCESS cases sealgate refuses"
    );
    assert_eq!(
        accepted,
        ids(LENIENT),
        "limbo FAILURE cases sealgate accepts"
    );
}

/// An accepted limbo chain still names no client: its leaf has no SPIFFE
/// URI of ours, so identity extraction refuses it.
#[test]
fn no_accepted_limbo_leaf_is_a_sealgate_client() {
    for case in cases() {
        if run(&case).is_ok() {
            let leaf =
                CertificateDer::from_pem_slice(case.peer_certificate.as_bytes()).expect("PEM");
            let got = sealgate::identity::identity_from_cert(&leaf, "sealgate.test");
            assert!(got.is_err(), "{}: {got:?}", case.id);
        }
    }
}

/// The comparison can fail: a verifier that accepts everything accepts
/// every limbo FAILURE case, far more than the documented ones.
#[test]
fn the_limbo_check_catches_a_lax_verifier() {
    let cases = cases();
    let (_, accepted) = differences(&cases, |_| Ok(()));
    assert!(
        accepted.len() > ids(LENIENT).len() + 30,
        "{}",
        accepted.len()
    );
}
