//! Typed gateway configuration, loaded from TOML and validated once.
//!
//! This module owns the config file's schema, the defaults, the resolution
//! of relative paths (against the directory of the config file) and the
//! checks of values that parse but make no sense. Every error names the
//! file and the field. The config holds paths and references, never secret
//! values: it never resolves a secret, never reads the environment, and
//! never echoes a value that could be a secret in an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::{valid_trust_domain, RateLimitFile, RegistryDefaults};
use crate::policy::PolicyFields;
use crate::policy::SanitizePolicy;
use crate::secrets::SecretRef;

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
    #[serde(default = "default_backends", rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// `[secrets]`: where secret references are resolved and how often.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Rules for string arguments of every tool call.
    #[serde(default)]
    pub sanitize: SanitizePolicy,
    /// `[results]`: checks and filters on what backends answer.
    #[serde(default)]
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

/// How a backend's tool pins are trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pinning {
    /// Trust on first use: a backend without a pin file has its first
    /// listing pinned and written by the gateway; the pin file is re-read
    /// at every re-listing.
    #[default]
    Tofu,
    /// Production: pin files are written only by `sealgate tools accept`;
    /// a backend without one serves no tool; pins are read at start and on
    /// SIGHUP only, never at a re-listing the backend itself triggers.
    Strict,
}

/// `[sandbox]`: shared by every sandboxed stdio backend.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// The `sealgate` executable that applies a backend's sandbox
    /// (`sealgate sandbox-exec`). Default: the running `sealgate` itself;
    /// needed only when the gateway runs inside another program (tests).
    #[serde(default)]
    pub helper: Option<PathBuf>,
}

/// How a stdio backend's sandbox layers are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Every layer the kernel supports; those it lacks are logged.
    #[default]
    BestEffort,
    /// Every layer must be in force, or the backend does not start.
    Required,
    /// No sandbox: only the user and group switch and the process group.
    Off,
}

/// `egress` of a stdio backend: `"none"` (default), `"any"`, or a list of
/// `"tcp:<port>"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "EgressFile")]
pub struct EgressSetting(pub crate::sandbox::Egress);

/// `egress` is described by what the file may hold: a word or a list.
impl schemars::JsonSchema for EgressSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EgressSetting".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <EgressFile as schemars::JsonSchema>::json_schema(generator)
    }
}

impl Default for EgressSetting {
    fn default() -> Self {
        EgressSetting(crate::sandbox::Egress::None)
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum EgressFile {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<EgressFile> for EgressSetting {
    type Error = String;
    fn try_from(f: EgressFile) -> Result<Self, String> {
        use crate::sandbox::Egress;
        let expected = "field egress: expected \"none\", \"any\", or a list like [\"data.europarl.europa.eu:443\"] or [\"tcp:443\"]";
        match f {
            EgressFile::Word(w) if w == "none" => Ok(EgressSetting(Egress::None)),
            EgressFile::Word(w) if w == "any" => Ok(EgressSetting(Egress::Any)),
            EgressFile::Word(_) => Err(expected.into()),
            EgressFile::List(items) => {
                let mut ports = Vec::new();
                let mut hosts = Vec::new();
                for item in &items {
                    let port_entry = item
                        .get(..4)
                        .filter(|p| p.eq_ignore_ascii_case("tcp:"))
                        .and_then(|_| item.get(4..));
                    if let Some(port) = port_entry {
                        let port =
                            port.parse::<u16>()
                                .ok()
                                .filter(|p| *p != 0)
                                .ok_or_else(|| {
                                    format!("{expected}; {item:?} is not tcp:<port 1-65535>")
                                })?;
                        ports.push(port);
                    } else {
                        hosts.push(
                            crate::sandbox::HostPort::parse(item)
                                .map_err(|e| format!("{expected}; {e}"))?,
                        );
                    }
                }
                if !ports.is_empty() && !hosts.is_empty() {
                    return Err(format!(
                        "{expected}; it mixes tcp:<port> (any host) with host:port entries: use one kind"
                    ));
                }
                ports.sort_unstable();
                ports.dedup();
                hosts.sort();
                hosts.dedup();
                let distinct = hosts
                    .iter()
                    .map(|h| h.host.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                if distinct > crate::sandbox::MAX_EGRESS_HOSTS {
                    return Err(format!(
                        "{expected}; {distinct} host names, at most {} are allowed",
                        crate::sandbox::MAX_EGRESS_HOSTS
                    ));
                }
                if !hosts.is_empty() {
                    return Ok(EgressSetting(Egress::Hosts(hosts)));
                }
                if ports.is_empty() {
                    return Ok(EgressSetting(Egress::None));
                }
                Ok(EgressSetting(Egress::TcpPorts(ports)))
            }
        }
    }
}

/// `[metrics]`: `/metrics` (Prometheus text), `/healthz` and `/readyz` on a
/// plain-HTTP listener of their own, never on the mTLS port. It serves
/// figures only (no payload, argument, key or client certificate, and
/// client ids only with `client_labels`), yet it is unauthenticated:
/// loopback unless `allow_remote` says otherwise.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to listen, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// A non-loopback `listen` must be asked for explicitly (a pod's
    /// Prometheus and kubelet probes reach it on the pod address).
    #[serde(default)]
    pub allow_remote: bool,
    /// The most registry client ids that get a `client` label value of
    /// their own in `sealgate_client_requests_total`, first come first
    /// served for the life of the process; later ones are counted as
    /// `client="_other"`. 0 (the default): no per-client family at all,
    /// and no client id on the listener. At most [`MAX_CLIENT_LABELS`].
    #[serde(default)]
    pub client_labels: u32,
}

/// The largest `[metrics] client_labels`: each labelled client adds a
/// time series per outcome and reason it meets.
pub const MAX_CLIENT_LABELS: u32 = 1000;

/// `[traces]`: one span per request with a child per stage and per backend
/// call (names and outcomes, never argument values), exported over
/// OTLP/gRPC.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`
    /// (`https://` verifies the collector against the system roots).
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The fraction of requests traced, 0.0 to 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl MetricsConfig {
    fn validate(&self, config: &Config) -> Result<(), String> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "field metrics.listen: {} is not a loopback address; the listener is unauthenticated, so set metrics.allow_remote = true to serve it there on purpose",
                self.listen
            ));
        }
        let clash = std::iter::once(("listen", config.listen)).chain(
            config
                .enrollment
                .as_ref()
                .map(|e| ("enrollment.listen", e.listen)),
        );
        for (field, addr) in clash {
            if addr == self.listen && addr.port() != 0 {
                return Err(format!("field metrics.listen: must differ from {field}"));
            }
        }
        if self.client_labels > MAX_CLIENT_LABELS {
            return Err(format!(
                "field metrics.client_labels: {} is more than {MAX_CLIENT_LABELS}; each labelled client adds a time series per outcome and reason, so keep the cap to the clients worth watching one by one",
                self.client_labels
            ));
        }
        Ok(())
    }
}

