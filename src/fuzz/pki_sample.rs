//! Sample PKI material the certificate, csr and enrollment targets share:
//! certificates and CSRs made once by src/ca (`ca init`, `sealgate csr`,
//! `sign-csr`, `issue-server`) and by rcgen for the shapes sealgate never
//! issues, committed under tests/fixtures/fuzz_pki/ so seeds are the same
//! bytes on every run (ECDSA signatures are randomised). Regenerate with
//! `cargo test --lib fuzz::pki_sample -- --ignored` (sample data only).

/// The sample trust domain (the host of [`super::sample::AUDIENCE`]).
pub const TRUST_DOMAIN: &str = "fuzz.example";
/// The sample client id (the `<id>` of [`super::sample::CLIENT`]).
pub const CLIENT_ID: &str = "sample";

/// One committed fixture: its file name and bytes.
pub type Fixture = (&'static str, &'static [u8]);

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../tests/fixtures/fuzz_pki/", $name)))),*]
    };
}

/// Certificates (DER): the client certificate `sign-csr` issued for
/// [`CLIENT_ID`], the CA's own, a server certificate, and rcgen-made
/// shapes: two URI SANs, another trust domain, a workload path, an
/// uppercase scheme, no EKU, a bad client id.
pub const CERTIFICATES: &[Fixture] = fixtures![
    "client.der",
    "ca.der",
    "server.der",
    "two-uris.der",
    "other-domain.der",
    "workload-path.der",
    "upper-scheme.der",
    "no-eku.der",
    "bad-id.der",
];

/// Certificate requests (DER): what `sealgate csr` makes for
/// [`CLIENT_ID`], and requests it never makes (another identity, another
/// trust domain, a DNS SAN beside the URI, two URIs, a CA request, an
/// Ed25519 key, no SAN).
pub const CSRS: &[Fixture] = fixtures![
    "client.csr.der",
    "other-id.csr.der",
    "other-domain.csr.der",
    "dns-and-uri.csr.der",
    "two-uris.csr.der",
    "ca.csr.der",
    "ed25519.csr.der",
    "no-san.csr.der",
];

/// A fixture's bytes by name (panics on a name not in the lists: a bug of
/// the caller, never input).
pub fn fixture(name: &str) -> &'static [u8] {
    CERTIFICATES
        .iter()
        .chain(CSRS)
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .expect("a committed fixture name")
}

/// The sample keys fuzzed requests are re-signed with (sample data, made
/// once with `openssl genpkey`, used nowhere else): a fuzzer cannot make a
/// request's self-signature, the key's holder can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKey {
    /// ECDSA P-256 (what `sealgate csr` makes), signing with SHA-256.
    P256,
    /// Ed25519 (a key sealgate refuses in a CSR).
    Ed25519,
}

impl SampleKey {
    /// The key pair (parsed once).
    pub fn pair(self) -> &'static rcgen::KeyPair {
        static KEYS: std::sync::OnceLock<[rcgen::KeyPair; 2]> = std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            let p256 = include_bytes!("../../tests/fixtures/fuzz_pki/sample-p256.pk8");
            let ed25519 = include_bytes!("../../tests/fixtures/fuzz_pki/sample-ed25519.pk8");
            [&p256[..], &ed25519[..]]
                .map(|der| rcgen::KeyPair::try_from(der).expect("a committed sample key"))
        });
        &keys[usize::from(self == SampleKey::Ed25519)]
    }

    /// The DER of the AlgorithmIdentifier of this key's signatures.
    fn algorithm(self) -> &'static [u8] {
        match self {
            // ecdsa-with-SHA256 (RFC 5758), no parameters.
            SampleKey::P256 => &[
                0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
            ],
            // id-Ed25519 (RFC 8410).
            SampleKey::Ed25519 => &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70],
        }
    }
}

/// A PKCS#10 request (DER) of `cri` (a certificationRequestInfo, taken as
/// is) signed by `key`: `SEQUENCE { cri, algorithm, BIT STRING signature }`.
pub fn signed_request(cri: &[u8], key: SampleKey) -> Vec<u8> {
    use rcgen::SigningKey as _;
    let signature = key.pair().sign(cri).expect("the sample key signs");
    let bits = der(0x03, &[&[0u8][..], &signature].concat());
    der(0x30, &[cri, key.algorithm(), &bits].concat())
}

