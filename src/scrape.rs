//! The metrics listener: `/metrics`, `/healthz` and `/readyz` on plain
//! HTTP, and the figures read from the running gateway at each scrape.
//!
//! [`crate::metrics`] counts what the request path produces; this module
//! adds, at scrape time, what other parts already keep: the accept loop's
//! [`AcceptStats`], connections open, the backends' state, the audit
//! queue, the replay cache, anomaly actions and how long each credential
//! has left. It only reads: it never changes the gateway or a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::peer::AcceptStats;

/// Scrape-time figures: the accept loop's counters, connections open, the
/// backends' state, the audit trail's queue, the replay cache, anomaly
/// actions and how long each credential has left.
#[derive(Debug)]
pub struct StateCollector {
    gateway: Weak<Gateway>,
    stats: Arc<AcceptStats>,
    config: Config,
    /// The last count of blocks and throttles in force, and when: counting
    /// walks the anomaly tables under the locks the request path takes, so
    /// scrapes (unauthenticated, possibly many) walk them at most once per
    /// [`RESTRICTIONS_MAX_AGE`].
    restrictions: std::sync::Mutex<Option<(std::time::Instant, RestrictionCounts)>>,
}

type RestrictionCounts = Vec<((&'static str, &'static str, &'static str), i64)>;

/// How long a count of restrictions in force is reused by scrapes.
const RESTRICTIONS_MAX_AGE: Duration = Duration::from_secs(1);

/// The anomaly actions whose counter rows exist from the start (at 0), for
/// every detector: a first block is then an increase.
const ANOMALY_ACTIONS: [&str; 3] = ["alert", "throttle", "block"];

impl StateCollector {
    /// Reads `gateway` (while it lives), `stats` and the credential files
    /// named in `config`.
    pub fn new(gateway: &Arc<Gateway>, stats: Arc<AcceptStats>, config: Config) -> Self {
        StateCollector {
            gateway: Arc::downgrade(gateway),
            stats,
            config,
            restrictions: std::sync::Mutex::new(None),
        }
    }
}

/// Encodes one metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

/// Encodes one metric family of (labels, value) rows.
fn rows<L: prometheus_client::encoding::EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(L, M)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        value.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &*self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        rows(
            &mut enc,
            "tls_handshakes",
            "Connections by how their TLS handshake ended (ok, failed, timed_out) or why they were closed at accept (shed, shed_per_source, blocked_source, out_of_fds)",
            MetricType::Counter,
            &[
                ([("result", "ok")], ConstCounter::new(load(&s.handshakes_ok))),
                (
                    [("result", "failed")],
                    ConstCounter::new(load(&s.handshakes_failed)),
                ),
                (
                    [("result", "timed_out")],
                    ConstCounter::new(load(&s.handshakes_timed_out)),
                ),
                (
                    [("result", "shed")],
                    ConstCounter::new(load(&s.handshakes_shed)),
                ),
                (
                    [("result", "shed_per_source")],
                    ConstCounter::new(load(&s.handshakes_shed_per_source)),
                ),
                (
                    [("result", "blocked_source")],
                    ConstCounter::new(load(&s.connections_from_blocked_sources)),
                ),
                (
                    [("result", "out_of_fds")],
                    ConstCounter::new(load(&s.connections_refused_out_of_fds)),
                ),
            ],
        )?;
        single(
            &mut enc,
            "connection_read_holds",
            "Times a connection's reads were held because its calls were refused for its identity's rate 16 times in a row",
            &ConstCounter::new(load(&s.reads_held)),
        )?;
        single(
            &mut enc,
            "tls_handshakes_post_quantum",
            "Completed handshakes whose key exchange was X25519MLKEM768",
            &ConstCounter::new(load(&s.handshakes_post_quantum)),
        )?;
        single(
            &mut enc,
            "connections_open",
            "Authenticated connections open now",
            &ConstGauge::new(load(&s.connections_open) as i64),
        )?;
        if let Some((used, limit)) = crate::memory::last_reading() {
            single(
                &mut enc,
                "memory_used_bytes",
                "Memory in use against the limit below (cgroup v2 working set, or address space under RLIMIT_AS)",
                &ConstGauge::new(i64::try_from(used).unwrap_or(i64::MAX)),
            )?;
            single(
                &mut enc,
                "memory_limit_bytes",
                "The memory limit new calls are admitted under (refused with MEMORY_PRESSURE at 90% of it)",
                &ConstGauge::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            )?;
        }
        rows(
            &mut enc,
            "connections_closed",
            "Connections the gateway closed, by reason",
            MetricType::Counter,
            &[
                (
                    [("reason", "idle")],
                    ConstCounter::new(load(&s.idle_closed)),
                ),
                (
                    [("reason", "max_age")],
                    ConstCounter::new(load(&s.connections_aged_out)),
                ),
                (
                    [("reason", "identity_denials")],
                    ConstCounter::new(load(&s.connections_closed_for_identity_denials)),
                ),
                (
                    [("reason", "max_connections")],
                    ConstCounter::new(load(&s.connections_over_capacity)),
                ),
                (
                    [("reason", "identity_connection_cap")],
                    ConstCounter::new(load(&s.connections_over_identity_cap)),
                ),
            ],
        )?;
        let Some(gw) = self.gateway.upgrade() else {
            return Ok(());
        };
        let ready = crate::health::serving(&gw);
        single(
            &mut enc,
            "ready",
            "1 while the gateway serves (every backend up and its tools pinned, the audit trail taking records, not stopping)",
            &ConstGauge::new(i64::from(ready)),
        )?;
        let router = &gw.router;
        let names: Vec<String> = router
            .slots()
            .iter()
            .map(|s| s.backend.name().to_string())
            .collect();
        let up: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    [("backend", n.as_str())],
                    ConstGauge::new(i64::from(router.is_ready(i))),
                )
            })
            .collect();
        rows(
            &mut enc,
            "backend_up",
            "1 while the backend runs and its current tools are listed and checked against the pins",
            MetricType::Gauge,
            &up,
        )?;
        let restarts: Vec<_> = router
            .slots()
            .iter()
            .zip(&names)
            .map(|(s, n)| {
                (
                    [("backend", n.as_str())],
                    ConstCounter::new(s.backend.restarts()),
                )
            })
            .collect();
        rows(
            &mut enc,
            "backend_restarts",
            "Times a backend's process was restarted",
            MetricType::Counter,
            &restarts,
        )?;
        let egress: Vec<_> = router
            .slots()
            .iter()
            .zip(&names)
            .flat_map(|(s, n)| {
                let t = s.backend.egress_counts();
                [
                    ("connected", t.connected),
                    ("failed", t.failed),
                    ("refused", t.refused),
                    ("limited", t.limited),
                ]
                .map(|(result, v)| {
                    (
                        [("backend", n.as_str()), ("result", result)],
                        ConstCounter::new(v),
                    )
                })
            })
            .collect();
        let refused: Vec<_> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                router.refused_tools(i).map(|(why, count)| {
                    (
                        [("backend", n.as_str()), ("why", why)],
                        ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX)),
                    )
                })
            })
            .collect();
        rows(
            &mut enc,
            "backend_tools_refused",
            "Tools a backend's last listing offered that are not served: changed (the definition differs from its pin: a rug pull), added (not pinned), invalid (a bad definition, a name listed twice or a clash)",
            MetricType::Gauge,
            &refused,
        )?;
        let changed: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    [("backend", n.as_str())],
                    ConstCounter::new(router.changed_tools_total(i)),
                )
            })
            .collect();
        rows(
            &mut enc,
            "backend_tool_definitions_changed",
            "Tools a backend listed with a definition other than its pin, summed over its listings since start (a change it undid before a scrape still counts)",
            MetricType::Counter,
            &changed,
        )?;
        rows(
            &mut enc,
            "backend_egress_connections",
            "Connections a stdio backend with egress by host name opened through the gateway's relay: connected; failed (not resolved or reached); refused (the name resolved only to addresses that are not public); limited (over the new-connection rate). 0 for other backends",
            MetricType::Counter,
            &egress,
        )?;
        // The sandbox of each stdio backend that has one, as its helper
        // reported it at the child's last start.
        let reports: Vec<_> = router
            .slots()
            .iter()
            .zip(&names)
            .filter_map(|(s, n)| Some((n, s.backend.sandbox()?)))
            .collect();
        let layers: Vec<_> = reports
            .iter()
            .flat_map(|(n, r)| {
                r.layers().map(|(layer, on)| {
                    (
                        [("backend", n.as_str()), ("layer", layer)],
                        ConstGauge::new(i64::from(on)),
                    )
                })
            })
            .collect();
        rows(
            &mut enc,
            "backend_sandbox_layers",
            "1 for each sandbox layer in force for a stdio backend's current process, 0 for one not in force (not asked for, or missing from the kernel)",
            MetricType::Gauge,
            &layers,
        )?;
        let degraded: Vec<_> = reports
            .iter()
            .map(|(n, r)| {
                (
                    [("backend", n.as_str())],
                    ConstGauge::new(i64::from(r.degraded())),
                )
            })
            .collect();
        rows(
            &mut enc,
            "backend_sandbox_degraded",
            "1 while a stdio backend runs with less isolation than configured (sandbox = \"best-effort\" and the kernel lacks a layer it asked for)",
            MetricType::Gauge,
            &degraded,
        )?;
        single(
            &mut enc,
            "replay_cache_nonces",
            "Nonces remembered by this process's replay cache now (with a shared state store: those of a local fallback)",
            &ConstGauge::new(
                gw.state
                    .as_ref()
                    .map_or_else(|| gw.replay.nonces(), |s| s.local_nonces())
                    as i64,
            ),
        )?;
        let audit = &gw.audit;
        single(
            &mut enc,
            "audit_queue_depth",
            "Audit records and events queued for the writer",
            &ConstGauge::new(audit.queue_depth() as i64),
        )?;
        single(
            &mut enc,
            "audit_sink_failures",
            "Failed attempts to deliver to an audit sink",
            &ConstCounter::new(audit.sink_failures()),
        )?;
        single(
            &mut enc,
            "audit_available",
            "1 while every audit sink that must hold records takes them (else calls are refused with AUDIT_UNAVAILABLE)",
            &ConstGauge::new(i64::from(audit.available())),
        )?;
        single(
            &mut enc,
            "audit_queue_capacity",
            "[audit] queue_capacity: the queue depth at which calls are refused with AUDIT_UNAVAILABLE",
            &ConstGauge::new(i64::try_from(self.config.audit.queue_capacity).unwrap_or(i64::MAX)),
        )?;
        let sinks = audit.sinks();
        let index: Vec<String> = (0..sinks.len()).map(|i| i.to_string()).collect();
        let sink_rows = |value: fn(&crate::audit::SinkState) -> i64| -> Vec<_> {
            sinks
                .iter()
                .zip(&index)
                .map(|(s, i)| {
                    (
                        [("sink", i.as_str()), ("kind", s.kind)],
                        ConstGauge::new(value(s)),
                    )
                })
                .collect()
        };
        rows(
            &mut enc,
            "audit_sink_up",
            "1 while an audit sink takes records, 0 from a failed delivery until one succeeds (sink: its position in [[audit.sink]], from 0)",
            MetricType::Gauge,
            &sink_rows(|s| i64::from(s.up)),
        )?;
        let failures: Vec<_> = sinks
            .iter()
            .zip(&index)
            .map(|(s, i)| {
                (
                    [("sink", i.as_str()), ("kind", s.kind)],
                    ConstCounter::new(s.failures),
                )
            })
            .collect();
        rows(
            &mut enc,
            "audit_sink_delivery_failures",
            "Failed deliveries to an audit sink since start (a failure between two scrapes still counts)",
            MetricType::Counter,
            &failures,
        )?;
        rows(
            &mut enc,
            "audit_sink_backlog_records",
            "Records waiting in memory for an audit sink",
            MetricType::Gauge,
            &sink_rows(|s| i64::try_from(s.backlog).unwrap_or(i64::MAX)),
        )?;
        rows(
            &mut enc,
            "audit_sink_spooled_records",
            "Records in an audit sink's spool file, not yet re-sent (on_failure = \"spool\")",
            MetricType::Gauge,
            &sink_rows(|s| i64::try_from(s.spooled).unwrap_or(i64::MAX)),
        )?;
        let mut counted = audit.anomaly_actions();
        for detector in crate::policy::anomaly::DETECTORS {
            for action in ANOMALY_ACTIONS {
                if !counted.iter().any(|(k, _)| *k == (detector, action)) {
                    counted.push(((detector, action), 0));
                }
            }
        }
        counted.sort();
        let actions: Vec<_> = counted
            .into_iter()
            .map(|((detector, action), n)| {
                (
                    [("detector", detector), ("action", action)],
                    ConstCounter::new(n),
                )
            })
            .collect();
        rows(
            &mut enc,
            "anomaly_actions",
            "Anomaly detector actions (alert, throttle, block, their expiry, unblock)",
            MetricType::Counter,
            &actions,
        )?;
        let now = gw.clock.now_ms();
        let imposed = {
            let mut cached = self.restrictions.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some((at, counts)) if at.elapsed() < RESTRICTIONS_MAX_AGE => counts.clone(),
                _ => {
                    let counts = gw.anomaly.restriction_counts(now);
                    *cached = Some((std::time::Instant::now(), counts.clone()));
                    counts
                }
            }
        };
        let imposed: Vec<_> = imposed
            .into_iter()
            .map(|((subject, action, detector), n)| {
                (
                    [
                        ("subject", subject),
                        ("action", action),
                        ("detector", detector),
                    ],
                    ConstGauge::new(n),
                )
            })
            .collect();
        rows(
            &mut enc,
            "anomaly_restrictions",
            "Blocks and throttles this replica holds in force now (as of at most a second ago), by subject (identity, source), action and detector",
            MetricType::Gauge,
            &imposed,
        )?;
        single(
            &mut enc,
            "credential_expiry_warning_seconds",
            "[expiry] warning_days in seconds: a credential with less left than this is warned about",
            &ConstGauge::new(i64::from(self.config.expiry.warning_days) * 86_400),
        )?;
        let registry = gw.registry.load();
        let items = crate::expiry::scan(&self.config, &registry, now, i64::MAX / 4);
        let mut soonest: Vec<(&'static str, i64)> = Vec::new();
        // Client keys: when a client runs out of valid keys, not when a key
        // a renewal superseded ends (every renewal would page); a client
        // already without one is counted apart (it would hold the gauge
        // negative and hide the next one).
        let (run_out, without) = crate::expiry::client_keys_outlook(&registry, now);
        if let Some(ms) = run_out {
            soonest.push(("signing_key", ms));
        }
        single(
            &mut enc,
            "clients_without_valid_key",
            "Enabled clients with signing keys none of which is valid now (all ended, or the next not started): their calls are refused with KEY_NOT_VALID_NOW",
            &ConstGauge::new(i64::try_from(without).unwrap_or(i64::MAX)),
        )?;
        for item in items.iter().filter(|i| i.what != "signing_key") {
            match soonest.iter_mut().find(|(w, _)| *w == item.what) {
                Some((_, ms)) => *ms = (*ms).min(item.not_after_ms),
                None => soonest.push((item.what, item.not_after_ms)),
            }
        }
        let left: Vec<_> = soonest
            .iter()
            .map(|(what, ms)| {
                (
                    [("credential", *what)],
                    ConstGauge::new((ms - now).div_euclid(1000)),
                )
            })
            .collect();
        rows(
            &mut enc,
            "credential_expiry_seconds",
            "Seconds until the soonest end of each kind of credential (server_certificate, client_ca, crl next update; signing_key: the first enabled client with a valid key now to run out of valid keys); negative once past",
            MetricType::Gauge,
            &left,
        )?;
        Ok(())
    }
}

