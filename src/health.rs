//! Whether the gateway serves, as orchestrators ask it: `grpc.health.v1`
//! on the mTLS port (tonic-health, per service) and `/readyz` on the
//! metrics listener give the same answer.
//!
//! The gateway service is SERVING only while every configured backend runs
//! with its current tools listed and checked against the pins, the audit
//! trail takes records, the shared state store (if any) answers or
//! `on_failure = "local"` lets it serve without, and no stop signal has
//! arrived. The admin service
//! needs no backend: it is SERVING until the stop. This module only reads
//! state; it never changes what a request gets.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;

use crate::gateway::Gateway;

/// How often the grpc.health statuses are recomputed (a watcher sees a
/// change within this).
const POLL: Duration = Duration::from_millis(500);

/// The gateway service's name in grpc.health (its full protobuf name).
pub const GATEWAY_SERVICE: &str = "sealgate.v1.McpGatewayService";
/// The admin service's name in grpc.health.
pub const ADMIN_SERVICE: &str = "sealgate.v1.AdminService";

/// Whether the gateway answers calls now.
pub fn serving(gateway: &Gateway) -> bool {
    why_not(gateway).is_empty()
}

/// What keeps the gateway from serving, in words; empty when it serves.
pub fn why_not(gateway: &Gateway) -> String {
    let mut reasons = Vec::new();
    if gateway.metrics.draining() {
        reasons.push("stopping".to_string());
    }
    if !gateway.audit.available() {
        reasons.push("the audit trail cannot take records".to_string());
    }
    if gateway.witnessing.as_ref().is_some_and(|w| w.refusing()) {
        reasons.push("no quorum of witnesses cosigns the audit log (fail_closed)".to_string());
    }
    if let Some(state) = &gateway.state {
        // Fail-closed and away: every call would be STATE_UNAVAILABLE, so
        // a balancer should prefer a replica that reaches the store.
        if state.mode() == crate::state::Mode::Unavailable {
            reasons.push(format!(
                "the shared state store {} cannot be reached",
                state.endpoint()
            ));
        }
    }
    for (i, slot) in gateway.router.slots().iter().enumerate() {
        if !gateway.router.is_ready(i) {
            reasons.push(format!(
                "backend {:?} is down or its tools are not re-listed",
                slot.backend.name()
            ));
        }
    }
    reasons.join("; ")
}

/// The grpc.health.v1 service for `gateway`, and the task that keeps its
/// statuses current. `""` (the whole server) follows the gateway service.
/// Once the gateway drains, every status turns NOT_SERVING and then is
/// withdrawn, which ends every `Watch` stream: an open watch never holds
/// the stop up until its deadline.
pub fn service(
    gateway: &Arc<Gateway>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (mut reporter, service) = tonic_health::server::health_reporter();
    let weak = Arc::downgrade(gateway);
    let mut draining_rx = gateway.metrics.watch_draining();
    let status = |up: bool| {
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        loop {
            let Some(gw) = weak.upgrade() else { return };
            let gateway_up = serving(&gw);
            let draining = gw.metrics.draining();
            drop(gw);
            for (name, up) in [
                (GATEWAY_SERVICE, gateway_up),
                ("", gateway_up),
                (ADMIN_SERVICE, !draining),
            ] {
                reporter.set_service_status(name, status(up)).await;
            }
            if draining {
                // Watchers read NOT_SERVING, then their streams end.
                tokio::time::sleep(Duration::from_millis(100)).await;
                for name in [GATEWAY_SERVICE, "", ADMIN_SERVICE] {
                    reporter.clear_service_status(name).await;
                }
                return;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = draining_rx.wait_for(|d| *d) => {}
            }
        }
    });
    service
}

/// Each sandboxed backend that runs with less isolation than configured
/// (`best-effort` on a kernel that lacks a layer): `/readyz` names it (the
/// gateway still serves). How many layers, not which nor why: the probe is
/// unauthenticated, and the kernel's gaps are reconnaissance; the log, the
/// `backend_sandbox` audit event and the metric name them.
pub fn sandbox_degraded(gateway: &Gateway) -> Vec<String> {
    gateway
        .router
        .slots()
        .iter()
        .filter_map(|slot| {
            let report = slot.backend.sandbox()?;
            report.degraded().then(|| {
                let n = report.missing.len();
                format!(
                    "backend {:?} runs with less isolation than configured ({n} layer{} missing; named in the log, the audit trail and sealgate_backend_sandbox_layers)",
                    slot.backend.name(),
                    if n == 1 { "" } else { "s" },
                )
            })
        })
        .collect()
}
