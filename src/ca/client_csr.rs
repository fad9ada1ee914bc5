//! `sealgate csr`, `enroll` and `renew` on the client's machine: a new TLS
//! key that never leaves it, and the certificate signing request for it.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::error::CaError;
use crate::identity::{client_spiffe_id, valid_trust_domain, ClientId};
use crate::keys::{write_private, write_public};

/// What `write_client_csr` wrote.
#[derive(Debug, Clone)]
pub struct ClientCsr {
    /// The client's new TLS private key (P-256, PEM, 0600): it stays here.
    pub key: PathBuf,
    /// The certificate signing request (PEM) to hand to the CA.
    pub csr: PathBuf,
    /// The SPIFFE ID it asks for, its only SAN.
    pub spiffe_id: String,
}

/// `sealgate csr` (client side): a new P-256 TLS key `<out>/<id>.key` (0600)
/// and a PKCS#10 request `<out>/<id>.csr` whose only SAN is the URI
/// `spiffe://<trust_domain>/client/<id>`. Refuses to replace either file
/// without `force`.
pub fn write_client_csr(
    out: &Path,
    trust_domain: &str,
    id: &str,
    force: bool,
) -> Result<ClientCsr, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::Invalid(format!(
            "trust domain {trust_domain:?} must be lowercase letters, digits, '.', '-' or '_'"
        )));
    }
    let id = ClientId::parse(id).map_err(|e| CaError::Invalid(format!("client id {id:?}: {e}")))?;
    let spiffe_id = client_spiffe_id(trust_domain, &id);
    let paths = ClientCsr {
        key: out.join(format!("{id}.key")),
        csr: out.join(format!("{id}.csr")),
        spiffe_id: spiffe_id.clone(),
    };
    if !force {
        // Both checked before anything is written, so a refusal leaves no
        // half-made pair behind.
        for p in [&paths.key, &paths.csr] {
            if p.exists() {
                return Err(crate::keys::KeyFileError::Exists {
                    path: p.display().to_string(),
                }
                .into());
            }
        }
    }
    let (key, csr) = client_csr(&id, &spiffe_id)?;
    write_private(&paths.key, key.as_bytes(), force)?;
    write_public(&paths.csr, csr.pem()?.as_bytes(), force)?;
    Ok(paths)
}

/// A new P-256 TLS key (PEM) and a PKCS#10 request for it whose only SAN is
/// the URI `spiffe_id`: what `sealgate csr`, `enroll` and `renew` make on
/// the client's machine.
pub fn client_csr(
    id: &ClientId,
    spiffe_id: &str,
) -> Result<(zeroize::Zeroizing<String>, rcgen::CertificateSigningRequest), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("sealgate client {id}"));
    params.distinguished_name = dn;
    let uri = rcgen::string::Ia5String::try_from(spiffe_id.to_string())
        .map_err(|e| CaError::Invalid(format!("SPIFFE ID: {e}")))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key)?;
    Ok((zeroize::Zeroizing::new(key.serialize_pem()), csr))
}