impl TracesConfig {
    fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.otlp_endpoint)
            .map_err(|e| format!("field traces.otlp_endpoint: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(
                "field traces.otlp_endpoint: must be http://HOST:PORT or https://HOST:PORT".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("field traces.sample_ratio: must be 0.0..=1.0".into());
        }
        if self.service_name.is_empty() {
            return Err("field traces.service_name: must not be empty".into());
        }
        Ok(())
    }
}

fn default_service_name() -> String {
    "sealgate".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

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

fn default_backends() -> Vec<BackendConfig> {
    vec![BackendConfig::Embedded {
        name: default_embedded_name(),
        prefix: String::new(),
    }]
}

fn default_embedded_name() -> String {
    "embedded".into()
}

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

/// One backend. Secret-bearing fields are strings here and become
/// [`SecretRef`]s in [`Config::validate`], so that a literal secret is
/// refused with an error that names its key and never echoes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start into a short list; boxing would only complicate matching"
)]
pub enum BackendConfig {
    /// The built-in EP sample backend.
    Embedded {
        /// Unique backend name (1-64 of `[A-Za-z0-9._-]`); `embedded` by
        /// default.
        #[serde(default = "default_embedded_name")]
        name: String,
        /// Prepended to every tool name this backend offers; empty by default.
        #[serde(default)]
        prefix: String,
    },
    /// An MCP server child process over stdio.
    Stdio {
        /// Unique backend name (1-64 of `[A-Za-z0-9._-]`), used in logs,
        /// audit records and the default pin file.
        name: String,
        /// Prepended to every tool name this backend offers; empty by default.
        #[serde(default)]
        prefix: String,
        /// How long one call may take, in seconds (default 30, at least 1).
        #[serde(default = "default_backend_timeout")]
        timeout_secs: u64,
        /// How long the child may take to answer `initialize`, in seconds
        /// (default 20).
        #[serde(default = "default_init_timeout")]
        init_timeout_secs: u64,
        /// Pin file; default `pins/<name>.toml` beside the config.
        #[serde(default)]
        pins: Option<PathBuf>,
        /// The program to start.
        command: String,
        /// Its arguments, visible to every local user in `ps`: never put a
        /// secret here (use `secret_env`).
        #[serde(default)]
        args: Vec<String>,
        /// Its working directory; the gateway's own when absent.
        #[serde(default)]
        cwd: Option<PathBuf>,
        /// Non-secret environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Environment variables from the secrets source (references only).
        #[serde(default)]
        secret_env: BTreeMap<String, String>,
        /// Variables passed through from the gateway's environment.
        #[serde(default = "default_inherit")]
        inherit_env: Vec<String>,
        /// The account the child runs as. Unset: the gateway's own, except
        /// that a gateway running as root refuses to start the child until
        /// an account is named (`"root"` to run it as root knowingly).
        #[serde(default)]
        user: Option<String>,
        /// Its group; default: the user's primary group.
        #[serde(default)]
        group: Option<String>,
        /// `best-effort` (default), `required` or `off`.
        #[serde(default)]
        sandbox: SandboxMode,
        /// The one directory the child may write (also its `TMPDIR`);
        /// default: a fresh private directory under the system temp
        /// directory, removed when the backend stops.
        #[serde(default)]
        scratch: Option<PathBuf>,
        /// Directories or files the child may read and execute besides the
        /// system paths, its command and its `cwd`: its install directory.
        #[serde(default)]
        read_paths: Vec<PathBuf>,
        /// Network access: `"none"` (default), `"any"`, host names
        /// (`["data.europarl.europa.eu:443"]`, through the gateway's relay) or
        /// ports (`["tcp:443"]`).
        #[serde(default)]
        egress: EgressSetting,
        /// With egress by host name: the relay may connect to addresses
        /// that are not public (private, loopback, link-local, …) that a
        /// name resolves to. Off by default: whoever answers for the name
        /// cannot point the relay at internal services. Set it for a host
        /// that is internal.
        #[serde(default)]
        egress_private: bool,
        /// `[backend.limits]`: memory, processes, open files, CPU time.
        #[serde(default)]
        limits: crate::sandbox::Limits,
        /// Overrides the top-level `pinning` for this backend.
        #[serde(default)]
        pinning: Option<Pinning>,
    },
    /// An MCP server over Streamable HTTP.
    Http {
        /// Unique backend name (1-64 of `[A-Za-z0-9._-]`), used in logs,
        /// audit records and the default pin file.
        name: String,
        /// Prepended to every tool name this backend offers; empty by default.
        #[serde(default)]
        prefix: String,
        /// How long one call may take, in seconds (default 30, at least 1).
        #[serde(default = "default_backend_timeout")]
        timeout_secs: u64,
        /// Pin file; default `pins/<name>.toml` beside the config.
        #[serde(default)]
        pins: Option<PathBuf>,
        /// The MCP endpoint: https://, or plain http:// on loopback only.
        url: String,
        /// CA of the backend's certificate (required for https).
        #[serde(default)]
        ca: Option<PathBuf>,
        /// Reference to the bearer credential.
        #[serde(default)]
        bearer_token: Option<String>,
        /// Re-list the tools this often, in seconds (default 300; 0: only
        /// on a new session): a stateless server can change a tool's
        /// definition without any session ending, and a changed tool is
        /// refused from the next listing on.
        #[serde(default = "default_relist")]
        relist_secs: u64,
        /// Overrides the top-level `pinning` for this backend.
        #[serde(default)]
        pinning: Option<Pinning>,
    },
}

fn default_relist() -> u64 {
    300
}

fn default_backend_timeout() -> u64 {
    30
}

fn default_init_timeout() -> u64 {
    20
}

fn default_inherit() -> Vec<String> {
    vec!["PATH".into()]
}

/// Environment variable names that hold credentials by convention: a plain
/// `env` entry with such a name is refused as a likely literal secret.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

impl BackendConfig {
    /// The backend's name, whatever its kind.
    pub fn name(&self) -> &str {
        match self {
            BackendConfig::Embedded { name, .. }
            | BackendConfig::Stdio { name, .. }
            | BackendConfig::Http { name, .. } => name,
        }
    }

