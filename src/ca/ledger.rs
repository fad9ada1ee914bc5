//! `issued.toml`, the CA's ledger: one record appended per certificate
//! issued and per signing key registered (public data only), read back by
//! `ca list`.

use std::path::PathBuf;

use rcgen::CertificateParams;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::authority::Ca;
use super::error::{file_err, CaError};
use super::validity::{rfc3339, whole_seconds};
use crate::identity::ClientId;
use crate::keys::write_public;

impl Ca {
    pub(super) fn index_path(&self) -> PathBuf {
        self.dir.join("issued.toml")
    }

    /// Starts an empty index: a new CA's, never a previous CA's.
    pub(super) fn start_index(&self) -> Result<(), CaError> {
        write_public(&self.index_path(), INDEX_HEADER.as_bytes(), true)?;
        Ok(())
    }

    /// Every record of the index, in the order appended; none when there
    /// is no index yet.
    pub(super) fn read_index(&self) -> Result<IssuedIndex, CaError> {
        let path = self.index_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_err(&path, e)),
        };
        toml::from_str(&text).map_err(|e| file_err(&path, e))
    }

    /// Appends one issued certificate to `issued.toml`, the CA's index
    /// (what `ca list` reads). Public data only.
    pub(super) fn record_issued(
        &self,
        params: &CertificateParams,
        kind: CertKind,
        name: &str,
    ) -> Result<(), CaError> {
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.as_ref()))
            .ok_or_else(|| CaError::Invalid("certificate without a serial".into()))?;
        self.append_index(IssuedCert {
            serial,
            kind,
            name: name.to_string(),
            issued_at: rfc3339(whole_seconds(OffsetDateTime::now_utc()))?,
            not_after: rfc3339(whole_seconds(params.not_after))?,
        })
    }

    /// Records a signing key registered for `client` (by `register-key`,
    /// `issue-client` or the enrollment service), or a new end for one
    /// (a renewal caps the key it replaced): `ca list` shows the latest.
    pub fn record_key(
        &self,
        client: &ClientId,
        key_id: &str,
        not_after_unix_ms: i64,
    ) -> Result<(), CaError> {
        let not_after =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(not_after_unix_ms) * 1_000_000)
                .map_err(|_| CaError::Invalid("key not_after out of range".into()))?;
        self.append_index(IssuedCert {
            serial: key_id.to_string(),
            kind: CertKind::Key,
            name: client.as_str().to_string(),
            issued_at: rfc3339(whole_seconds(OffsetDateTime::now_utc()))?,
            not_after: rfc3339(whole_seconds(not_after))?,
        })
    }

    fn append_index(&self, entry: IssuedCert) -> Result<(), CaError> {
        use std::io::Write as _;
        let text = toml::to_string(&IssuedIndex { cert: vec![entry] })
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let path = self.index_path();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                // One write in append mode: entries appended together by
                // the enrollment service and the CLI never interleave.
                f.write_all(format!("\n{text}").as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| file_err(&path, format!("cannot append: {e}")))
    }
}

/// The first lines of `issued.toml`.
const INDEX_HEADER: &str =
    "# Certificates this CA issued, appended by sealgate on each issue (read by `sealgate ca list`).\n";

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// A gateway (or backend) server certificate, EKU serverAuth.
    Server,
    /// A client certificate, EKU clientAuth.
    Client,
    /// A client's Ed25519 signing key (its `serial` is the key id).
    Key,
}

/// `issued.toml`: one `[[cert]]` per issued certificate.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuedIndex {
    #[serde(default)]
    pub(super) cert: Vec<IssuedCert>,
}

/// One record of `issued.toml`: a certificate (its serial) or a signing
/// key (its key id), whose it is, and when it ends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuedCert {
    pub(super) serial: String,
    pub(super) kind: CertKind,
    pub(super) name: String,
    pub(super) issued_at: String,
    pub(super) not_after: String,
}
