//! `[tls]`: the gateway's certificate and key, the client CA and its CRLs.

use std::path::PathBuf;

use serde::Deserialize;

/// `[tls]`: the gateway's certificate and key, and the CA that issues
/// client certificates.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM, PKCS#8); must not be group/world readable.
    pub key: PathBuf,
    /// The CA that issues client certificates (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM) from that CA.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// How long a CRL past its next update is still used, in seconds
    /// (default 86400, at most 30 days). Within it, every load (start,
    /// reload) logs a warning naming the file and how long ago it expired;
    /// beyond it, every client certificate of that CA is refused at the
    /// handshake (alert `unknown_ca`) until `sealgate ca crl` re-issues the
    /// CRL and the gateway reloads. A CRL without a next update is treated
    /// as never expiring, with a warning. `0` refuses as soon as a CRL is
    /// past its next update.
    #[serde(default = "default_crl_grace_secs")]
    pub crl_grace_secs: u64,
    /// Refuse clients that cannot do the hybrid post-quantum key exchange
    /// X25519MLKEM768 (default false: it is preferred whenever a client
    /// supports it, and classical groups remain for the others).
    #[serde(default)]
    pub require_post_quantum: bool,
}

impl TlsConfig {
    /// The files and policy a server listener is built from.
    pub fn server_files(&self) -> crate::tls::ServerTlsFiles<'_, PathBuf> {
        crate::tls::ServerTlsFiles {
            cert: &self.cert,
            key: &self.key,
            client_ca: &self.client_ca,
            crls: &self.crls,
            crl_grace: std::time::Duration::from_secs(self.crl_grace_secs),
            require_post_quantum: self.require_post_quantum,
        }
    }
}

fn default_crl_grace_secs() -> u64 {
    86_400
}

impl TlsConfig {
    /// Checks the `[tls]` values that parse but make no sense.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.crl_grace_secs > 30 * 86_400 {
            return Err("field tls.crl_grace_secs: at most 2592000 (30 days)".into());
        }
        Ok(())
    }
}
