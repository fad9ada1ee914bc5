//! The shared state store step (`[state]`): connected at start, or the
//! replica starts on its own state, as `on_failure` says.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::secrets::Secrets;

use super::error::StartError;

/// The shared state store of `[state] kind = "redis"`, connected; `None`
/// for `kind = "local"`. A store that cannot be reached stops the start
/// with `on_failure = "fail_closed"` (a replica that could serve nothing);
/// with `"local"` the replica starts on its own state and turns to the
/// store when it answers.
pub(super) async fn shared_state(
    config: &Config,
    secrets: &Arc<Secrets>,
    audit: &Arc<AuditLog>,
    clock: &Arc<dyn crate::gateway::Clock>,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<Arc<crate::state::SharedState>>, StartError> {
    if !config.state.shared() {
        return Ok(None);
    }
    let state = Arc::new(
        crate::state::SharedState::new(
            &config.state,
            crate::state::StateSetup {
                skew_ms: i64::try_from(config.envelope.clock_skew_secs)
                    .unwrap_or(600)
                    .saturating_mul(1000),
                replay_capacity_per_client: config.envelope.replay_capacity_per_client,
                throttle: config.anomaly.throttle,
                secrets: secrets.clone(),
                audit: audit.clone(),
                clock: {
                    let clock = clock.clone();
                    Arc::new(move || clock.now_ms())
                },
                metrics: metrics.register_state(),
            },
        )
        .map_err(StartError::State)?,
    );
    if let Err(e) = state.start().await {
        match config.state.on_failure {
            crate::state::OnFailure::FailClosed => return Err(StartError::State(e)),
            crate::state::OnFailure::Local => {
                state.start_on_own();
                tracing::error!(error = %e, "starting on this replica's own state (on_failure = \"local\") until the shared state store answers");
            }
        }
    }
    Ok(Some(state))
}
