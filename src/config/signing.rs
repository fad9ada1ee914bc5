//! `[signing]`: where the response-signing key comes from.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[signing]`: where the response-signing key comes from.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The gateway's Ed25519 response-signing key (PKCS#8 PEM): a path to a
    /// 0600 file, or a secret reference (`openbao://…#field`, `file:…`, `env:…`).
    pub key: String,
}

impl SigningConfig {
    /// The key as a secret reference (a plain path is a `file:` reference).
    pub fn key_ref(&self) -> Result<SecretRef, String> {
        if self.key.contains("://") || self.key.starts_with("env:") || self.key.starts_with("file:")
        {
            SecretRef::parse(&self.key).map_err(|e| format!("field signing.key: {e}"))
        } else if self.key.contains("PRIVATE KEY") || self.key.contains('\n') {
            Err("field signing.key: holds a literal key; give a path or a secret reference".into())
        } else {
            Ok(SecretRef::File(PathBuf::from(&self.key)))
        }
    }
}
