//! The audit sink step: the configured trail opened with its checkpoint
//! key.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::gateway::ResponseSigner;
use crate::secrets::Secrets;

use super::error::StartError;
use super::signer::audit_key;

/// The configured audit trail: its sinks opened (files 0600), its
/// checkpoint key loaded, its writer thread started.
pub(super) fn open_audit(
    config: &Config,
    secrets: &Secrets,
    signer: &ResponseSigner,
) -> Result<Arc<AuditLog>, StartError> {
    let key = audit_key(config, secrets, signer)?;
    let sinks: Vec<String> = config
        .audit
        .effective_sinks()
        .iter()
        .map(|s| s.name())
        .collect();
    AuditLog::open(&config.audit, key)
        .map(Arc::new)
        .map_err(|source| StartError::Audit {
            path: sinks.join(", "),
            source,
        })
}
