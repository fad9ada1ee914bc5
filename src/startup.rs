//! Assembly: from a validated [`Config`] to ready [`ServerParts`].
//!
//! In order: the client registry, the TLS server config, the audit sink,
//! every secret (resolved up front, so a missing one stops the gateway with
//! its reference named), the gateway's response signer, the backends (each
//! started and its tools listed and checked against the pins), and finally
//! the [`Gateway`] itself. `sealgate tools accept` reuses the backend half
//! ([`accept_tools`]).
//!
//! This module runs once per process (and once per `tools accept`); it
//! never serves a request and never reloads: [`crate::reload`] keeps what it
//! built fresh. A [`StartError`] names the file, field or reference and
//! what is wrong, never a secret value.
//!
//! Each step has its room: `secrets`, `signer` (the response signer and the
//! audit checkpoint key), `tls`, `audit`, `backends` (with each stdio
//! backend's `isolation`), `shared_state` and `expiry`; `enrollment` builds
//! the enrollment service, `check` is `sealgate check-config` and
//! `tools_accept` is `sealgate tools accept`. [`build`] below runs the steps
//! in order.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::audit::AuditLog;
use crate::backend::router::Router;
use crate::config::{BackendConfig, Config};
use crate::gateway::{Gateway, RequestLimits, SystemClock};
use crate::peer::AcceptStats;
use crate::replay::MemoryReplayStore;
use crate::server::ServerParts;

mod audit;
mod backends;
mod check;
mod enrollment;
mod error;
mod expiry;
mod isolation;
mod secrets;
mod shared_state;
mod signer;
mod tls;
mod tools_accept;

use audit::open_audit;
use backends::start_backends;
use secrets::resolve_secrets;
use shared_state::shared_state;

pub use check::check;
pub use enrollment::{build_enrollment, EnrollmentParts};
pub use error::StartError;
pub use expiry::{expiry_horizon_ms, report_expiring};
pub use signer::{audit_key, signer_from};
pub use tls::{enrollment_tls_config, tls_server_config};
pub use tools_accept::{accept_tools, Accepted};

/// How often repeated admission refusals are summarized.
const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Builds the gateway from a validated config: resolves every secret,
/// starts every backend and pins its tools. `audit` overrides the
/// configured audit sink (tests keep records in memory).
///
/// Secrets are not refreshed by what this returns alone: hand it to
/// [`crate::reload::Reloader`] for the interval refresh and SIGHUP.
pub async fn build(
    config: &Config,
    audit: Option<Arc<AuditLog>>,
) -> Result<ServerParts, StartError> {
    let registry = config.load_registry(None)?;
    if registry.is_empty() {
        tracing::warn!(path = %config.registry.path.display(), "the client registry is empty: every request will be refused");
    }
    let tls = tls_server_config(config)?;
    let revoked = crate::tls::revoked_serials(&config.tls.crls)?;
    let signing_key_ref = config.signing.key_ref().map_err(StartError::Secrets)?;
    let secrets = resolve_secrets(config).await?;
    let signer = signer_from(&secrets, &signing_key_ref).map_err(StartError::Secrets)?;
    let audit = match audit {
        Some(a) => a,
        None => open_audit(config, &secrets, &signer)?,
    };
    let slots = start_backends(config, &secrets, None).await?;
    let router = Router::start(slots, audit.clone())
        .await
        .map_err(StartError::Backend)?;
    // Each sandboxed backend's layers, in force and missing, on the record.
    for slot in router.slots() {
        if let Some(report) = slot.backend.sandbox() {
            let ts = crate::audit::rfc3339_ms(crate::audit::unix_ms(std::time::SystemTime::now()));
            audit.write_event(&report.audit_event(slot.backend.name(), &ts));
        }
    }
    let skew_ms = i64::try_from(config.envelope.clock_skew_secs)
        .unwrap_or(600)
        .saturating_mul(1000);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        &config
            .backends
            .iter()
            .map(BackendConfig::name)
            .collect::<Vec<_>>(),
    ));
    let clock: Arc<dyn crate::gateway::Clock> = Arc::new(SystemClock);
    let anomaly = Arc::new(crate::policy::Anomaly::new(
        config.anomaly.clone(),
        audit.clone(),
    ));
    if let Some(path) = &config.anomaly.blocks_file {
        anomaly
            .persist_blocks(
                path,
                |p, text| {
                    crate::keys::replace_atomically(p, text, 0o600).map_err(|e| e.to_string())
                },
                clock.now_ms(),
            )
            .map_err(|message| StartError::File {
                field: "anomaly.blocks_file".into(),
                message,
            })?;
    }
    let state = shared_state(config, &secrets, &audit, &clock, &metrics).await?;
    if let Some(s) = &state {
        anomaly.share_with(s.clone());
    }
    let witnessing = crate::witnessing::witness_log(&config.audit, &audit)
        .map_err(|(field, message)| StartError::File { field, message })?
        .map(|(gate, collector)| {
            metrics.register_collector(collector);
            gate
        });
    let gateway = Arc::new(Gateway {
        audience: config.audience(),
        registry: ArcSwap::from_pointee(registry),
        revoked: ArcSwap::from_pointee(revoked),
        replay: Box::new(MemoryReplayStore::new(
            skew_ms,
            config.envelope.replay_capacity_per_client,
        )),
        signer: ArcSwap::from_pointee(signer),
        router,
        sanitize: config.sanitize.clone(),
        results: config.results.clone(),
        resource_schemes: Default::default(),
        secrets,
        signing_key_ref,
        audit: audit.clone(),
        witnessing,
        clock,
        refusals: crate::summary::Summary::new(REFUSAL_SUMMARY_INTERVAL, 4096),
        expiry_horizon_ms: expiry_horizon_ms(config),
        expiring_seen: Default::default(),
        metrics,
        anomaly,
        state,
        limits: RequestLimits {
            clock_skew_ms: skew_ms,
            max_envelope_bytes: config.envelope.max_envelope_bytes,
            json: crate::jsonrpc::Limits {
                max_depth: config.envelope.max_json_depth,
            },
        },
    });
    report_expiring(config, &gateway);
    // Counted refusals are reported every interval; the task ends with the
    // gateway.
    let weak = Arc::downgrade(&gateway);
    let every = REFUSAL_SUMMARY_INTERVAL;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            gw.report_refusals();
        }
    });
    Ok(ServerParts {
        gateway,
        tls: Arc::new(ArcSwap::new(tls)),
        transport: config.transport.clone(),
        trust_domain: config.trust_domain.clone(),
        stats: Arc::new(AcceptStats::default()),
    })
}
