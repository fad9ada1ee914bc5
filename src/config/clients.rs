//! `[registry]` and `[enrollment]`: where the known clients are listed, and
//! the enrollment service that issues new ones their credentials.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[registry]`: where the client registry is.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The client registry (TOML).
    pub path: PathBuf,
    /// The keys the enrollment service registered (written by it; see
    /// [`crate::identity::enrolled`]), merged into the registry. The
    /// gateway re-reads it when it changes. Required with `[enrollment]`.
    #[serde(default)]
    pub enrolled_keys: Option<PathBuf>,
}

/// `[enrollment]`: the enrollment service (`EnrollmentService` of
/// enrollment.proto) on its own TLS 1.3 listener, issuing certificates with
/// the CA's key from the secrets source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Where the enrollment listener listens, e.g. `127.0.0.1:7444`. Never
    /// the gateway's own port: a client without a certificate may connect
    /// here (to Enroll with a token).
    pub listen: SocketAddr,
    /// The CA directory (`ca.crt`, `ca.toml`, the issued index, the
    /// enrollment tokens, the revocation list).
    pub ca_dir: PathBuf,
    /// The CA's private key: a secret reference (`openbao://…#field`,
    /// `file:…`, `env:…`); default `file:<ca_dir>/ca.key`.
    #[serde(default)]
    pub ca_key: Option<String>,
    /// Lifetime of the certificates it issues, in days (default 30).
    #[serde(default = "default_enroll_cert_days")]
    pub cert_days: u32,
    /// Lifetime of the signing keys it registers, in days (default 30).
    #[serde(default = "default_enroll_key_days")]
    pub key_days: u32,
    /// How long a renewed client's previous signing key keeps working, in
    /// seconds (default 3600), so calls in flight and other processes of
    /// the client can switch over.
    #[serde(default = "default_key_overlap_secs")]
    pub key_overlap_secs: u64,
    /// Enrollment and renewal requests accepted per minute from one source
    /// address (default 30).
    #[serde(default = "default_enroll_per_minute")]
    pub max_requests_per_minute: u32,
}

fn default_enroll_cert_days() -> u32 {
    30
}
fn default_enroll_key_days() -> u32 {
    30
}
fn default_key_overlap_secs() -> u64 {
    3600
}
fn default_enroll_per_minute() -> u32 {
    30
}

impl EnrollmentConfig {
    /// The CA key as a secret reference.
    pub fn ca_key_ref(&self) -> Result<SecretRef, String> {
        match &self.ca_key {
            Some(k) => SecretRef::parse(k).map_err(|e| format!("field enrollment.ca_key: {e}")),
            None => Ok(SecretRef::File(self.ca_dir.join("ca.key"))),
        }
    }

    /// Checks the section; `listen` is the gateway's mTLS port, and
    /// `enrolled_keys` whether `[registry]` names the file the service
    /// registers keys in.
    pub(super) fn validate(&self, listen: SocketAddr, enrolled_keys: bool) -> Result<(), String> {
        let e = self;
        e.ca_key_ref()?;
        if !enrolled_keys {
            return Err("field registry.enrolled_keys: required with [enrollment] (the file the enrollment service registers keys in)".into());
        }
        if e.listen == listen {
            return Err(
                "field enrollment.listen: must differ from listen (the gateway's mTLS port)".into(),
            );
        }
        for (name, v) in [
            ("enrollment.cert_days", u64::from(e.cert_days)),
            ("enrollment.key_days", u64::from(e.key_days)),
            (
                "enrollment.max_requests_per_minute",
                u64::from(e.max_requests_per_minute),
            ),
        ] {
            if v == 0 {
                return Err(format!("field {name}: must be at least 1"));
            }
        }
        Ok(())
    }
}