    /// How often its tools are re-listed on a schedule (HTTP backends;
    /// a stdio child is re-listed at every restart and list_changed).
    pub fn relist_every(&self) -> Option<std::time::Duration> {
        match self {
            BackendConfig::Http { relist_secs, .. } if *relist_secs > 0 => {
                Some(std::time::Duration::from_secs(*relist_secs))
            }
            _ => None,
        }
    }

    /// How this backend's pins are trusted, given the top-level default.
    pub fn pinning(&self, default: Pinning) -> Pinning {
        match self {
            BackendConfig::Embedded { .. } => default,
            BackendConfig::Stdio { pinning, .. } | BackendConfig::Http { pinning, .. } => {
                pinning.unwrap_or(default)
            }
        }
    }

    /// Every secret reference this backend uses, validated.
    pub fn secret_refs(&self) -> Result<Vec<(String, SecretRef)>, String> {
        let name = self.name();
        let parse = |key: String, v: &str| {
            SecretRef::parse(v)
                .map(|r| (key.clone(), r))
                .map_err(|e| format!("backend {name:?} field {key}: {e}"))
        };
        match self {
            BackendConfig::Embedded { .. } => Ok(Vec::new()),
            BackendConfig::Stdio { secret_env, .. } => secret_env
                .iter()
                .map(|(k, v)| parse(format!("secret_env.{k}"), v))
                .collect(),
            BackendConfig::Http { bearer_token, .. } => bearer_token
                .iter()
                .map(|v| parse("bearer_token".into(), v))
                .collect(),
        }
    }
}

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
    fn validate(&self) -> Result<(), String> {
        if self.crl_grace_secs > 30 * 86_400 {
            return Err("field tls.crl_grace_secs: at most 2592000 (30 days)".into());
        }
        Ok(())
    }
}

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
}

/// `[envelope]`: limits on request envelopes and the replay cache.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Established (authenticated) connections at most; a handshake that
    /// completes while they are all taken is closed.
    pub max_connections: usize,
    /// TLS handshakes in progress at once, from all sources: silent or slow
    /// sockets can hold at most this many slots, never an established
    /// client's.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source address; more
    /// are closed at accept.
    pub max_handshakes_per_source: usize,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout_secs: u64,
    /// Open connections of one identity at most, unless its tier or registry
    /// entry says otherwise; a further handshake of it is closed.
    pub max_connections_per_identity: usize,
    /// A connection older than this is closed as soon as no request is in
    /// flight, and `request_timeout_secs` later regardless, so no client
    /// holds a slot forever.
    pub max_connection_age_secs: u64,
    /// Requests refused for identity (unknown, disabled, revoked, expired,
    /// invalid) one connection may make without any request passing
    /// identity; then the connection is closed.
    pub max_identity_denials_per_connection: u32,
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
    /// On SIGTERM or SIGINT, how long calls in flight may take to finish
    /// (no new connection is accepted meanwhile); calls still running then
    /// are cut off (recorded as `cancelled`).
    pub shutdown_deadline_secs: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_connections: 1024,
            max_handshakes: 128,
            max_handshakes_per_source: 16,
            handshake_timeout_secs: 5,
            max_connections_per_identity: 64,
            max_connection_age_secs: 3_600,
            max_identity_denials_per_connection: 8,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            max_concurrent_streams: 64,
            max_header_list_size: 16 * 1024,
            request_timeout_secs: 60,
            shutdown_deadline_secs: 30,
        }
    }
}

impl TransportConfig {
    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// [`Self::shutdown_deadline_secs`] as a duration.
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown_deadline_secs)
    }

    /// [`Self::max_connection_age_secs`] as a duration.
    pub fn max_connection_age(&self) -> Duration {
        Duration::from_secs(self.max_connection_age_secs)
    }
}

/// `[audit]`: sinks, delivery and checkpoints; defined beside the audit
/// trail that reads it.
pub use crate::audit::AuditConfig;

// ---------------------------------------------------------------------------
// `[state]`: where replay, rate and block state lives (src/state/ uses it).

/// Where the state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// In this process only (one gateway): the default.
    #[default]
    Local,
    /// A Redis-protocol store (Redis 7, Valkey 8) shared by every replica.
    Redis,
}

/// What a replica does while the store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "StateOnFailure")]
pub enum OnFailure {
    /// Refuse calls (`STATE_UNAVAILABLE`) until the store answers again.
    #[default]
    FailClosed,
    /// Serve with this replica's own state (replay cache, limiter, blocks),
    /// said in the log, the audit trail and the metrics, until the store
    /// answers again.
    Local,
}

/// `[state]`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `local` (default) or `redis`.
    #[serde(default)]
    pub kind: StateKind,
    /// `redis://HOST:PORT/DB` or `rediss://HOST:PORT/DB` (TLS 1.3); no
    /// password in it (see `password`).
    #[serde(default)]
    pub url: Option<String>,
    /// A secret reference (`file:…`, `env:…`, `openbao://…#field`) to the
    /// store's password; never a literal.
    #[serde(default)]
    pub password: Option<String>,
    /// The CA of the store's certificate (PEM); required with `rediss://`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `fail_closed` (default) or `local`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The budget of one store round trip, in ms (default 50): past it the
    /// store counts as unreachable for this call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Prefix of every key sealgate writes (default `sealgate:`), so that
    /// several gateways (or other users) can share one store.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// The operator's word that the store keeps what it acknowledged across
    /// restarts (`appendonly yes` with `appendfsync always`): a store then
    /// found without an epoch is a new deployment, used at once. Default
    /// `false`: a replica that finds no epoch takes the store as emptied
    /// and refuses envelopes for one skew window (docs/OPERATIONS.md).
    #[serde(default)]
    pub persistent: bool,
}

fn default_timeout_ms() -> u64 {
    50
}

fn default_prefix() -> String {
    "sealgate:".into()
}

/// Where the store is, from a validated `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port (6379 by default).
    pub port: u16,
    /// The logical database.
    pub db: i64,
    /// `rediss://`: TLS 1.3 with `ca`.
    pub tls: bool,
    /// An ACL user name, if the URL names one.
    pub username: Option<String>,
}

impl StateConfig {
    /// Whether a shared store is configured.
    pub fn shared(&self) -> bool {
        self.kind == StateKind::Redis
    }

    /// The round-trip budget.
    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The password's secret reference, if any.
    pub fn password_ref(&self) -> Result<Option<SecretRef>, String> {
        self.password
            .as_deref()
            .map(|p| SecretRef::parse(p).map_err(|e| format!("field state.password: {e}")))
            .transpose()
    }

