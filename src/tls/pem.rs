//! Reading PEM files: certificates, private keys (refusing group- or
//! world-readable ones), CRLs, and a CA file as a root store.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::keys::read_private;

use super::error::TlsError;

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_pem(path, "certificate", "valid certificate")
}

/// Reads every item of one kind `T` from a PEM file (other kinds are
/// skipped). A malformed item is a [`TlsError::Pem`] naming `valid_what`, a
/// file without any naming `what`.
pub(super) fn load_pem<T: PemObject>(
    path: &Path,
    what: &'static str,
    valid_what: &'static str,
) -> Result<Vec<T>, TlsError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: p.clone(),
        source,
    })?;
    let items: Vec<T> = T::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: p.clone(),
            what: valid_what,
        })?;
    if items.is_empty() {
        return Err(TlsError::Pem { path: p, what });
    }
    Ok(items)
}

/// Reads a PEM private key, refusing group/world-readable files.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_private(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Pem {
        path: path.display().to_string(),
        what: "private key",
    })
}

/// Reads every CRL of every file; each file must hold at least one.
pub(super) fn load_crls(
    paths: &[impl AsRef<Path>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        crls.extend(load_pem(path.as_ref(), "CRL", "valid CRL")?);
    }
    Ok(crls)
}

/// The certificates of a CA file as a root store.
pub(super) fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| {
            TlsError::Config(format!("{}: unusable CA certificate: {e}", ca.display()))
        })?;
    }
    Ok(roots)
}
