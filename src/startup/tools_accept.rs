//! `sealgate tools accept`: the backends started (or one), their tools
//! listed and made the pins, the audit events handed to the running
//! gateway.

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::backend::router::{PinMode, Router, SyncReport};
use crate::config::Config;
use crate::policy::PinFile;

use super::backends::start_backends;
use super::error::StartError;
use super::secrets::resolve_secrets;

/// What `sealgate tools accept` did for one backend.
pub struct Accepted {
    /// The backend's configured name.
    pub backend: String,
    /// The pin file that now holds its accepted definitions.
    pub pins: PathBuf,
    /// The tools the backend offered, sorted by how they compared to the
    /// pins before.
    pub report: SyncReport,
    /// Tools whose pinned digest changed or that were not pinned before.
    pub newly_accepted: Vec<String>,
}

/// `sealgate tools accept`: starts the backends (or one), lists their tools
/// and makes the current definitions the pins. The running gateway applies
/// them on SIGHUP.
pub async fn accept_tools(
    config: &Config,
    only: Option<&str>,
) -> Result<Vec<Accepted>, StartError> {
    if let Some(o) = only {
        if !config.backends.iter().any(|b| b.name() == o) {
            return Err(StartError::Backend(format!(
                "no backend named {o:?} in the config"
            )));
        }
    }
    let secrets = resolve_secrets(config).await?;
    let slots = start_backends(config, &secrets, only).await?;
    // The running gateway owns the audit chain: a second writer would fork
    // it. The events are handed over; the gateway records them at SIGHUP.
    let audit = Arc::new(AuditLog::memory());
    let router = Router::unsynced(slots, audit.clone());
    let mut out = Vec::new();
    for (i, slot) in router.slots().iter().enumerate() {
        let (PinMode::File(path) | PinMode::Strict(path)) = &slot.pins else {
            continue;
        };
        let load = || {
            PinFile::load(path)
                .map(Option::unwrap_or_default)
                .map_err(StartError::Backend)
        };
        let before = load()?;
        let report = router.sync(i, true).await.map_err(StartError::Backend)?;
        let after = load()?;
        let newly_accepted = after
            .tools
            .iter()
            .filter(|(name, entry)| before.accepted(name) != Some(&entry.digest))
            .map(|(name, _)| name.clone())
            .collect();
        out.push(Accepted {
            backend: slot.backend.name().to_string(),
            pins: path.clone(),
            report,
            newly_accepted,
        });
    }
    audit
        .hand_over(&config.audit, "sealgate tools accept")
        .map_err(|source| StartError::Audit {
            path: "audit handover".into(),
            source,
        })?;
    Ok(out)
}