    /// Parses `url`; errors name the field and never echo the URL (it
    /// could hold a password by mistake).
    pub fn address(&self) -> Result<StoreAddress, String> {
        let raw = self
            .url
            .as_deref()
            .ok_or("field state.url: required with kind = \"redis\"")?;
        let url = url::Url::parse(raw).map_err(|_| {
            "field state.url: not a URL; expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
                .to_string()
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err("field state.url: the scheme must be redis:// or rediss://".into()),
        };
        if url.password().is_some() {
            return Err("field state.url: holds a password; give it as state.password, a secret reference (file:, env: or openbao://)".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("field state.url: names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=1_000_000).contains(d))
                .ok_or("field state.url: the path must be a database number, e.g. /0")?,
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err("field state.url: takes no query or fragment".into());
        }
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        Ok(StoreAddress {
            host,
            port: url.port().unwrap_or(6379),
            db,
            tls,
            username,
        })
    }

    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if !self.shared() {
            let set = [
                ("url", self.url.is_some()),
                ("password", self.password.is_some()),
                ("ca", self.ca.is_some()),
                ("persistent", self.persistent),
            ];
            if let Some((field, _)) = set.iter().find(|(_, s)| *s) {
                return Err(format!(
                    "field state.{field}: only with kind = \"redis\" (kind is \"local\")"
                ));
            }
            return Ok(());
        }
        let address = self.address()?;
        if address.tls && self.ca.is_none() {
            return Err(
                "field state.ca: required with rediss:// (the CA of the store's certificate)"
                    .into(),
            );
        }
        if !address.tls && self.ca.is_some() {
            return Err("field state.ca: only with rediss://".into());
        }
        if !address.tls && self.password.is_some() && !is_loopback(&address.host) {
            return Err("field state.url: a password is sent only over rediss:// (plain redis:// only on loopback)".into());
        }
        self.password_ref()?;
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err("field state.timeout_ms: must be 1..=10000".into());
        }
        let p = &self.key_prefix;
        if p.is_empty()
            || p.len() > 64
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b))
        {
            return Err("field state.key_prefix: 1-64 characters of [A-Za-z0-9:._-]".into());
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A TOML error as "line L, column C: message", without the source
/// snippet toml would quote: that line could hold a secret.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}: {}", redact_quoted(e.message()))
        }
        None => redact_quoted(e.message()),
    }
}

/// toml quotes an offending *value* between backticks ("invalid type:
/// integer `1234`, expected a string"): replace it, since the value may be a
/// secret. Field names (in "unknown field `x`") are kept: they are not.
fn redact_quoted(message: &str) -> String {
    if !message.starts_with("invalid") {
        return message.to_string();
    }
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "`…`" } else { part })
        .collect()
}

/// The JSON Schema (draft 2020-12) of the whole config file, derived from
/// the types serde reads it into: every field it accepts, with its doc
/// comment as description; a table that refuses unknown fields says so with
/// `additionalProperties: false`. Value checks that need code (ranges,
/// references, paths) are [`Config::validate`]'s and are not in it.
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(Config).to_value()
}

