//! `[expiry]`: how early expiring credentials are warned about.

use serde::Deserialize;

/// `[expiry]`: the gateway warns (log and audit record) when its server
/// certificate, the client CA, a CRL's next update, a registered signing
/// key or a client certificate seen on a connection comes within this
/// horizon of its end.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// The horizon, in days (1 to 365).
    pub warning_days: u32,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        ExpiryConfig { warning_days: 14 }
    }
}

impl ExpiryConfig {
    /// Checks the section.
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(1..=365).contains(&self.warning_days) {
            return Err("field expiry.warning_days: must be 1..=365".into());
        }
        Ok(())
    }
}
