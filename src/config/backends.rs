//! `[[backend]]`: the MCP servers behind the gateway (embedded, stdio,
//! Streamable HTTP), their defaults and checks, and how their tool pins are
//! trusted (`pinning`). Secret-bearing fields stay strings until
//! [`BackendConfig::secret_refs`] parses them as references.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secrets::SecretRef;

use super::sandbox::{EgressSetting, SandboxMode};

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

pub(super) fn default_backends() -> Vec<BackendConfig> {
    vec![BackendConfig::Embedded {
        name: default_embedded_name(),
        prefix: String::new(),
    }]
}

fn default_embedded_name() -> String {
    "embedded".into()
}

/// One backend. Secret-bearing fields are strings here and become
/// [`SecretRef`]s in [`Config::validate`](crate::config::Config::validate),
/// so that a literal secret is refused with an error that names its key and
/// never echoes it.
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

/// Checks every `[[backend]]`: at least one, names valid and unique, each
/// one's own fields.
pub(super) fn validate_backends(backends: &[BackendConfig]) -> Result<(), String> {
    if backends.is_empty() {
        return Err("no [[backend]]: configure at least one".into());
    }
    let mut names = std::collections::HashSet::new();
    for b in backends {
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
