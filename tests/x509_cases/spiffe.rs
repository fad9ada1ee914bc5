//! SPIFFE SAN and path edge cases made with rcgen under a fresh CA: each
//! through the gateway's client verifier and `identity_from_cert`, with
//! the exact verdict of each. docs/ENVELOPE.md section 4 states the rule:
//! a chain to the CA, in validity, EKU clientAuth, and exactly one URI SAN
//! that is byte for byte `spiffe://<trust-domain>/client/<id>`.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::CertificateError;
use sealgate::identity::{identity_from_cert, IdentityError};
use time::{Duration, OffsetDateTime};

use super::{gateway_verifier, verify};

const TD: &str = "sealgate.test";

pub(crate) struct Ca {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

pub(crate) fn ca_with(edit: impl FnOnce(&mut CertificateParams)) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    edit(&mut params);
    let cert = params.self_signed(&key).expect("CA");
    Ca {
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

pub(crate) fn ca() -> Ca {
    ca_with(|_| {})
}

fn uri(s: &str) -> SanType {
    SanType::URI(rcgen::string::Ia5String::try_from(s).expect("IA5"))
}

/// A client leaf of `ca`: clientAuth, the SANs given, valid now, with
/// `edit` applied last.
pub(crate) fn leaf(
    ca: &Ca,
    sans: Vec<SanType>,
    edit: impl FnOnce(&mut CertificateParams),
) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(1);
    edit(&mut params);
    params
        .signed_by(&key, &ca.issuer)
        .expect("leaf")
        .der()
        .to_vec()
}

/// What the gateway makes of `leaf` presented with a chain to `ca`: the
/// verifier's error, or the identity's.
#[derive(Debug, PartialEq)]
enum Verdict {
    Client(String),
    Handshake(CertificateError),
    Identity(IdentityError),
}

fn present(ca: &Ca, leaf: &[u8]) -> Verdict {
    let verifier = gateway_verifier(std::slice::from_ref(&ca.der), Vec::new()).expect("verifier");
    let der = CertificateDer::from(leaf.to_vec());
    if let Err(e) = verify(verifier.as_ref(), &der, &[], UnixTime::now()) {
        let rustls::Error::InvalidCertificate(c) = e else {
            panic!("not a certificate error: {e:?}");
        };
        return Verdict::Handshake(c);
    }
    match identity_from_cert(leaf, TD) {
        Ok(id) => Verdict::Client(id.client_id.as_str().to_string()),
        Err(e) => Verdict::Identity(e),
    }
}

pub(crate) fn carol() -> SanType {
    uri("spiffe://sealgate.test/client/carol")
}

#[test]
fn spiffe_san_edge_cases() {
    let ca = ca();
    let not_ours = Verdict::Identity(IdentityError::NotOurSpiffeId);
    let count = Verdict::Identity(IdentityError::UriSanCount);
    let dns = |s: &str| SanType::DnsName(rcgen::string::Ia5String::try_from(s).expect("IA5"));
    let cases: Vec<(&str, Vec<SanType>, Verdict)> = vec![
        (
            "one SPIFFE URI",
            vec![carol()],
            Verdict::Client("carol".into()),
        ),
        // Another name type beside the URI names nothing sealgate reads.
        (
            "URI and DNS",
            vec![carol(), dns("carol.example")],
            Verdict::Client("carol".into()),
        ),
        (
            "DNS and URI",
            vec![dns("carol.example"), carol()],
            Verdict::Client("carol".into()),
        ),
        ("no SAN at all", vec![], count.clone_verdict()),
        (
            "DNS only",
            vec![dns("carol.example")],
            count.clone_verdict(),
        ),
        (
            "two URIs, the same",
            vec![carol(), carol()],
            count.clone_verdict(),
        ),
        (
            "two URIs, another trust domain second",
            vec![carol(), uri("spiffe://other.test/client/carol")],
            count.clone_verdict(),
        ),
        (
            "two URIs, a non-SPIFFE one first",
            vec![uri("https://carol.example/"), carol()],
            count.clone_verdict(),
        ),
        ("empty URI", vec![uri("")], not_ours.clone_verdict()),
        (
            "query",
            vec![uri("spiffe://sealgate.test/client/carol?admin=1")],
            not_ours.clone_verdict(),
        ),
        (
            "empty query",
            vec![uri("spiffe://sealgate.test/client/carol?")],
            not_ours.clone_verdict(),
        ),
        (
            "fragment",
            vec![uri("spiffe://sealgate.test/client/carol#x")],
            not_ours.clone_verdict(),
        ),
        // Never decoded: "car%6Fl" is not an alias of "carol".
        (
            "percent-encoded id",
            vec![uri("spiffe://sealgate.test/client/car%6Fl")],
            not_ours.clone_verdict(),
        ),
        (
            "percent-encoded slash",
            vec![uri("spiffe://sealgate.test/client%2Fcarol")],
            not_ours.clone_verdict(),
        ),
        (
            "uppercase scheme",
            vec![uri("SPIFFE://sealgate.test/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "mixed-case scheme",
            vec![uri("Spiffe://sealgate.test/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "uppercase trust domain",
            vec![uri("spiffe://SEALGATE.TEST/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "uppercase path",
            vec![uri("spiffe://sealgate.test/CLIENT/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "another trust domain",
            vec![uri("spiffe://other.test/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "a workload path",
            vec![uri("spiffe://sealgate.test/ns/default/sa/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "trailing slash",
            vec![uri("spiffe://sealgate.test/client/carol/")],
            not_ours.clone_verdict(),
        ),
        (
            "extra segment",
            vec![uri("spiffe://sealgate.test/client/carol/admin")],
            not_ours.clone_verdict(),
        ),
        (
            "dot segment",
            vec![uri("spiffe://sealgate.test/client/./carol")],
            not_ours.clone_verdict(),
        ),
        (
            "dot-dot segment",
            vec![uri("spiffe://sealgate.test/client/../client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "empty id",
            vec![uri("spiffe://sealgate.test/client/")],
            not_ours.clone_verdict(),
        ),
        (
            "userinfo",
            vec![uri("spiffe://carol@sealgate.test/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "port",
            vec![uri("spiffe://sealgate.test:443/client/carol")],
            not_ours.clone_verdict(),
        ),
        (
            "id starting with a dot",
            vec![uri("spiffe://sealgate.test/client/.carol")],
            not_ours.clone_verdict(),
        ),
        (
            "id of 65 characters",
            vec![uri(&format!(
                "spiffe://sealgate.test/client/{}",
                "c".repeat(65)
            ))],
            not_ours.clone_verdict(),
        ),
        (
            "space in the id",
            vec![uri("spiffe://sealgate.test/client/car ol")],
            not_ours.clone_verdict(),
        ),
    ];
    for (what, sans, want) in cases {
        assert_eq!(present(&ca, &leaf(&ca, sans, |_| {})), want, "{what}");
    }
}

trait CloneVerdict {
    fn clone_verdict(&self) -> Verdict;
}

impl CloneVerdict for Verdict {
    fn clone_verdict(&self) -> Verdict {
        match self {
            Verdict::Client(s) => Verdict::Client(s.clone()),
            Verdict::Handshake(c) => Verdict::Handshake(c.clone()),
            Verdict::Identity(e) => Verdict::Identity(e.clone()),
        }
    }
}

/// A SAN extension holding a URI that is not IA5 (UTF-8 bytes over 0x7f):
/// rcgen cannot make one, so the extension is written by hand.
#[test]
fn a_non_ascii_uri_san_is_refused() {
    let ca = ca();
    let name = "spiffe://sealgate.test/client/caröl".as_bytes();
    let mut general_name = vec![0x86, name.len() as u8];
    general_name.extend_from_slice(name);
    let mut seq = vec![0x30, general_name.len() as u8];
    seq.extend_from_slice(&general_name);
    let der = leaf(&ca, vec![], |p| {
        p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], seq)];
    });
    let got = present(&ca, &der);
    assert!(
        matches!(
            got,
            Verdict::Identity(IdentityError::Unparseable | IdentityError::NotOurSpiffeId)
                | Verdict::Handshake(_)
        ),
        "{got:?}"
    );
    assert!(!matches!(got, Verdict::Client(_)), "never an identity");
}

/// Path cases the issue names, as a client certificate of ours would meet
/// them: validity of leaf and CA, EKU, a CA certificate as leaf, an
/// unknown critical extension, another CA, name constraints.
#[test]
fn path_cases_for_a_client_certificate() {
    let ca = ca();
    let now = OffsetDateTime::now_utc();
    let expired = leaf(&ca, vec![carol()], |p| {
        p.not_before = now - Duration::days(3);
        p.not_after = now - Duration::days(1);
    });
    let not_yet = leaf(&ca, vec![carol()], |p| {
        p.not_before = now + Duration::days(1);
        p.not_after = now + Duration::days(3);
    });
    let server_eku = leaf(&ca, vec![carol()], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let no_eku = leaf(&ca, vec![carol()], |p| p.extended_key_usages = vec![]);
    let both_eku = leaf(&ca, vec![carol()], |p| {
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    });
    let ca_leaf = leaf(&ca, vec![carol()], |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    let critical = leaf(&ca, vec![carol()], |p| {
        let mut ext =
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
    });
    let non_critical = leaf(&ca, vec![carol()], |p| {
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 55555, 1],
            vec![0x05, 0x00],
        )];
    });
    let purpose = |got: &Verdict| {
        matches!(
            got,
            Verdict::Handshake(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            )
        )
    };
    let got = present(&ca, &expired);
    assert!(
        matches!(
            got,
            Verdict::Handshake(CertificateError::Expired | CertificateError::ExpiredContext { .. })
        ),
        "expired: {got:?}"
    );
    let got = present(&ca, &not_yet);
    assert!(
        matches!(
            got,
            Verdict::Handshake(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            )
        ),
        "not yet valid: {got:?}"
    );
    assert!(purpose(&present(&ca, &server_eku)), "serverAuth only");
    assert!(purpose(&present(&ca, &no_eku)), "no EKU");
    assert_eq!(present(&ca, &both_eku), Verdict::Client("carol".into()));
    let got = present(&ca, &ca_leaf);
    assert!(
        format!("{got:?}").contains("CaUsedAsEndEntity"),
        "CA:TRUE leaf: {got:?}"
    );
    let got = present(&ca, &critical);
    assert!(
        format!("{got:?}").contains("UnsupportedCriticalExtension"),
        "critical unknown extension: {got:?}"
    );
    assert_eq!(present(&ca, &non_critical), Verdict::Client("carol".into()));

    // Another CA's leaf: under another name, no path; under the same name
    // (an impostor CA), the signature does not verify.
    let other = ca_with(|p| {
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
    });
    let got = present(&ca, &leaf(&other, vec![carol()], |_| {}));
    assert_eq!(got, Verdict::Handshake(CertificateError::UnknownIssuer));
    let impostor = ca_with(|_| {});
    let got = present(&ca, &leaf(&impostor, vec![carol()], |_| {}));
    assert_eq!(got, Verdict::Handshake(CertificateError::BadSignature));

    // An expired or not-yet-valid CA certificate: webpki takes a trust
    // anchor as a name and a key (RFC 5280 6.1.1 (d)) and does not check
    // its dates; `ClientAuthOnly` does, so a leaf within its own validity
    // that a CA outside its validity signed is refused (limbo's
    // rfc5280::validity::expired-root likewise). `sealgate ca` never
    // issues a leaf that outlives the CA, so this needs a leaf made
    // elsewhere with the CA's key.
    for (what, nb, na, refused) in [
        (
            "expired CA",
            now - Duration::days(10),
            now - Duration::days(1),
            CertificateError::Expired,
        ),
        (
            "not-yet-valid CA",
            now + Duration::days(1),
            now + Duration::days(10),
            CertificateError::NotValidYet,
        ),
    ] {
        let dated = ca_with(|p| {
            p.not_before = nb;
            p.not_after = na;
        });
        let got = present(&dated, &leaf(&dated, vec![carol()], |_| {}));
        assert_eq!(got, Verdict::Handshake(refused), "{what}");
    }
}
