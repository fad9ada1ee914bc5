//! The enrollment service of `[enrollment]`, ready to serve beside the
//! gateway or alone (`sealgate ca serve`): its CA key, audit and TLS.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::secrets::Secrets;

use super::error::StartError;
use super::tls::enrollment_tls_config;

/// The enrollment service, ready to serve: its state and its TLS config
/// (swapped on SIGHUP with the gateway's).
pub struct EnrollmentParts {
    /// The service's state.
    pub state: Arc<crate::enroll::service::Enrollment>,
    /// Its listener's TLS configs.
    pub tls: Arc<ArcSwap<crate::tls::ServerTls>>,
}

/// The enrollment service of `config`'s `[enrollment]`, or `None` without
/// one. With `gateway` (the gateway serves it), the CA key comes from the
/// gateway's resolved secrets and enrollments reach its registry at once;
/// without (`sealgate ca serve`), the CA key is resolved here and the
/// service hands out `gateway_keys`.
pub async fn build_enrollment(
    config: &Config,
    gateway: Option<Arc<Gateway>>,
    gateway_keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
    audit: Option<Arc<AuditLog>>,
) -> Result<Option<EnrollmentParts>, StartError> {
    let Some(e) = &config.enrollment else {
        return Ok(None);
    };
    let key_ref = e.ca_key_ref().map_err(StartError::Secrets)?;
    let secrets = match &gateway {
        Some(g) => g.secrets.clone(),
        None => {
            let openbao = match &config.secrets.openbao {
                Some(ob) => Some(config.openbao_config(ob).map_err(StartError::Secrets)?),
                None => None,
            };
            let s = Secrets::new(openbao.as_ref(), vec![key_ref.clone()])
                .map_err(StartError::Secrets)?;
            s.resolve_all().await?;
            Arc::new(s)
        }
    };
    let key = secrets
        .get(&key_ref)
        .ok_or_else(|| StartError::Secrets(format!("enrollment.ca_key {key_ref}: not resolved")))?;
    let audit = match (audit, &gateway) {
        (Some(a), _) => a,
        (None, Some(g)) => g.audit.clone(),
        // `sealgate ca serve`: never the gateway's own audit file (two
        // writers would break its hash chain); records go to stdout, one
        // JSON line each, for the service manager's journal or a collector.
        (None, None) => Arc::new(AuditLog::stdout()),
    };
    let state = crate::enroll::service::Enrollment::new(
        config,
        secrecy::ExposeSecret::expose_secret(&key),
        gateway,
        gateway_keys,
        audit,
    )
    .map_err(|m| StartError::Secrets(format!("enrollment: {m}")))?;
    Ok(Some(EnrollmentParts {
        state: Arc::new(state),
        tls: Arc::new(ArcSwap::new(enrollment_tls_config(config)?)),
    }))
}
