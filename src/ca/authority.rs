//! A loaded CA (`ca.crt`, `ca.key`, `ca.toml` in its directory) and the
//! parameters of every certificate it signs: subject, validity within its
//! own, a fresh serial, usages, and a client's one SPIFFE URI SAN. Every
//! operation starts from a [`Ca`]; this file knows none of them.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::{file_err, CaError};
use super::validity::{check_days, BACKDATE, MAX_LEAF_DAYS};
use crate::identity::{client_spiffe_id, ClientId};
use crate::keys::read_private;

/// The CA key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaAlgorithm {
    /// ECDSA P-256 with SHA-256: the default, accepted by every TLS stack.
    EcdsaP256,
    /// Ed25519: smaller, but still refused by several TLS stacks and HSMs.
    Ed25519,
}

/// `<dir>/ca.toml`: what later commands need to know about the CA.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaMeta {
    pub(super) trust_domain: String,
    pub(super) algorithm: CaAlgorithm,
}

/// A loaded CA, ready to sign.
pub struct Ca {
    /// The CA directory (`ca.crt`, `ca.key`, `ca.toml`, revocation state).
    pub dir: PathBuf,
    /// The SPIFFE trust domain of the client certificates it issues.
    pub trust_domain: String,
    cert_pem: String,
    key: KeyPair,
    not_after: OffsetDateTime,
}

/// `<dir>/ca.crt`: the CA certificate that clients and the gateway trust.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

/// A random positive 16-byte serial, for the CA's own certificate and
/// every leaf.
pub(super) fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, so the DER length is fixed
    SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// Loads the CA in `dir` (ca.crt, ca.key, ca.toml).
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let meta_path = dir.join("ca.toml");
        if let Err(e) = std::fs::metadata(&meta_path) {
            return Err(file_err(
                &meta_path,
                format!("cannot read ({e}); run `sealgate ca init` first"),
            ));
        }
        let key_path = dir.join("ca.key");
        let key_bytes = read_private(&key_path)?;
        let key_text =
            std::str::from_utf8(&key_bytes).map_err(|_| file_err(&key_path, "not a PEM key"))?;
        Ca::load_with_key(dir, key_text, &key_path.display().to_string())
    }

    /// Loads the CA in `dir` with its private key given as PEM (from the
    /// secrets source; `source` names it in errors, never the key). The key
    /// must be the one `ca.crt` certifies.
    pub fn load_with_key(dir: &Path, key_pem: &str, source: &str) -> Result<Ca, CaError> {
        let meta_path = dir.join("ca.toml");
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| {
            file_err(
                &meta_path,
                format!("cannot read ({e}); run `sealgate ca init` first"),
            )
        })?;
        let meta: CaMeta = toml::from_str(&meta_text).map_err(|e| file_err(&meta_path, e))?;
        let cert_path = ca_cert_path(dir);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| CaError::Invalid(format!("{source}: not a valid PEM private key")))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| file_err(&cert_path, "not a PEM certificate"))?;
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|_| file_err(&cert_path, "not a valid certificate"))?;
        let not_after = parsed.validity().not_after.to_datetime();
        {
            use rcgen::PublicKeyData as _;
            if key.subject_public_key_info() != parsed.public_key().raw {
                return Err(CaError::Invalid(format!(
                    "{source}: this key is not the key of {}",
                    cert_path.display()
                )));
            }
        }
        Ok(Ca {
            dir: dir.to_path_buf(),
            trust_domain: meta.trust_domain,
            cert_pem,
            key,
            not_after,
        })
    }

    /// The CA as rcgen's issuer of a certificate or CRL.
    pub(super) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    /// The parameters every leaf shares: `cn` as subject, `days` of
    /// validity (within the CA's own), a fresh serial, digitalSignature.
    pub(super) fn leaf_params(&self, days: u32, cn: String) -> Result<CertificateParams, CaError> {
        check_days(days, MAX_LEAF_DAYS, "certificate")?;
        let now = OffsetDateTime::now_utc();
        let not_after = now + Duration::days(i64::from(days));
        if not_after > self.not_after {
            return Err(CaError::Invalid(format!(
                "a {days}-day certificate would outlive the CA (valid until {}); pass a shorter --days",
                self.not_after
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Ok(params)
    }

    /// Signs `params` with a fresh P-256 key; returns (cert PEM, key PEM).
    pub fn sign(
        &self,
        params: &CertificateParams,
    ) -> Result<(String, zeroize::Zeroizing<String>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
    }

    /// The parameters of a client certificate for `id`: exactly one URI SAN
    /// `spiffe://<trust-domain>/client/<id>`, EKU clientAuth, the CA's
    /// validity rules and a fresh serial.
    pub(super) fn client_params(
        &self,
        id: &ClientId,
        days: u32,
    ) -> Result<CertificateParams, CaError> {
        let mut params = self.leaf_params(days, format!("sealgate client {id}"))?;
        let uri = rcgen::string::Ia5String::try_from(client_spiffe_id(&self.trust_domain, id))
            .map_err(|e| CaError::Invalid(format!("SPIFFE ID: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Result<Vec<u8>, CaError> {
        rustls_pki_types::pem::PemObject::from_pem_slice(self.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| CaError::Invalid("the CA certificate is not PEM".into()))
    }
}

/// Test-only and tooling access: issue a client certificate with explicit
/// validity (used to produce expired certificates in tests).
pub fn client_params_with_validity(
    ca: &Ca,
    id: &ClientId,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = ca.leaf_params(1, format!("sealgate client {id}"))?;
    params.not_before = not_before;
    params.not_after = not_after;
    let uri = rcgen::string::Ia5String::try_from(client_spiffe_id(&ca.trust_domain, id))
        .map_err(|e| CaError::Invalid(e.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}
