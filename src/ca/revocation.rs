//! `ca revoke` and `ca crl`: the CA's revocation state (`revoked.toml`) and
//! the signed CRL (`crl.pem`) written from it.

use std::path::{Path, PathBuf};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::authority::Ca;
use super::error::{file_err, CaError};
use super::inspect::{inspect_der, read_cert_der};
use super::validity::{check_days, BACKDATE};
use crate::keys::write_public;

/// `<dir>/revoked.toml`: the CA's revocation state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Revoked {
    crl_number: u64,
    #[serde(default)]
    pub(super) serials: Vec<RevokedSerial>,
}

/// One revoked certificate: its serial (lowercase hex) and when.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokedSerial {
    pub(super) serial: String,
    revoked_at: String,
}

impl Ca {
    /// Whether this CA revoked the certificate with `serial` (lowercase
    /// hex), from its own revocation state: current even before a CRL is
    /// re-read anywhere.
    pub fn is_revoked(&self, serial: &str) -> Result<bool, CaError> {
        Ok(self.revoked()?.serials.iter().any(|r| r.serial == serial))
    }

    /// `ca revoke`: adds a certificate's serial to the CA's revocation list
    /// and rewrites `crl.pem`.
    pub fn revoke(&self, cert_file: &Path, crl_days: u32) -> Result<String, CaError> {
        let info = inspect_der(&read_cert_der(cert_file)?).map_err(|m| file_err(cert_file, m))?;
        let mut revoked = self.revoked()?;
        if !revoked.serials.iter().any(|s| s.serial == info.serial) {
            let now = OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| CaError::Invalid(e.to_string()))?;
            revoked.serials.push(RevokedSerial {
                serial: info.serial.clone(),
                revoked_at: now,
            });
        }
        self.write_crl(revoked, crl_days)?;
        Ok(info.serial)
    }

    /// `ca crl`: re-issues `crl.pem` (CRLs expire; re-issue before next_update).
    pub fn write_crl_now(&self, crl_days: u32) -> Result<PathBuf, CaError> {
        let revoked = self.revoked()?;
        self.write_crl(revoked, crl_days)
    }

    pub(super) fn revoked(&self) -> Result<Revoked, CaError> {
        let path = self.dir.join("revoked.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| file_err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revoked::default()),
            Err(e) => Err(file_err(&path, e)),
        }
    }

    pub(super) fn write_crl(
        &self,
        mut revoked: Revoked,
        crl_days: u32,
    ) -> Result<PathBuf, CaError> {
        check_days(crl_days, 366, "CRL")?;
        revoked.crl_number += 1;
        let now = OffsetDateTime::now_utc();
        let mut certs = Vec::new();
        for s in &revoked.serials {
            let serial = hex::decode(&s.serial).map_err(|_| {
                CaError::Invalid(format!("bad serial {:?} in revoked.toml", s.serial))
            })?;
            let at = OffsetDateTime::parse(
                &s.revoked_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| CaError::Invalid("bad revoked_at in revoked.toml".into()))?;
            certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + Duration::days(i64::from(crl_days)),
            crl_number: SerialNumber::from(revoked.crl_number),
            issuing_distribution_point: None,
            revoked_certs: certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        let path = self.dir.join("crl.pem");
        write_public(&path, crl.pem()?.as_bytes(), true)?;
        let state = toml::to_string(&revoked).map_err(|e| CaError::Invalid(e.to_string()))?;
        write_public(&self.dir.join("revoked.toml"), state.as_bytes(), true)?;
        Ok(path)
    }
}
