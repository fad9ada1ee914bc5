//! The whole config file ([`Config`]): its top-level fields, which table
//! each section is read into, and what the gateway asks of the file as a
//! whole (every secret reference, the registry, the audience).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::audit::AuditConfig;
use crate::identity::{RateLimitFile, RegistryDefaults};
use crate::policy::PolicyFields;
use crate::policy::SanitizePolicy;
use crate::secrets::SecretRef;

use super::backends::{BackendConfig, Pinning};
use super::clients::{EnrollmentConfig, RegistryConfig};
use super::envelope::EnvelopeConfig;
use super::expiry::ExpiryConfig;
use super::sandbox::SandboxSection;
use super::secrets::{OpenBaoSection, SecretsConfig};
use super::signing::SigningConfig;
use super::state::StateConfig;
use super::telemetry::{MetricsConfig, TracesConfig};
use super::tls::TlsConfig;
use super::transport::TransportConfig;

/// The whole gateway config file, as [`Config::load`] returns it: paths
/// absolute, values validated.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// `[tls]`: the server certificate and key, and whom client
    /// certificates must come from.
    pub tls: TlsConfig,
    /// `[signing]`: the key that signs every response.
    pub signing: SigningConfig,
    /// `[registry]`: where the known clients and their keys are listed.
    pub registry: RegistryConfig,
    /// `[envelope]`: freshness, size and replay-cache limits.
    #[serde(default)]
    pub envelope: EnvelopeConfig,
    /// The rate limit of clients whose registry entry sets none (default
    /// 50 per second, burst 100).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimitFile,
    /// `[transport]`: connection, HTTP/2 and timeout limits.
    #[serde(default)]
    pub transport: TransportConfig,
    /// `[audit]`: where audit records go.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The MCP servers behind the gateway; default: one embedded backend.
    #[serde(default = "super::backends::default_backends", rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// `[secrets]`: where secret references are resolved and how often.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Rules for string arguments of every tool call.
    #[serde(default)]
    pub sanitize: SanitizePolicy,
    /// `[results]`: checks and filters on what backends answer.
    #[serde(default)]
    #[schemars(with = "crate::policy::results::ResultsFile")]
    pub results: crate::policy::ResultPolicy,
    /// `[tier.NAME]`: named policies a registry entry can start from.
    #[serde(default, rename = "tier")]
    pub tiers: std::collections::BTreeMap<String, PolicyFields>,
    /// `[anomaly]`: the detectors of unusual behaviour and what they do.
    #[serde(default)]
    pub anomaly: crate::policy::AnomalyConfig,
    /// `[expiry]`: how early expiring credentials are warned about.
    #[serde(default)]
    pub expiry: ExpiryConfig,
    /// `[enrollment]`: the enrollment service; absent: off.
    #[serde(default)]
    pub enrollment: Option<EnrollmentConfig>,
    /// How tool pins are trusted, for every backend that does not say
    /// (`tofu` by default; `strict` in production).
    #[serde(default)]
    pub pinning: Pinning,
    /// `[sandbox]`: settings shared by every sandboxed stdio backend.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// The file this config was loaded from (set by [`Config::load`]): a
    /// backend's sandbox must not reach it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// `[metrics]`: the plain-HTTP listener for Prometheus and
    /// orchestrators' probes; absent: off.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// `[traces]`: OpenTelemetry trace export; absent: off.
    #[serde(default)]
    pub traces: Option<TracesConfig>,
    /// `[state]`: where replay, rate and block state lives: in this process
    /// (default), or in a Redis-protocol store that several replicas share.
    #[serde(default)]
    pub state: StateConfig,
}

fn default_rate_limit() -> RateLimitFile {
    RateLimitFile {
        per_second: 50,
        burst: 100,
    }
}

impl Config {
    /// The OpenBao settings with validated credential references.
    pub fn openbao_config(
        &self,
        ob: &OpenBaoSection,
    ) -> Result<crate::secrets::OpenBaoConfig, String> {
        ob.config()
    }

    /// Every secret reference the config uses: signing key, backends, with
    /// relative file paths resolved against `base`.
    pub fn secret_refs(&self) -> Result<Vec<SecretRef>, String> {
        let mut refs = vec![self.signing.key_ref()?];
        if let Some(e) = &self.enrollment {
            refs.push(e.ca_key_ref()?);
        }
        refs.extend(self.audit_key_ref()?);
        refs.extend(self.state.password_ref()?);
        for b in &self.backends {
            refs.extend(b.secret_refs()?.into_iter().map(|(_, r)| r));
        }
        refs.dedup();
        Ok(refs)
    }

    /// Loads the client registry with the enrolled keys merged, carrying
    /// limiter state over from `previous`; refused if a client's rate limit
    /// does not fit `envelope.replay_capacity_per_client`.
    pub fn load_registry(
        &self,
        previous: Option<&crate::identity::Registry>,
    ) -> Result<crate::identity::Registry, crate::identity::RegistryError> {
        let registry = crate::identity::Registry::load_merged(
            &self.registry.path,
            self.registry.enrolled_keys.as_deref(),
            &self.registry_defaults(),
            previous,
        )?;
        // A client's own rate (its entry's or its tier's) must fit the
        // replay cap as the default rate must (`Config::validate` checks
        // that one).
        for client in registry.clients().filter(|c| c.rate != self.rate_limit) {
            self.check_replay_capacity(
                &format!("the rate_limit of client {:?}", client.id.as_str()),
                client.rate,
            )
            .map_err(|message| crate::identity::RegistryError {
                path: self.registry.path.display().to_string(),
                message,
            })?;
        }
        Ok(registry)
    }

    /// `[audit] signing_key` as a secret reference (`None`: not set).
    pub fn audit_key_ref(&self) -> Result<Option<SecretRef>, String> {
        self.audit
            .signing_key_reference()?
            .map(|r| SecretRef::parse(&r).map_err(|e| format!("field audit.signing_key: {e}")))
            .transpose()
    }

    /// What the client registry falls back on: the default rate and the
    /// tiers.
    pub fn registry_defaults(&self) -> RegistryDefaults {
        RegistryDefaults {
            rate: self.rate_limit,
            tiers: self.tiers.clone(),
        }
    }

    /// The audience request envelopes must carry.
    pub fn audience(&self) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| format!("spiffe://{}/gateway", self.trust_domain))
    }
}