/// Connections the metrics listener serves at once; more are closed at
/// accept (scrapers and probes need a handful).
const MAX_METRICS_CONNECTIONS: usize = 32;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (plain
/// HTTP/1.1) until `shutdown` completes. Anything else is 404; only GET
/// and HEAD are answered. At most [`MAX_METRICS_CONNECTIONS`] at once,
/// each for 30 s at most.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(answer(&gateway, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

fn answer<B>(
    gateway: &Gateway,
    req: &http::Request<B>,
) -> http::Response<http_body_util::Full<Bytes>> {
    let text = |status: http::StatusCode, ctype: &'static str, body: String| {
        let mut r = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ctype),
        );
        r
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return text(
            http::StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.metrics.encode(),
        ),
        "/healthz" => text(http::StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            // A degraded sandbox does not stop the gateway serving, but
            // the probe's detail names it.
            let warnings: String = crate::health::sandbox_degraded(gateway)
                .iter()
                .map(|w| format!("warning: {w}\n"))
                .collect();
            if crate::health::serving(gateway) {
                text(http::StatusCode::OK, PLAIN, format!("ready\n{warnings}"))
            } else {
                text(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    format!("not ready: {}\n{warnings}", crate::health::why_not(gateway)),
                )
            }
        }
        _ => text(http::StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

/// Binds `[metrics] listen`; the error names the field.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))
}
