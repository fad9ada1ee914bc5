//! Typed gateway configuration, loaded from TOML and validated once.
//!
//! Relative paths are resolved against the directory of the config file.
//! Every error names the file and the field. The config holds paths and
//! references, never secret values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::{valid_trust_domain, RateLimitFile};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen, e.g. `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// The SPIFFE trust domain of client certificates, e.g. `sealgate.local`.
    pub trust_domain: String,
    /// What request envelopes must carry as audience. Default:
    /// `spiffe://<trust_domain>/gateway`.
    #[serde(default)]
    pub audience: Option<String>,
    pub tls: TlsConfig,
    pub signing: SigningConfig,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub envelope: EnvelopeConfig,
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimitFile,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub backend: BackendConfig,
}

#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The gateway's Ed25519 response-signing key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The client registry (TOML).
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeConfig {
    /// Accepted clock skew either side, in seconds.
    pub clock_skew_secs: u64,
    /// Largest accepted request envelope (protobuf-encoded), in bytes.
    pub max_envelope_bytes: usize,
    /// Deepest accepted JSON nesting in a payload.
    pub max_json_depth: usize,
    /// Live nonces remembered per client before it is refused.
    pub replay_capacity_per_client: usize,
}

impl Default for EnvelopeConfig {
    fn default() -> Self {
        EnvelopeConfig {
            clock_skew_secs: 30,
            max_envelope_bytes: 256 * 1024,
            max_json_depth: 32,
            replay_capacity_per_client: 100_000,
        }
    }
}

fn default_rate_limit() -> RateLimitFile {
    RateLimitFile {
        per_second: 50,
        burst: 100,
    }
}

/// Transport limits, all set on purpose rather than left at library defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Open connections at most; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout_secs: u64,
    /// A connection with no request for this long is closed.
    pub idle_timeout_secs: u64,
    /// HTTP/2 PING interval to detect dead peers.
    pub keepalive_interval_secs: u64,
    /// How long to wait for a PING acknowledgement.
    pub keepalive_timeout_secs: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest accepted HTTP/2 header list, in bytes.
    pub max_header_list_size: u32,
    /// A request that takes longer end to end fails with DEADLINE_EXCEEDED.
    pub request_timeout_secs: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_connections: 1024,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_concurrent_streams: 64,
            max_header_list_size: 16 * 1024,
            request_timeout_secs: 60,
        }
    }
}

impl TransportConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit log file (JSON lines, created 0600); `-` or absent: stdout.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// The built-in EP sample backend.
    #[default]
    Embedded,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl Config {
    /// Loads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(err)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.client_ca);
        self.tls.crls.iter_mut().for_each(fix);
        fix(&mut self.signing.key);
        fix(&mut self.registry.path);
        if let Some(p) = self.audit.path.as_mut() {
            if p.as_os_str() != "-" {
                fix(p);
            }
        }
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_trust_domain(&self.trust_domain) {
            return Err(
                "field trust_domain: must be a lowercase DNS-like name, e.g. sealgate.local".into(),
            );
        }
        if let Some(a) = &self.audience {
            if a.is_empty() || a.len() > crate::envelope::MAX_AUDIENCE_LEN {
                return Err("field audience: must be 1-512 bytes".into());
            }
        }
        let e = &self.envelope;
        if !(1..=600).contains(&e.clock_skew_secs) {
            return Err("field envelope.clock_skew_secs: must be 1..=600".into());
        }
        if !(1024..=16 * 1024 * 1024).contains(&e.max_envelope_bytes) {
            return Err("field envelope.max_envelope_bytes: must be 1 KiB..=16 MiB".into());
        }
        if !(2..=128).contains(&e.max_json_depth) {
            return Err("field envelope.max_json_depth: must be 2..=128".into());
        }
        if e.replay_capacity_per_client == 0 {
            return Err("field envelope.replay_capacity_per_client: must be at least 1".into());
        }
        crate::identity::quota(self.rate_limit).map_err(|m| format!("field rate_limit: {m}"))?;
        let t = &self.transport;
        for (name, v) in [
            ("transport.max_connections", t.max_connections as u64),
            ("transport.handshake_timeout_secs", t.handshake_timeout_secs),
            ("transport.idle_timeout_secs", t.idle_timeout_secs),
            (
                "transport.keepalive_interval_secs",
                t.keepalive_interval_secs,
            ),
            ("transport.keepalive_timeout_secs", t.keepalive_timeout_secs),
            (
                "transport.max_concurrent_streams",
                t.max_concurrent_streams as u64,
            ),
            (
                "transport.max_header_list_size",
                t.max_header_list_size as u64,
            ),
            ("transport.request_timeout_secs", t.request_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("field {name}: must be at least 1"));
            }
        }
        Ok(())
    }

    /// The audience request envelopes must carry.
    pub fn audience(&self) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| format!("spiffe://{}/gateway", self.trust_domain))
    }
}
