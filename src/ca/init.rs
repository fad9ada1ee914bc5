//! `ca init`: a new root CA in a directory, with an empty CRL and an empty
//! index from the start.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::authority::{ca_cert_path, random_serial, Ca, CaAlgorithm, CaMeta};
use super::error::CaError;
use super::revocation::Revoked;
use super::validity::{check_days, BACKDATE, DEFAULT_CRL_DAYS, MAX_CA_DAYS};
use crate::identity::valid_trust_domain;
use crate::keys::{write_private, write_public};

/// `ca init`: a new root CA in `dir`.
pub fn init(
    dir: &Path,
    trust_domain: &str,
    algorithm: CaAlgorithm,
    days: u32,
    force: bool,
) -> Result<Ca, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::Invalid(format!(
            "trust domain {trust_domain:?} must be lowercase letters, digits, '.', '-' or '_'"
        )));
    }
    check_days(days, MAX_CA_DAYS, "CA")?;
    let key = match algorithm {
        CaAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        CaAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A random suffix, so two CAs of one trust domain (a re-init, a test
    // CA, a second site) are never confused by subject alone.
    let suffix = {
        use rand::RngCore;
        let mut b = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    dn.push(
        DnType::CommonName,
        format!("sealgate CA {trust_domain} {suffix}"),
    );
    dn.push(DnType::OrganizationName, "sealgate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key)?;
    write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes(), force)?;
    write_public(&ca_cert_path(dir), cert.pem().as_bytes(), force)?;
    let meta = CaMeta {
        trust_domain: trust_domain.to_string(),
        algorithm,
    };
    let meta_toml = toml::to_string(&meta).map_err(|e| CaError::Invalid(e.to_string()))?;
    write_public(&dir.join("ca.toml"), meta_toml.as_bytes(), force)?;
    let ca = Ca::load(dir)?;
    // A new CA starts with an empty CRL and an empty index (never a previous
    // CA's), so a gateway can list `crl.pem` from the start and
    // `ca revoke` + SIGHUP works without editing its config.
    ca.write_crl(Revoked::default(), DEFAULT_CRL_DAYS)?;
    ca.start_index()?;
    Ok(ca)
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use time::OffsetDateTime;

    use super::*;
    use crate::ca::inspect::{inspect_der, read_cert_der};
    use crate::ca::issue::ClientRequest;

    /// A fresh CA (`ca.test`, P-256, a year) for the unit tests of every
    /// operation.
    pub(in crate::ca) fn new_ca(dir: &Path) -> Ca {
        init(dir, "ca.test", CaAlgorithm::EcdsaP256, 365, false).expect("ca init")
    }

    #[test]
    fn two_inits_of_one_trust_domain_have_distinct_subjects() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let subject = |d: &Path| {
            new_ca(d);
            inspect_der(&read_cert_der(&ca_cert_path(d)).expect("read"))
                .expect("inspect")
                .subject
        };
        let (sa, sb) = (subject(a.path()), subject(b.path()));
        assert_ne!(sa, sb);
        for s in [&sa, &sb] {
            let cn = s
                .strip_prefix("CN=sealgate CA ca.test ")
                .and_then(|rest| rest.strip_suffix(", O=sealgate"))
                .unwrap_or_else(|| panic!("unexpected subject {s}"));
            assert_eq!(cn.len(), 8, "{s}");
            assert!(cn.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
        }
    }

    #[test]
    fn init_writes_an_empty_crl_at_once() {
        let d = tempfile::tempdir().expect("tempdir");
        new_ca(d.path());
        let crl = std::fs::read(d.path().join("crl.pem")).expect("crl.pem written by init");
        assert!(crate::tls::revoked_serials(&[d.path().join("crl.pem")])
            .expect("a valid CRL")
            .is_empty());
        assert!(String::from_utf8_lossy(&crl).contains("BEGIN X509 CRL"));
    }

    #[test]
    fn forced_reinit_starts_with_no_revocations_and_no_index() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(d.path());
        let out = d.path().join("out");
        let issued = ca
            .issue_client(&ClientRequest {
                id: "a",
                days: 30,
                tools: &[],
                out_dir: &out,
                gateway: None,
                force: false,
            })
            .expect("issue");
        ca.revoke(&issued.cert, 7).expect("revoke");
        let ca = init(d.path(), "ca.test", CaAlgorithm::EcdsaP256, 365, true).expect("re-init");
        assert!(ca.list(OffsetDateTime::now_utc()).expect("list").is_empty());
        assert!(ca.revoked().expect("revoked").serials.is_empty());
    }
}