/// Why the config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The config file, as given.
    pub path: String,
    /// What is wrong, naming the field (or TOML line and column); never
    /// echoes a value that could be a secret.
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
        let mut config: Config = toml::from_str(&text).map_err(|e| err(toml_error(&text, &e)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(err)?;
        config.source = Some(path.to_path_buf());
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
        if let Ok(SecretRef::File(p)) = self.signing.key_ref() {
            if p.is_relative() {
                self.signing.key = base.join(p).display().to_string();
            }
        }
        fix(&mut self.registry.path);
        if let Some(p) = self.registry.enrolled_keys.as_mut() {
            fix(p);
        }
        // `file:` references in secret-bearing strings are relative to the
        // config file too.
        let fix_ref = |v: &mut String| {
            if let Some(path) = v.strip_prefix("file:") {
                if Path::new(path).is_relative() && !path.is_empty() {
                    *v = format!("file:{}", base.join(path).display());
                }
            }
        };
        if let Some(e) = self.enrollment.as_mut() {
            fix(&mut e.ca_dir);
            e.ca_key.iter_mut().for_each(fix_ref);
        }
        if let Some(ob) = self.secrets.openbao.as_mut() {
            if let Some(ca) = ob.ca.as_mut() {
                fix(ca);
            }
            ob.token
                .iter_mut()
                .chain(ob.role_id.iter_mut())
                .chain(ob.secret_id.iter_mut())
                .for_each(fix_ref);
        }
        if let Some(h) = self.sandbox.helper.as_mut() {
            fix(h);
        }
        if let Some(ca) = self.state.ca.as_mut() {
            fix(ca);
        }
        self.state.password.iter_mut().for_each(fix_ref);
        for b in &mut self.backends {
            if let BackendConfig::Stdio {
                scratch,
                read_paths,
                ..
            } = b
            {
                scratch.iter_mut().for_each(fix);
                read_paths.iter_mut().for_each(fix);
            }
        }
        // Each stdio/HTTP backend has secret references, a pin file (given
        // or the default) and one more optional path: its `cwd` or `ca`.
        for b in &mut self.backends {
            let (name, pins, path, secret_refs): (&str, _, _, Vec<&mut String>) = match b {
                BackendConfig::Embedded { .. } => continue,
                BackendConfig::Stdio {
                    name,
                    pins,
                    cwd,
                    secret_env,
                    ..
                } => (name, pins, cwd, secret_env.values_mut().collect()),
                BackendConfig::Http {
                    name,
                    pins,
                    ca,
                    bearer_token,
                    ..
                } => (name, pins, ca, bearer_token.iter_mut().collect()),
            };
            secret_refs.into_iter().for_each(fix_ref);
            fix(pins.get_or_insert_with(|| PathBuf::from(format!("pins/{name}.toml"))));
            if let Some(p) = path.as_mut() {
                fix(p);
            }
        }
        self.audit.resolve_paths(base);
        // The anomaly blocks file: beside the audit file (the folder a
        // hardened unit lets the gateway write), else in the unit's
        // StateDirectory (systemd sets $STATE_DIRECTORY), else beside this
        // file. (The audit paths are already resolved against this file's
        // folder: the default is not resolved a second time.)
        if let Some(p) = self.anomaly.blocks_file.as_mut() {
            fix(p);
        } else {
            let audit_file = self
                .audit
                .path
                .clone()
                .filter(|p| p.as_os_str() != "-")
                .or_else(|| {
                    self.audit.sinks.iter().find_map(|s| match s {
                        crate::audit::config::SinkConfig::File { path, .. } => Some(path.clone()),
                        _ => None,
                    })
                });
            let dir = audit_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .or_else(state_directory)
                .unwrap_or_else(|| base.to_path_buf());
            self.anomaly.blocks_file = Some(dir.join("anomaly-blocks.json"));
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
        self.tls.validate()?;
        self.audit.validate()?;
        self.state.validate()?;
        crate::identity::quota(self.rate_limit).map_err(|m| format!("field rate_limit: {m}"))?;
        for (name, tier) in &self.tiers {
            tier.validate(&format!("tier.{name}"))?;
        }
        self.anomaly.validate()?;
        if !(1..=365).contains(&self.expiry.warning_days) {
            return Err("field expiry.warning_days: must be 1..=365".into());
        }
        let t = &self.transport;
        for (name, v, max) in [
            (
                "transport.handshake_timeout_secs",
                t.handshake_timeout_secs,
                300,
            ),
            ("transport.idle_timeout_secs", t.idle_timeout_secs, 86_400),
            (
                "transport.max_connection_age_secs",
                t.max_connection_age_secs,
                30 * 86_400,
            ),
            (
                "transport.keepalive_interval_secs",
                t.keepalive_interval_secs,
                3_600,
            ),
            (
                "transport.keepalive_timeout_secs",
                t.keepalive_timeout_secs,
                3_600,
            ),
            (
                "transport.request_timeout_secs",
                t.request_timeout_secs,
                3_600,
            ),
            (
                "transport.shutdown_deadline_secs",
                t.shutdown_deadline_secs,
                3_600,
            ),
        ] {
            if v > max {
                return Err(format!("field {name}: at most {max}"));
            }
        }
        for (name, v) in [
            ("transport.max_connections", t.max_connections as u64),
            ("transport.max_handshakes", t.max_handshakes as u64),
            (
                "transport.max_handshakes_per_source",
                t.max_handshakes_per_source as u64,
            ),
            (
                "transport.max_connections_per_identity",
                t.max_connections_per_identity as u64,
            ),
            (
                "transport.max_connection_age_secs",
                t.max_connection_age_secs,
            ),
            (
                "transport.max_identity_denials_per_connection",
                u64::from(t.max_identity_denials_per_connection),
            ),
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
        self.signing.key_ref()?;
        if let Some(e) = &self.enrollment {
            e.ca_key_ref()?;
            if self.registry.enrolled_keys.is_none() {
                return Err("field registry.enrolled_keys: required with [enrollment] (the file the enrollment service registers keys in)".into());
            }
            if e.listen == self.listen {
                return Err(
                    "field enrollment.listen: must differ from listen (the gateway's mTLS port)"
                        .into(),
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
        }
        if let Some(m) = &self.metrics {
            m.validate(self)?;
        }
        if let Some(t) = &self.traces {
            t.validate()?;
        }
        if self.secrets.refresh_secs == 0 {
            return Err("field secrets.refresh_secs: must be at least 1".into());
        }
        if let Some(ob) = &self.secrets.openbao {
            self.openbao_config(ob)?;
        }
        if self.backends.is_empty() {
            return Err("no [[backend]]: configure at least one".into());
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            let name = b.name();
            if crate::identity::ClientId::parse(name).is_err() {
                return Err(format!(
                    "backend name {name:?}: 1-64 characters of [A-Za-z0-9._-]"
                ));
            }
            if !names.insert(name) {
                return Err(format!("backend name {name:?} is used twice"));
            }
            match b {
                BackendConfig::Stdio {
                    env,
                    timeout_secs,
                    limits,
                    user,
                    group,
                    egress,
                    egress_private,
                    ..
                } => {
                    if *egress_private && !matches!(egress.0, crate::sandbox::Egress::Hosts(_)) {
                        return Err(format!(
                            "backend {name:?} field egress_private: only with egress by host name (egress = [\"host:port\"])"
                        ));
                    }
                    for (field, v, min) in [
                        ("limits.memory_mb", limits.memory_mb, 64),
                        ("limits.processes", limits.processes, 1),
                        ("limits.open_files", limits.open_files, 16),
                        ("limits.cpu_secs", limits.cpu_secs, 1),
                    ] {
                        if v < min {
                            return Err(format!(
                                "backend {name:?} field {field}: must be at least {min}"
                            ));
                        }
                    }
                    if group.is_some() && user.is_none() {
                        return Err(format!(
                            "backend {name:?} field group: set user too (the group goes with an account)"
                        ));
                    }
                    for (field, v) in [("user", user), ("group", group)] {
                        if v.as_deref().is_some_and(|v| {
                            v.is_empty()
                                || !v
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                        }) {
                            return Err(format!(
                                "backend {name:?} field {field}: an account name of [A-Za-z0-9._-]"
                            ));
                        }
                    }
                    if let Some(k) = env.keys().find(|k| looks_secret(k)) {
                        return Err(format!(
                            "backend {name:?} field env.{k}: looks like a secret, and literal secret values are not allowed in the config; \
                             move it to secret_env as a reference (openbao://<path>#<field>, file:<path> or env:<NAME>)"
                        ));
                    }
                    if *timeout_secs == 0 {
                        return Err(format!(
                            "backend {name:?} field timeout_secs: must be at least 1"
                        ));
                    }
                }
                BackendConfig::Http {
                    timeout_secs, url, ..
                } => {
                    if *timeout_secs == 0 {
                        return Err(format!(
                            "backend {name:?} field timeout_secs: must be at least 1"
                        ));
                    }
                    if !crate::tls::transport_allowed(url) {
                        return Err(format!("backend {name:?} field url: must be https:// (plain http only on loopback)"));
                    }
                }
                BackendConfig::Embedded { .. } => {}
            }
            b.secret_refs()?;
        }
        Ok(())
    }

    /// The OpenBao settings with validated credential references.
    pub fn openbao_config(
        &self,
        ob: &OpenBaoSection,
    ) -> Result<crate::secrets::OpenBaoConfig, String> {
        use crate::secrets::{OpenBaoAuth, OpenBaoConfig};
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
    /// limiter state over from `previous`.
    pub fn load_registry(
        &self,
        previous: Option<&crate::identity::Registry>,
    ) -> Result<crate::identity::Registry, crate::identity::RegistryError> {
        crate::identity::Registry::load_merged(
            &self.registry.path,
            self.registry.enrolled_keys.as_deref(),
            &self.registry_defaults(),
            previous,
        )
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

/// The first folder of systemd's `$STATE_DIRECTORY` (the unit's
/// `StateDirectory=`), if set to an absolute path.
fn state_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    let first = dirs.to_str()?.split(':').next()?;
    let path = PathBuf::from(first);
    path.is_absolute().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
[signing]
key = "gateway.signing.key"
[registry]
path = "clients.toml"
"#;

    fn validate(extra: &str) -> Result<(), String> {
        let config: Config =
            toml::from_str(&format!("{MINIMAL}{extra}")).map_err(|e| e.to_string())?;
        config.validate()
    }

    #[test]
    fn metrics_listen_off_loopback_needs_allow_remote() {
        assert_eq!(validate(""), Ok(()), "no [metrics]: off");
        assert_eq!(validate("[metrics]\nlisten = \"127.0.0.1:9464\"\n"), Ok(()));
        assert_eq!(validate("[metrics]\nlisten = \"[::1]:9464\"\n"), Ok(()));
        let remote = validate("[metrics]\nlisten = \"0.0.0.0:9464\"\n").expect_err("refused");
        assert!(
            remote.starts_with("field metrics.listen: 0.0.0.0:9464 is not a loopback address"),
            "{remote}"
        );
        assert_eq!(
            validate("[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n"),
            Ok(())
        );
        assert_eq!(
            validate("[metrics]\nlisten = \"127.0.0.1:7443\"\n"),
            Err("field metrics.listen: must differ from listen".into())
        );
    }

    #[test]
    fn metrics_client_labels_are_off_by_default_and_capped() {
        let metrics = |extra: &str| {
            let text = format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9464\"\n{extra}");
            toml::from_str::<Config>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|()| c))
                .map(|c| c.metrics.map(|m| m.client_labels))
        };
        assert_eq!(metrics(""), Ok(Some(0)), "absent: off");
        assert_eq!(metrics("client_labels = 0\n"), Ok(Some(0)));
        assert_eq!(metrics("client_labels = 50\n"), Ok(Some(50)));
        assert_eq!(metrics("client_labels = 1000\n"), Ok(Some(1000)));
        let over = metrics("client_labels = 1001\n").expect_err("refused");
        assert!(
            over.starts_with("field metrics.client_labels: 1001 is more than 1000;"),
            "{over}"
        );
        let negative = metrics("client_labels = -1\n").expect_err("refused");
        assert!(negative.contains("client_labels"), "{negative}");
        let misspelt = metrics("client_label = 5\n").expect_err("unknown field");
        assert!(
            misspelt.contains("unknown field `client_label`"),
            "{misspelt}"
        );
    }

    #[test]
    fn traces_and_the_shutdown_deadline_are_checked() {
        assert_eq!(
            validate("[traces]\notlp_endpoint = \"http://127.0.0.1:4317\"\n"),
            Ok(())
        );
        assert_eq!(
            validate("[traces]\notlp_endpoint = \"udp://127.0.0.1:4317\"\n"),
            Err("field traces.otlp_endpoint: must be http://HOST:PORT or https://HOST:PORT".into())
        );
        assert_eq!(
            validate("[traces]\notlp_endpoint = \"http://c:4317\"\nsample_ratio = 1.5\n"),
            Err("field traces.sample_ratio: must be 0.0..=1.0".into())
        );
        assert_eq!(
            validate("[transport]\nshutdown_deadline_secs = 0\n"),
            Ok(())
        );
        assert_eq!(
            validate("[transport]\nshutdown_deadline_secs = 3601\n"),
            Err("field transport.shutdown_deadline_secs: at most 3600".into())
        );
    }

    #[test]
    fn backend_paths_resolve_against_the_config_directory() {
        let text = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
[signing]
key = "gateway.signing.key"
[registry]
path = "clients.toml"
[[backend]]
name = "ep"
kind = "stdio"
command = "ep-server"
cwd = "work"
secret_env = { EP_API_KEY = "file:creds/ep", OTHER = "env:OTHER" }
[[backend]]
name = "web"
kind = "http"
url = "https://mcp.internal/mcp"
ca = "/etc/ca.crt"
pins = "my-pins.toml"
bearer_token = "file:creds/web"
[[backend]]
name = "embedded"
kind = "embedded"
"#;
        let mut config: Config = toml::from_str(text).expect("parses");
        let base = Path::new("/etc/sealgate");
        config.resolve_paths(base);
        match &config.backends[0] {
            BackendConfig::Stdio {
                pins,
                cwd,
                secret_env,
                ..
            } => {
                assert_eq!(pins.as_deref(), Some(base.join("pins/ep.toml").as_path()));
                assert_eq!(cwd.as_deref(), Some(base.join("work").as_path()));
                assert_eq!(secret_env["EP_API_KEY"], "file:/etc/sealgate/creds/ep");
                assert_eq!(secret_env["OTHER"], "env:OTHER");
            }
            other => panic!("not stdio: {other:?}"),
        }
        match &config.backends[1] {
            BackendConfig::Http {
                pins,
                ca,
                bearer_token,
                ..
            } => {
                assert_eq!(pins.as_deref(), Some(base.join("my-pins.toml").as_path()));
                assert_eq!(ca.as_deref(), Some(Path::new("/etc/ca.crt")));
                assert_eq!(
                    bearer_token.as_deref(),
                    Some("file:/etc/sealgate/creds/web")
                );
            }
            other => panic!("not http: {other:?}"),
        }
        assert_eq!(
            config.backends[2],
            BackendConfig::Embedded {
                name: "embedded".into(),
                prefix: String::new(),
            }
        );
        assert_eq!(config.registry.path, base.join("clients.toml"));
        assert_eq!(config.signing.key, "/etc/sealgate/gateway.signing.key");
    }

    fn tls_section(extra: &str) -> TlsConfig {
        let text = format!("cert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n{extra}");
        toml::from_str(&text).expect("[tls] parses")
    }

    #[test]
    fn crl_grace_defaults_to_a_day_and_is_bounded() {
        assert_eq!(tls_section("").crl_grace_secs, 86_400);
        let zero = tls_section("crl_grace_secs = 0");
        assert_eq!(zero.crl_grace_secs, 0);
        assert_eq!(zero.validate(), Ok(()));
        assert_eq!(tls_section("crl_grace_secs = 2592000").validate(), Ok(()));
        assert_eq!(
            tls_section("crl_grace_secs = 2592001").validate(),
            Err("field tls.crl_grace_secs: at most 2592000 (30 days)".into())
        );
        assert!(toml::from_str::<TlsConfig>(
            "cert = \"s\"\nkey = \"k\"\nclient_ca = \"c\"\ncrl_grace_secs = -1"
        )
        .is_err());
    }
    fn stdio(extra: &str) -> Result<Config, String> {
        let text = format!(
            "listen = \"127.0.0.1:7443\"\ntrust_domain = \"sealgate.local\"\n[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.crt\"\n[signing]\nkey = \"g.key\"\n[registry]\npath = \"c.toml\"\n[[backend]]\nname = \"ep\"\nkind = \"stdio\"\ncommand = \"node\"\n{extra}"
        );
        let config: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn isolation_keys_default_to_a_sandbox_without_network() {
        use crate::sandbox::{Egress, Limits};
        let c = stdio("").expect("valid");
        let BackendConfig::Stdio {
            sandbox,
            egress,
            limits,
            user,
            pinning,
            ..
        } = &c.backends[0]
        else {
            panic!("stdio")
        };
        assert_eq!(*sandbox, SandboxMode::BestEffort);
        assert_eq!(egress.0, Egress::None);
        assert_eq!(*limits, Limits::default());
        assert_eq!(*user, None);
        assert_eq!(*pinning, None);
        assert_eq!(c.backends[0].pinning(c.pinning), Pinning::Tofu);
        let c = stdio("egress = [\"tcp:443\", \"tcp:53\", \"tcp:443\"]\npinning = \"strict\"")
            .expect("valid");
        let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
            panic!("stdio")
        };
        assert_eq!(egress.0, Egress::TcpPorts(vec![53, 443]));
        assert_eq!(c.backends[0].pinning(Pinning::Tofu), Pinning::Strict);
        let c = stdio("egress = [\"TCP:443\"]").expect("valid");
        let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
            panic!("stdio")
        };
        assert_eq!(
            egress.0,
            Egress::TcpPorts(vec![443]),
            "the prefix in any case"
        );
        let c = stdio(
            "egress = [\"Data.Europarl.Europa.EU.:443\", \"data.europarl.europa.eu:443\", \"localhost:8080\"]",
        )
        .expect("valid");
        let BackendConfig::Stdio { egress, .. } = &c.backends[0] else {
            panic!("stdio")
        };
        let hp = |h: &str, port| crate::sandbox::HostPort {
            host: h.into(),
            port,
        };
        assert_eq!(
            egress.0,
            Egress::Hosts(vec![
                hp("data.europarl.europa.eu", 443),
                hp("localhost", 8080)
            ]),
            "lower case, trailing dot dropped, duplicates merged"
        );
        assert_eq!(
            egress.0.to_string(),
            "data.europarl.europa.eu:443,localhost:8080"
        );
    }

    #[test]
    fn isolation_keys_that_make_no_sense_are_refused_by_name() {
        for (extra, want) in [
            ("egress = \"internet\"", "field egress: expected"),
            (
                "egress = [\"udp:53\"]",
                "\"udp:53\": no UDP egress is offered",
            ),
            (
                "egress = [\"tcp:443\", \"data.europarl.europa.eu:443\"]",
                "it mixes tcp:<port> (any host) with host:port entries",
            ),
            (
                "egress = [\"10.0.0.1:443\"]",
                "\"10.0.0.1:443\" is an IP address; name the host",
            ),
            (
                "egress = [\"[::1]:443\"]",
                "\"[::1]:443\" is an IP address; name the host",
            ),
            (
                "egress = [\"example.com\"]",
                "\"example.com\" is not host:port",
            ),
            (
                "egress = [\"example.com:0\"]",
                "\"example.com:0\": the port is not 1-65535",
            ),
            (
                "egress = [\"exa_mple.com:443\"]",
                "\"exa_mple.com:443\": \"exa_mple.com\" is not a DNS host name",
            ),
            (
                "egress = [\"-a.example.com:443\"]",
                "is not a DNS host name",
            ),
            ("egress = [\"1.2.3.4.5:443\"]", "numeric top label"),
            ("egress = [\"0x7f.1:443\"]", "numeric top label"),
            (
                "egress = [\"TCP:0\"]",
                "\"TCP:0\" is not tcp:<port 1-65535>",
            ),
            (
                "egress = [\"intranet:443\"]",
                "\"intranet:443\": name the host in full, with its domain",
            ),
            (
                "egress = [\"tcp:0\"]",
                "\"tcp:0\" is not tcp:<port 1-65535>",
            ),
            ("sandbox = \"maybe\"", "unknown variant `maybe`"),
            ("pinning = \"lax\"", "unknown variant `lax`"),
            (
                "group = \"nogroup\"",
                "backend \"ep\" field group: set user too",
            ),
            (
                "egress = [\"tcp:443\"]\negress_private = true",
                "backend \"ep\" field egress_private: only with egress by host name",
            ),
            (
                "user = \"no body\"",
                "backend \"ep\" field user: an account name",
            ),
            (
                "[backend.limits]\nmemory_mb = 10",
                "backend \"ep\" field limits.memory_mb: must be at least 64",
            ),
            (
                "[backend.limits]\nprocesses = 0",
                "backend \"ep\" field limits.processes: must be at least 1",
            ),
            (
                "[backend.limits]\nopen_files = 3",
                "backend \"ep\" field limits.open_files: must be at least 16",
            ),
            (
                "[backend.limits]\ncpu_secs = 0",
                "backend \"ep\" field limits.cpu_secs: must be at least 1",
            ),
            ("[backend.limits]\nthreads = 4", "unknown field `threads`"),
        ] {
            let e = stdio(extra)
                .err()
                .unwrap_or_else(|| panic!("{extra} accepted"));
            assert!(e.contains(want), "{extra}: {e}");
        }
    }
}

#[cfg(test)]
mod schema_tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    /// Every dotted field path the schema accepts (`audit.sink.kind`,
    /// `tier.*.tools`, `backend.limits.memory_mb`): `$ref`s followed,
    /// `anyOf`/`oneOf` alternatives (tagged enums, `Option`) merged, arrays
    /// of tables (`[[backend]]`) by their own name, maps by `*`.
    fn field_paths(root: &Value, node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            return field_paths(root, &root["$defs"][name], prefix, out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for alt in node
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                field_paths(root, alt, prefix, out);
            }
        }
        if let Some(items) = node.get("items") {
            field_paths(root, items, prefix, out);
        }
        if let Some(map) = node.get("additionalProperties").filter(|v| v.is_object()) {
            field_paths(root, map, &format!("{prefix}*."), out);
        }
        for (name, field) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let path = format!("{prefix}{name}");
            out.insert(path.clone());
            field_paths(root, field, &format!("{path}."), out);
        }
    }

    /// Every object schema that lists properties, wherever it is.
    fn tables<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
        match node {
            Value::Object(map) => {
                if map.contains_key("properties") {
                    out.push(node);
                }
                map.values().for_each(|v| tables(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| tables(v, out)),
            _ => {}
        }
    }

    #[test]
    fn schema_lists_nested_fields() {
        let schema = super::schema();
        let mut paths = BTreeSet::new();
        field_paths(&schema, &schema, "", &mut paths);
        for known in [
            "listen",
            "trust_domain",
            "tls.crl_grace_secs",
            "transport.max_connections",
            "metrics.listen",
            "enrollment.listen",
            "secrets.openbao.approle_mount",
            "audit.sink.kind",
            "audit.sink.fsync_interval_ms",
            "audit.sink.server_name",
            "backend.kind",
            "backend.egress",
            "backend.limits.memory_mb",
            "backend.relist_secs",
            "tier.*.allowed_hours.time_zone",
            "sanitize.max_depth",
            "sanitize.tools.*.nfc",
            "results.patterns.regex",
            "anomaly.volume.factor",
            "anomaly.source_failures.threshold",
            "state.on_failure",
        ] {
            assert!(paths.contains(known), "{known} missing from the schema");
        }
        assert!(!paths.contains("source"), "a skipped field is not accepted");

        let kinds = |def: &str| -> BTreeSet<String> {
            schema["$defs"][def]["oneOf"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["properties"]["kind"]["const"].as_str())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            kinds("SinkConfig"),
            BTreeSet::from(["file", "stdout", "syslog", "http"].map(String::from))
        );
        assert_eq!(
            kinds("BackendConfig"),
            BTreeSet::from(["embedded", "stdio", "http"].map(String::from))
        );
    }

    const FULL: &str = r#"
listen = "127.0.0.1:7443"
trust_domain = "sealgate.local"
pinning = "strict"
[tls]
cert = "server.crt"
key = "server.key"
client_ca = "ca/ca.crt"
crls = ["crl.pem"]
[signing]
key = "file:gateway.signing.key"
[registry]
path = "clients.toml"
[transport]
max_connections = 10
[metrics]
listen = "127.0.0.1:9464"
[state]
kind = "redis"
url = "redis://127.0.0.1:6379/0"
on_failure = "local"
[audit]
signing_key = "file:audit.key"
[[audit.sink]]
kind = "file"
path = "audit.jsonl"
fsync = "every_record"
[[audit.sink]]
kind = "syslog"
address = "127.0.0.1:6514"
transport = "tls"
on_failure = "spool"
[tier.standard]
tools = ["get_*"]
rate_limit = { per_second = 5, burst = 10 }
allowed_hours = { time_zone = "Europe/Brussels", from = "08:00", to = "18:00" }
[anomaly.volume]
action = "throttle"
factor = 5.0
[results]
secrets = "refuse"
patterns = [{ name = "ours", regex = "x[0-9]+" }]
[sanitize.tools.search]
nfc = "normalize"
[[backend]]
kind = "stdio"
name = "ep"
command = "node"
egress = ["data.europarl.europa.eu:443"]
sandbox = "required"
limits = { memory_mb = 512 }
[[backend]]
kind = "http"
name = "remote"
url = "https://mcp.example/mcp"
[[backend]]
kind = "embedded"
"#;

    /// What serde reads, the schema accepts; an unknown field anywhere is
    /// refused by both.
    #[test]
    fn schema_agrees_with_serde() {
        let validator = jsonschema::options()
            .build(&super::schema())
            .expect("the schema compiles");
        let as_json = |text: &str| -> Value { toml::from_str(text).expect("TOML") };
        if let Err(e) = toml::from_str::<super::Config>(FULL) {
            panic!("{e}");
        }
        assert!(validator.is_valid(&as_json(FULL)));
        for header in [
            "",
            "[tls]\n",
            "[state]\n",
            "[[audit.sink]]\n",
            "[tier.standard]\n",
            "[anomaly.volume]\n",
            "[results]\n",
            "[sanitize.tools.search]\n",
            "[[backend]]\n",
        ] {
            let text = FULL.replacen(header, &format!("{header}colour = 1\n"), 1);
            assert!(toml::from_str::<super::Config>(&text).is_err(), "{header}");
            assert!(!validator.is_valid(&as_json(&text)), "{header}");
        }
    }

    #[test]
    fn schema_refuses_unknown_fields_everywhere() {
        // Every table of the config file is a `deny_unknown_fields` struct
        // (or enum variant), so every object schema with properties must
        // say `additionalProperties: false`.
        let schema = super::schema();
        let mut found = Vec::new();
        tables(&schema, &mut found);
        assert!(found.len() > 30, "only {} tables", found.len());
        for table in found {
            assert_eq!(
                table.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{}",
                table
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            );
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    fn parse(text: &str) -> Result<StateConfig, String> {
        let c: StateConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn local_is_the_default_and_takes_no_store_fields() {
        let c = parse("").expect("empty");
        assert_eq!(c.kind, StateKind::Local);
        assert_eq!(c.on_failure, OnFailure::FailClosed);
        assert_eq!(c.timeout_ms, 50);
        assert_eq!(
            parse("url = \"redis://127.0.0.1\"").err().as_deref(),
            Some("field state.url: only with kind = \"redis\" (kind is \"local\")")
        );
    }

    #[test]
    fn a_redis_store_is_checked_field_by_field() {
        let c =
            parse("kind = \"redis\"\nurl = \"redis://127.0.0.1:6380/2\"\non_failure = \"local\"")
                .expect("valid");
        assert_eq!(
            c.address(),
            Ok(StoreAddress {
                host: "127.0.0.1".into(),
                port: 6380,
                db: 2,
                tls: false,
                username: None
            })
        );
        assert_eq!(c.on_failure, OnFailure::Local);
        for (text, want) in [
            (
                "kind = \"redis\"",
                "field state.url: required with kind = \"redis\"",
            ),
            (
                "kind = \"redis\"\nurl = \"http://h\"",
                "field state.url: the scheme must be redis:// or rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://u:hunter2@h\"",
                "field state.url: holds a password; give it as state.password",
            ),
            (
                "kind = \"redis\"\nurl = \"rediss://h\"",
                "field state.ca: required with rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\nca = \"ca.crt\"",
                "field state.ca: only with rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://db.example\"\npassword = \"file:p\"",
                "field state.url: a password is sent only over rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://127.0.0.1\"\npassword = \"hunter2\"",
                "field state.password: not a secret reference",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h/x\"",
                "field state.url: the path must be a database number",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\ntimeout_ms = 0",
                "field state.timeout_ms: must be 1..=10000",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\non_failure = \"open\"",
                "unknown variant `open`",
            ),
        ] {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{text}: echoes a secret: {e}");
        }
        let tls = parse("kind = \"redis\"\nurl = \"rediss://redis.internal\"\nca = \"ca.crt\"\npassword = \"file:redis.pass\"")
            .expect("valid");
        assert!(tls.address().expect("address").tls);
        assert_eq!(tls.address().expect("address").port, 6379);
    }
}
