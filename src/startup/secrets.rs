//! The first step that reaches outside: every secret reference of the
//! config resolved up front, so a missing one stops the gateway with its
//! reference named.

use std::sync::Arc;

use crate::config::Config;
use crate::secrets::Secrets;

use super::error::StartError;

/// Resolves every secret reference in the config, so that a missing one
/// stops the gateway before it serves anything.
pub(super) async fn resolve_secrets(config: &Config) -> Result<Arc<Secrets>, StartError> {
    let openbao = match &config.secrets.openbao {
        Some(ob) => Some(config.openbao_config(ob).map_err(StartError::Secrets)?),
        None => None,
    };
    let refs = config.secret_refs().map_err(StartError::Secrets)?;
    let secrets = Arc::new(Secrets::new(openbao.as_ref(), refs).map_err(StartError::Secrets)?);
    secrets.resolve_all().await?;
    Ok(secrets)
}