/// The certificationRequestInfo of a request made by rcgen with `key` for
/// `params` (seeds of the re-signing modes).
pub fn request_info(params: &rcgen::CertificateParams, key: SampleKey) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let csr = params.serialize_request(key.pair()).expect("a request");
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr.der())
            .expect("rcgen's request parses");
    parsed.certification_request_info.raw.to_vec()
}

/// One DER TLV (definite length).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    };

    use super::*;
    use crate::ca::{client_csr, init, read_cert_der, CaAlgorithm};
    use crate::identity::{client_spiffe_id, ClientId};

    fn uri(s: &str) -> SanType {
        SanType::URI(rcgen::string::Ia5String::try_from(s.to_string()).expect("ia5"))
    }

    fn self_signed(sans: Vec<SanType>, eku: bool) -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        if eku {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    fn request(sans: Vec<SanType>, ca: bool, alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p.serialize_request(&key).expect("csr").der().to_vec()
    }

    /// Writes tests/fixtures/fuzz_pki/ (run by hand; the seeds change).
    #[test]
    #[ignore = "regenerates the committed fixtures"]
    fn write_fixtures() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz_pki");
        std::fs::create_dir_all(&out).expect("fixture dir");
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).expect("write");
        let d = tempfile::tempdir().expect("tempdir");
        let ca = init(
            &d.path().join("ca"),
            TRUST_DOMAIN,
            CaAlgorithm::EcdsaP256,
            3650,
            false,
        )
        .expect("ca init");
        let id = ClientId::parse(CLIENT_ID).expect("id");
        let spiffe = client_spiffe_id(TRUST_DOMAIN, &id);
        let (_key, csr) = client_csr(&id, &spiffe).expect("csr");
        write("client.csr.der", csr.der());
        let (cert, _) = ca.sign_csr_der(csr.der(), &id, 398).expect("sign");
        write("client.der", &cert);
        write("ca.der", &ca.cert_der().expect("ca der"));
        let (crt, key) = (d.path().join("s.crt"), d.path().join("s.key"));
        ca.issue_server(&["gw.fuzz.example".into()], 30, &crt, &key, false)
            .expect("server");
        write("server.der", &read_cert_der(&crt).expect("server der"));
        let client = |td: &str, path: &str| uri(&format!("spiffe://{td}/{path}"));
        write(
            "two-uris.der",
            &self_signed(
                vec![
                    client(TRUST_DOMAIN, "client/sample"),
                    client(TRUST_DOMAIN, "client/admin"),
                ],
                true,
            ),
        );
        write(
            "other-domain.der",
            &self_signed(vec![client("other.example", "client/sample")], true),
        );
        write(
            "workload-path.der",
            &self_signed(vec![client(TRUST_DOMAIN, "workload/sample")], true),
        );
        write(
            "upper-scheme.der",
            &self_signed(vec![uri("SPIFFE://fuzz.example/client/sample")], true),
        );
        write(
            "no-eku.der",
            &self_signed(vec![client(TRUST_DOMAIN, "client/sample")], false),
        );
        write(
            "bad-id.der",
            &self_signed(vec![client(TRUST_DOMAIN, "client/-bad%2Fid")], true),
        );
        let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
        write(
            "other-id.csr.der",
            &request(vec![client(TRUST_DOMAIN, "client/admin")], false, p256),
        );
        write(
            "other-domain.csr.der",
            &request(vec![client("other.example", "client/sample")], false, p256),
        );
        write(
            "dns-and-uri.csr.der",
            &request(
                vec![
                    client(TRUST_DOMAIN, "client/sample"),
                    SanType::DnsName("gw.fuzz.example".try_into().expect("dns")),
                ],
                false,
                p256,
            ),
        );
        write(
            "two-uris.csr.der",
            &request(
                vec![
                    client(TRUST_DOMAIN, "client/sample"),
                    client(TRUST_DOMAIN, "client/admin"),
                ],
                false,
                p256,
            ),
        );
        write(
            "ca.csr.der",
            &request(vec![client(TRUST_DOMAIN, "client/sample")], true, p256),
        );
        write(
            "ed25519.csr.der",
            &request(
                vec![client(TRUST_DOMAIN, "client/sample")],
                false,
                &rcgen::PKCS_ED25519,
            ),
        );
        write("no-san.csr.der", &request(vec![], false, p256));
    }
}
