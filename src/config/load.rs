//! Loading the config file: read it, parse it (a TOML error names the line
//! and column, never the value), resolve relative paths against its folder,
//! then validate: the top-level fields here, each section by its own
//! checks.

use std::path::{Path, PathBuf};

use crate::identity::valid_trust_domain;
use crate::secrets::SecretRef;

use super::backends::{validate_backends, BackendConfig};
use super::file::Config;

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
        Config::from_text(path, &text)
    }

    /// [`Config::load`] of `text`, the contents of the file at `path`
    /// (paths resolve against its folder): parse, resolve, validate.
    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let mut config: Config = toml::from_str(text).map_err(|e| err(toml_error(text, &e)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        // The audit log's origin defaults to one named by the trust domain.
        let trust_domain = config.trust_domain.clone();
        config.audit.default_origin(&trust_domain);
        config.validate().map_err(err)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
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

    /// `[envelope] replay_capacity_per_client` against `rate` (the rate of
    /// `what`), where this process's replay cache decides calls
    /// ([`StateConfig::local_replay_decides`]): with a shared store and
    /// `fail_closed` the cap never refuses, so it is not held to the rate.
    pub(crate) fn check_replay_capacity(
        &self,
        what: &str,
        rate: crate::policy::RateLimitFile,
    ) -> Result<(), String> {
        if !self.state.local_replay_decides() {
            return Ok(());
        }
        self.envelope.check_replay_capacity(what, rate)
    }

    /// Checks values that parse but make no sense: the top-level fields
    /// here, then each section's own checks, in the order of the file.
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
        self.envelope.validate()?;
        self.tls.validate()?;
        self.audit.validate()?;
        self.state.validate()?;
        crate::identity::quota(self.rate_limit).map_err(|m| format!("field rate_limit: {m}"))?;
        self.check_replay_capacity("rate_limit", self.rate_limit)?;
        for (name, tier) in &self.tiers {
            tier.validate(&format!("tier.{name}"))?;
            if let Some(rate) = tier.rate_limit {
                self.check_replay_capacity(&format!("tier.{name}.rate_limit"), rate)?;
            }
        }
        self.anomaly.validate()?;
        self.expiry.validate()?;
        self.transport.validate()?;
        self.signing.key_ref()?;
        if let Some(e) = &self.enrollment {
            e.validate(self.listen, self.registry.enrolled_keys.is_some())?;
        }
        if let Some(m) = &self.metrics {
            m.validate(self.listen, self.enrollment.as_ref().map(|e| e.listen))?;
        }
        if let Some(t) = &self.traces {
            t.validate()?;
        }
        self.secrets.validate()?;
        validate_backends(&self.backends)
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
