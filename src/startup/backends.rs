//! The backends step: each configured backend started (stdio under its
//! isolation, HTTP, the embedded one) and wrapped in its routing slot with
//! its pin mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::http::{HttpBackend, HttpSpec};
use crate::backend::router::{PinMode, Slot};
use crate::backend::stdio::{StdioBackend, StdioSpec};
use crate::backend::{Backend, EmbeddedBackend};
use crate::config::{BackendConfig, Config, Pinning};
use crate::secrets::Secrets;

use super::error::StartError;
use super::isolation::isolation;

/// How long a call to the embedded backend may take (it answers from
/// memory; this only bounds a bug).
const EMBEDDED_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the configured backends (only the one named `only`, if given).
pub(super) async fn start_backends(
    config: &Config,
    secrets: &Arc<Secrets>,
    only: Option<&str>,
) -> Result<Vec<Slot>, StartError> {
    let mut slots = Vec::new();
    for b in config
        .backends
        .iter()
        .filter(|b| only.is_none_or(|o| o == b.name()))
    {
        slots.push(start_backend(config, b, secrets).await?);
    }
    Ok(slots)
}

/// Starts one backend and wraps it in its routing slot.
async fn start_backend(
    config: &Config,
    b: &BackendConfig,
    secrets: &Arc<Secrets>,
) -> Result<Slot, StartError> {
    let name = b.name();
    let refs = b.secret_refs().map_err(StartError::Backend)?;
    let secret = |key: &str| refs.iter().find(|(k, _)| k == key).map(|(_, r)| r.clone());
    let started = |e: String| StartError::Backend(format!("backend {name:?}: {e}"));
    // Every stdio/http backend has a pin file (the default is filled in by
    // Config::load; this fallback only covers a config built by hand).
    let pin_file = |pins: &Option<PathBuf>| {
        let path = pins
            .clone()
            .unwrap_or_else(|| format!("pins/{name}.toml").into());
        match b.pinning(config.pinning) {
            Pinning::Tofu => PinMode::File(path),
            Pinning::Strict => PinMode::Strict(path),
        }
    };
    let (backend, prefix, timeout, pins): (Arc<dyn Backend>, _, _, _) = match b {
        BackendConfig::Embedded { prefix, .. } => (
            Arc::new(EmbeddedBackend::new(name)),
            prefix,
            EMBEDDED_TIMEOUT,
            PinMode::Builtin,
        ),
        BackendConfig::Stdio {
            prefix,
            timeout_secs,
            init_timeout_secs,
            pins,
            command,
            args,
            cwd,
            env,
            secret_env,
            inherit_env,
            ..
        } => {
            let isolation = isolation(config, b)?;
            let spec = StdioSpec {
                command: command.clone(),
                args: args.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
                secret_env: secret_env
                    .keys()
                    .filter_map(|k| secret(&format!("secret_env.{k}")).map(|r| (k.clone(), r)))
                    .collect(),
                inherit_env: inherit_env.clone(),
                init_timeout: Duration::from_secs(*init_timeout_secs),
                account: isolation.account,
                sandbox: isolation.sandbox,
                scratch: Some(isolation.scratch),
                scratch_is_temporary: isolation.scratch_is_temporary,
            };
            let backend = StdioBackend::start(name, spec, secrets.clone())
                .await
                .map_err(started)?;
            (
                Arc::new(backend),
                prefix,
                Duration::from_secs(*timeout_secs),
                pin_file(pins),
            )
        }
        BackendConfig::Http {
            prefix,
            timeout_secs,
            pins,
            url,
            ca,
            ..
        } => {
            let spec = HttpSpec {
                url: url.clone(),
                ca: ca.clone(),
                bearer_token: secret("bearer_token"),
            };
            let backend = HttpBackend::new(name, spec, secrets.clone()).map_err(started)?;
            (
                Arc::new(backend),
                prefix,
                Duration::from_secs(*timeout_secs),
                pin_file(pins),
            )
        }
    };
    Ok(Slot {
        backend,
        prefix: prefix.clone(),
        timeout,
        pins,
        relist: b.relist_every(),
    })
}
