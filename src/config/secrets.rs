//! `[secrets]` and `[secrets.openbao]`: where secret references are
//! resolved, how often, and how the gateway logs in to OpenBao/Vault.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// Where secret references are resolved.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Re-resolve every secret this often (also on SIGHUP).
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// The OpenBao/Vault server; required as soon as one `openbao://`
    /// reference is used.
    #[serde(default)]
    pub openbao: Option<OpenBaoSection>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            refresh_secs: default_refresh(),
            openbao: None,
        }
    }
}

fn default_refresh() -> u64 {
    300
}

/// `[secrets.openbao]`: the OpenBao/Vault server and how to log in.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoSection {
    /// The server's URL: https://, or plain http:// on loopback only.
    pub address: String,
    /// CA certificate of the server (PEM); required for https.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Sent as `X-Vault-Namespace` when set.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `token` or `approle`.
    pub auth: String,
    /// For `token`: a file: or env: reference to the token.
    #[serde(default)]
    pub token: Option<String>,
    /// For `approle`: a file: or env: reference to the role id.
    #[serde(default)]
    pub role_id: Option<String>,
    /// For `approle`: a file: or env: reference to the secret id.
    #[serde(default)]
    pub secret_id: Option<String>,
    /// For `approle`: the auth mount; `approle` when absent.
    #[serde(default)]
    pub approle_mount: Option<String>,
}

impl SecretsConfig {
    /// Checks the section, OpenBao's credential references included.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.refresh_secs == 0 {
            return Err("field secrets.refresh_secs: must be at least 1".into());
        }
        if let Some(ob) = &self.openbao {
            ob.config()?;
        }
        Ok(())
    }
}

impl OpenBaoSection {
    /// The OpenBao settings with validated credential references.
    pub fn config(&self) -> Result<crate::secrets::OpenBaoConfig, String> {
        use crate::secrets::{OpenBaoAuth, OpenBaoConfig};
        let ob = self;
        let r = |field: &str, v: &Option<String>| -> Result<SecretRef, String> {
            let v = v.as_deref().ok_or_else(|| {
                format!(
                    "field secrets.openbao.{field}: required for auth = {:?}",
                    ob.auth
                )
            })?;
            let r =
                SecretRef::parse(v).map_err(|e| format!("field secrets.openbao.{field}: {e}"))?;
            if matches!(r, SecretRef::OpenBao { .. }) {
                return Err(format!(
                    "field secrets.openbao.{field}: must be a file: or env: reference"
                ));
            }
            Ok(r)
        };
        let auth = match ob.auth.as_str() {
            "token" => OpenBaoAuth::Token {
                token: r("token", &ob.token)?,
            },
            "approle" => OpenBaoAuth::Approle {
                role_id: r("role_id", &ob.role_id)?,
                secret_id: r("secret_id", &ob.secret_id)?,
                mount: ob.approle_mount.clone().unwrap_or_else(|| "approle".into()),
            },
            other => {
                return Err(format!(
                    "field secrets.openbao.auth: {other:?} is not token or approle"
                ))
            }
        };
        Ok(OpenBaoConfig {
            address: ob.address.clone(),
            ca: ob.ca.clone(),
            auth,
            namespace: ob.namespace.clone(),
        })
    }
}
