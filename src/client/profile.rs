//! The client profile file: where the gateway is, which credentials to
//! use, and which gateway keys to trust.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ClientError;
use crate::tlog::VerifierKey;

/// A client profile file: where the gateway is and which credentials to
/// use. Relative paths are resolved against the profile's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `host:port` of the gateway.
    pub endpoint: String,
    /// The DNS name (or IP) in the gateway's server certificate.
    pub server_name: String,
    /// CA certificate that issued the gateway's server certificate (PEM).
    pub ca: PathBuf,
    /// This client's certificate (PEM).
    pub cert: PathBuf,
    /// This client's TLS private key (PEM, 0600).
    pub key: PathBuf,
    /// This client's Ed25519 signing key (PKCS#8 PEM, 0600).
    pub signing_key: PathBuf,
    /// The id under which the signing key is registered at the gateway.
    pub key_id: String,
    /// The gateway's audience, e.g. `spiffe://sealgate.local/gateway`.
    pub audience: String,
    /// This client's SPIFFE ID: the audience of the gateway's responses.
    pub spiffe_id: String,
    /// Gateway response-signing keys this client trusts.
    #[serde(rename = "gateway_key", default)]
    pub gateway_keys: Vec<GatewayKey>,
    /// Accepted skew of response timestamps, seconds (default 30).
    #[serde(default)]
    pub clock_skew_secs: Option<u64>,
    /// `host:port` of the enrollment service, for `sealgate renew`.
    #[serde(default)]
    pub enrollment: Option<String>,
    /// The gateway's audit log key, to verify receipts (`sealgate call
    /// --receipt`): its vkey text (`<origin>+<key id>+<base64>`), or a file
    /// holding it (`sealgate dev` writes `audit.vkey`).
    #[serde(default)]
    pub audit_vkey: Option<String>,
}

/// A trusted gateway signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKey {
    /// The id the gateway puts in the envelopes this key signs.
    pub key_id: String,
    /// The Ed25519 public key, standard base64 of the raw 32 bytes.
    pub public_key: String,
}

impl Profile {
    /// Reads a profile, resolves its paths against the profile's directory
    /// and refuses one that trusts no gateway key.
    pub fn load(path: &Path) -> Result<Profile, ClientError> {
        let err = |m: String| ClientError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        Profile::from_text(path, &text)
    }

    /// [`Profile::load`] of `text`, the contents of the file at `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Profile, ClientError> {
        let err = |m: String| ClientError::Config(format!("{}: {m}", path.display()));
        let mut p: Profile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in [&mut p.ca, &mut p.cert, &mut p.key, &mut p.signing_key] {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if let Some(v) = &mut p.audit_vkey {
            if VerifierKey::parse(v.trim()).is_err() && Path::new(v.as_str()).is_relative() {
                *v = base.join(v.as_str()).display().to_string();
            }
        }
        if p.gateway_keys.is_empty() {
            return Err(err(
                "no [[gateway_key]]: responses could not be verified".into()
            ));
        }
        Ok(p)
    }
}

/// A note verifier key given as its vkey text, or as a file holding it.
pub fn load_vkey(value: &str) -> Result<VerifierKey, ClientError> {
    if let Ok(key) = VerifierKey::parse(value.trim()) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(value).map_err(|e| {
        ClientError::Config(format!("key {value}: not a vkey, nor a readable file: {e}"))
    })?;
    VerifierKey::parse(text.trim()).map_err(|e| ClientError::Config(format!("key {value}: {e}")))
}

impl Profile {
    /// The audit log key of `audit_vkey`, if set.
    pub fn audit_log_key(&self) -> Result<Option<VerifierKey>, ClientError> {
        self.audit_vkey.as_deref().map(load_vkey).transpose()
    }
}
