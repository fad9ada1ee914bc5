//! `ca inspect`: what a certificate says (subject, issuer, serial,
//! validity, SANs, usages, fingerprint), read from a PEM or DER file.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::error::{file_err, CaError};

/// Reads the first certificate of a PEM (or raw DER) file.
pub fn read_cert_der(path: &Path) -> Result<Vec<u8>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    match rustls_pki_types::pem::PemObject::from_pem_slice(&bytes) {
        Ok(c) => {
            let c: rustls_pki_types::CertificateDer<'static> = c;
            Ok(c.to_vec())
        }
        Err(_) => Ok(bytes),
    }
}

/// What `ca inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=sealgate client demo`.
    pub subject: String,
    /// Issuer distinguished name, e.g. `CN=sealgate CA sealgate.local, O=sealgate`.
    pub issuer: String,
    /// Serial number, lowercase hex (as CRLs and the identity use it).
    pub serial: String,
    /// Start of validity, as x509-parser prints it.
    pub not_before: String,
    /// End of validity, as x509-parser prints it.
    pub not_after: String,
    /// Subject alternative names, `DNS:…`, `URI:…` or `IP:…`.
    pub sans: Vec<String>,
    /// `serverAuth` and/or `clientAuth`; other purposes are not listed.
    pub extended_key_usage: Vec<String>,
    /// Whether the certificate is a CA (basic constraints).
    pub is_ca: bool,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256_fingerprint: String,
}

/// Parses a certificate for `ca inspect`.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| "not a valid X.509 certificate".to_string())?;
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            sans.push(match n {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => format!("IP:{}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(ip);
                        format!("IP:{}", std::net::Ipv6Addr::from(a))
                    }
                    _ => "IP:?".into(),
                },
                other => format!("{other:?}"),
            });
        }
    }
    let mut eku = Vec::new();
    if let Ok(Some(e)) = cert.extended_key_usage() {
        if e.value.server_auth {
            eku.push("serverAuth".into());
        }
        if e.value.client_auth {
            eku.push("clientAuth".into());
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        sans,
        extended_key_usage: eku,
        is_ca: cert.is_ca(),
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
    })
}
