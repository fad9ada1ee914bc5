//! What an operator's Prometheus sees: the gateway's metric families.
//!
//! Two kinds of figures. Those the request path produces (requests by
//! method, outcome and reason; latency per stage and end to end; backend
//! calls; handshake failures by alert) are counted here, through handles
//! created once at start: the hot path does an atomic add or a histogram
//! observation, never a string format or an allocation. Those other parts
//! already keep (the accept loop's [`AcceptStats`], the audit queue, the
//! replay cache, the backends' state, credential expiry) are read at scrape
//! time by [`crate::scrape`], so nothing is counted twice.
//!
//! Every label value is bounded: a static method, outcome, reason, stage or
//! alert name, or a configured backend name. Client ids become label values
//! only when `[metrics] client_labels` asks for them
//! ([`Metrics::label_clients`]), and then at most that many: the registry
//! ids of clients that passed stage 1, first come first served, the rest
//! counted together as [`OTHER_CLIENTS`]. This module never serves a
//! request, never sees a payload and never changes anything but its own
//! counters.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::audit::{AuditRecord, Outcome};
use crate::backend::BackendError;

/// One label: a static name and a static value.
type Label = (&'static str, &'static str);

/// The request path's stages as the latency histograms group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// 1 identity, 2 admission, 3 envelope (signature, freshness, replay).
    Authenticate,
    /// 4 message, 5 authorization, 6 arguments (schema, sanitizer).
    Prepare,
    /// 7 anomaly and 8 backend: the backend's answer.
    Backend,
    /// 9 the result checked (shape, outputSchema, filters, size) and
    /// serialised.
    Result,
    /// 10 the response envelope, signed.
    Seal,
    /// 11 the audit record committed.
    Audit,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Authenticate,
        Stage::Prepare,
        Stage::Backend,
        Stage::Result,
        Stage::Seal,
        Stage::Audit,
    ];

    /// The `stage` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Authenticate => "authenticate",
            Stage::Prepare => "prepare",
            Stage::Backend => "backend",
            Stage::Result => "result",
            Stage::Seal => "seal",
            Stage::Audit => "audit",
        }
    }
}

/// Latency buckets of a whole request, in seconds (0.5 ms to 30 s).
const REQUEST_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Latency buckets of one stage, in seconds (20 µs to 30 s).
const STAGE_BUCKETS: [f64; 16] = [
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0,
    5.0, 10.0, 30.0,
];

/// The handles of one configured backend, by its position in the config.
#[derive(Debug)]
struct BackendHandles {
    name: String,
    calls: Histogram,
    unavailable: Counter,
    timeout: Counter,
    protocol: Counter,
}

/// The `client` label value of every client past the `client_labels` cap.
/// No registry id can take it: ids begin with a letter or digit.
pub const OTHER_CLIENTS: &str = "_other";

/// The label set of `sealgate_client_requests_total`: the client (its id or
/// [`OTHER_CLIENTS`]), then outcome and reason.
type ClientRequestLabels = ([(&'static str, Arc<str>); 1], [Label; 2]);

/// `sealgate_client_requests_total` of `[metrics] client_labels`: requests
/// by client, outcome and reason, with at most `cap` distinct client ids.
struct ClientRequests {
    cap: usize,
    /// The ids that have a label of their own. It only grows, and never
    /// past `cap`: a slot is held for the life of the process, even by a
    /// client since removed from the registry.
    labelled: RwLock<HashSet<Arc<str>>>,
    /// [`OTHER_CLIENTS`], made once.
    other: Arc<str>,
    family: Family<ClientRequestLabels, Counter>,
}

impl ClientRequests {
    /// The label value of `id`: its own while it has one or a slot is
    /// free, else [`OTHER_CLIENTS`]. Only a new id takes the write lock
    /// (and allocates); once the cap is reached, none does.
    fn label(&self, id: &str) -> Arc<str> {
        {
            let labelled = self.labelled.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(label) = labelled.get(id) {
                return label.clone();
            }
            if labelled.len() >= self.cap {
                return self.other.clone();
            }
        }
        let mut labelled = self
            .labelled
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = labelled.get(id) {
            return label.clone();
        }
        if labelled.len() >= self.cap {
            return self.other.clone();
        }
        let label: Arc<str> = Arc::from(id);
        labelled.insert(label.clone());
        label
    }

    fn count(&self, id: &str, outcome: &'static str, reason: &'static str) {
        let labels = (
            [("client", self.label(id))],
            [("outcome", outcome), ("reason", reason)],
        );
        self.family.get_or_create(&labels).inc();
    }
}

/// The gateway's metrics: the registry every family is in, and the handles
/// the request path and the accept loop count through.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<[Label; 3], Counter>,
    /// End to end, by outcome (allowed, denied, cancelled).
    request_seconds: [Histogram; 3],
    stage_seconds: [Histogram; 6],
    in_flight: Gauge,
    /// Calls answered AUDIT_UNAVAILABLE, by how: `refused` (the request
    /// path refused it) or `withheld` (concluded, then its record could not
    /// be committed). Both rows exist from the start.
    audit_unavailable: [Counter; 2],
    handshake_failures: Family<[Label; 1], Counter>,
    backends: Vec<BackendHandles>,
    /// `[metrics] client_labels`: set once, before serving; unset, no
    /// client id is ever a label.
    clients: OnceLock<ClientRequests>,
    /// Set once SIGTERM or SIGINT arrived: `/readyz` and grpc.health say
    /// NOT_SERVING while the calls in flight finish.
    draining: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every family; `backends` are the configured backend names,
    /// in config order (the router's slots).
    pub fn new(backends: &[&str]) -> Metrics {
        let mut registry = Registry::with_prefix("sealgate");
        let requests = Family::<[Label; 3], Counter>::default();
        registry.register(
            "requests",
            "Requests by JSON-RPC method, outcome (allowed, denied, cancelled) and denial reason",
            requests.clone(),
        );
        let request_family = Family::<[Label; 1], Histogram, _>::new_with_constructor(|| {
            Histogram::new(REQUEST_BUCKETS)
        });
        registry.register(
            "request_duration_seconds",
            "Time from the call's arrival to its answer, by outcome",
            request_family.clone(),
        );
        let request_seconds = [Outcome::Allowed, Outcome::Denied, Outcome::Cancelled].map(|o| {
            request_family
                .get_or_create(&[("outcome", outcome_str(o))])
                .clone()
        });
        let stage_family = Family::<[Label; 1], Histogram, _>::new_with_constructor(|| {
            Histogram::new(STAGE_BUCKETS)
        });
        registry.register(
            "stage_duration_seconds",
            "Time spent in each stage of the request path, by requests that completed it",
            stage_family.clone(),
        );
        let stage_seconds =
            Stage::ALL.map(|s| stage_family.get_or_create(&[("stage", s.as_str())]).clone());
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Calls being processed now",
            in_flight.clone(),
        );
        let audit_unavailable_family = Family::<[Label; 1], Counter>::default();
        registry.register(
            "audit_unavailable_answers",
            "Calls answered AUDIT_UNAVAILABLE: refused (by the request path), or withheld (concluded and counted in sealgate_requests_total, then their audit record could not be committed)",
            audit_unavailable_family.clone(),
        );
        let audit_unavailable = ["refused", "withheld"].map(|how| {
            audit_unavailable_family
                .get_or_create(&[("how", how)])
                .clone()
        });
        let handshake_failures = Family::<[Label; 1], Counter>::default();
        for cause in HANDSHAKE_FAILURE_CAUSES {
            let _ = handshake_failures.get_or_create(&[("cause", cause)]);
        }
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that did not complete, by the alert or cause",
            handshake_failures.clone(),
        );
        let call_family =
            Family::<[(&'static str, String); 1], Histogram, _>::new_with_constructor(|| {
                Histogram::new(STAGE_BUCKETS)
            });
        registry.register(
            "backend_call_duration_seconds",
            "Time a backend took to answer a forwarded call",
            call_family.clone(),
        );
        let error_family = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "backend_errors",
            "Forwarded calls a backend did not answer usefully, by kind (unavailable, timeout, protocol)",
            error_family.clone(),
        );
        let backends = backends
            .iter()
            .map(|name| {
                let error = |kind: &str| {
                    error_family
                        .get_or_create(&[
                            ("backend", (*name).to_string()),
                            ("kind", kind.to_string()),
                        ])
                        .clone()
                };
                BackendHandles {
                    name: (*name).to_string(),
                    calls: call_family
                        .get_or_create(&[("backend", (*name).to_string())])
                        .clone(),
                    unavailable: error("unavailable"),
                    timeout: error("timeout"),
                    protocol: error("protocol"),
                }
            })
            .collect();
        let info = Family::<[Label; 1], Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "The running sealgate version", info);
        Metrics {
            registry: Mutex::new(registry),
            requests,
            request_seconds,
            stage_seconds,
            in_flight,
            audit_unavailable,
            handshake_failures,
            backends,
            clients: OnceLock::new(),
            draining: tokio::sync::watch::Sender::new(false),
        }
    }

    /// `[metrics] client_labels`: registers `sealgate_client_requests_total`
    /// (requests by client, outcome and reason) in which at most `cap`
    /// client ids get a label value of their own, first come first served
    /// until the process ends; the requests of every later client are
    /// counted under `client="_other"`. Counted are the requests of
    /// clients that passed stage 1 (a verified certificate whose identity
    /// is a registered, enabled client), labelled with the registry's
    /// client id; a request refused before that is in
    /// `sealgate_requests_total` only. `cap` 0 leaves the family out.
    /// Called once, before serving: the requests concluded before it are
    /// not counted per client, and a second call changes nothing (`false`).
    pub fn label_clients(&self, cap: u32) -> bool {
        if cap == 0 || self.clients.get().is_some() {
            return false;
        }
        let family = Family::<ClientRequestLabels, Counter>::default();
        let clients = ClientRequests {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            labelled: RwLock::new(HashSet::new()),
            other: Arc::from(OTHER_CLIENTS),
            family: family.clone(),
        };
        if self.clients.set(clients).is_err() {
            return false;
        }
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(
                "client_requests",
                "Requests of clients that passed the identity stage, by registry client id (at most [metrics] client_labels ids since the process started, the rest as _other), outcome and denial reason",
                family,
            );
        true
    }

    /// A request concluded: counted by method, outcome and reason, its
    /// whole duration observed, and its request span told who, what and
    /// how it ended.
    pub fn request(
        &self,
        record: &AuditRecord,
        outcome: Outcome,
        reason: Option<&'static str>,
        elapsed: Duration,
    ) {
        let method = record.method;
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("method", method.unwrap_or("unknown"));
            span.record("outcome", outcome_str(outcome));
            if let Some(r) = reason {
                span.record("reason", r);
            }
            if let Some(id) = &record.client_id {
                span.record("client.id", id.as_str());
            }
            // request.digest was recorded as soon as the signature held
            // (crate::traces::correlate), for the log lines before this.
        }
        self.requests
            .get_or_create(&[
                ("method", method.unwrap_or("unknown")),
                ("outcome", outcome_str(outcome)),
                ("reason", reason.unwrap_or("")),
            ])
            .inc();
        if reason == Some("AUDIT_UNAVAILABLE") {
            self.audit_unavailable[0].inc();
        }
        if let (Some(clients), true, Some(id)) = (
            self.clients.get(),
            record.identity_passed,
            record.client_id.as_deref(),
        ) {
            clients.count(id, outcome_str(outcome), reason.unwrap_or(""));
        }
        let i = match outcome {
            Outcome::Allowed => 0,
            Outcome::Denied => 1,
            Outcome::Cancelled => 2,
        };
        self.request_seconds[i].observe(elapsed.as_secs_f64());
    }

    /// A concluded call's answer was withheld: its record could not be
    /// committed.
    pub fn answer_withheld(&self) {
        self.audit_unavailable[1].inc();
    }

    /// Starts timing the stages of one request (and, when traces are
    /// exported, a child span of the request per stage).
    pub fn stages(&self) -> StageTimer<'_> {
        StageTimer {
            metrics: self,
            last: Instant::now(),
            span: stage_span(Stage::Authenticate),
        }
    }

    /// Runs `stage` (the audit commit), timed and in its own span.
    pub async fn stage_of<F: std::future::Future>(&self, stage: Stage, fut: F) -> F::Output {
        use tracing::Instrument as _;
        let started = Instant::now();
        let out = fut.instrument(stage_span(stage)).await;
        self.stage(stage, started.elapsed());
        out
    }

    /// Observes `elapsed` for `stage`.
    pub fn stage(&self, stage: Stage, elapsed: Duration) {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.stage_seconds[i].observe(elapsed.as_secs_f64());
    }

    /// Counts a call in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Runs a forwarded call to the backend at `slot`: timed, its errors
    /// counted by kind, in a `backend_call` span.
    pub async fn backend_call<T>(
        &self,
        slot: usize,
        call: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        use tracing::Instrument as _;
        let name = self.backends.get(slot).map_or("", |b| b.name.as_str());
        let span =
            tracing::debug_span!(target: crate::traces::TARGET, "backend_call", backend = name);
        let started = Instant::now();
        let result = call.instrument(span).await;
        self.observe_backend_call(slot, started.elapsed(), &result);
        result
    }

    fn observe_backend_call<T>(
        &self,
        slot: usize,
        elapsed: Duration,
        result: &Result<T, BackendError>,
    ) {
        let Some(b) = self.backends.get(slot) else {
            return;
        };
        b.calls.observe(elapsed.as_secs_f64());
        match result {
            Ok(_) => {}
            Err(BackendError::Unavailable) => {
                b.unavailable.inc();
            }
            Err(BackendError::Timeout) => {
                b.timeout.inc();
            }
            Err(BackendError::Protocol) => {
                b.protocol.inc();
            }
        }
    }

    /// A TLS handshake failed: `cause` is an alert name or `timed_out` /
    /// `abandoned` (see [`handshake_failure_cause`]).
    pub fn handshake_failed(&self, cause: &'static str) {
        self.handshake_failures
            .get_or_create(&[("cause", cause)])
            .inc();
    }

    /// Registers the shared state store's families (`[state] kind =
    /// "redis"` only) and returns their handles.
    pub fn register_state(&self) -> crate::state::StateMetrics {
        let round_trip = Histogram::new(STAGE_BUCKETS);
        let failures = Family::<[Label; 1], Counter>::default();
        for kind in crate::state::FAILURE_KINDS {
            let _ = failures.get_or_create(&[("kind", kind)]);
        }
        let mode = Family::<[Label; 1], Gauge>::default();
        let local_decisions = Counter::default();
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(
            "state_store_round_trip_seconds",
            "Round trips to the shared state store that completed (one per call, its replay, rate and block check)",
            round_trip.clone(),
        );
        registry.register(
            "state_store_failures",
            "Round trips and connection attempts to the shared state store that failed, by kind (timeout, error, connect, refused, protocol)",
            failures.clone(),
        );
        registry.register(
            "state_store_mode",
            "1 for the mode in force: shared (the store answers), local (away; this replica's own state) or unavailable (away; calls refused)",
            mode.clone(),
        );
        registry.register(
            "state_local_decisions",
            "Calls whose replay check was decided on this replica's own state while the shared store was away",
            local_decisions.clone(),
        );
        crate::state::StateMetrics {
            round_trip,
            failures,
            mode,
            local_decisions,
        }
    }

    /// The process stops: health checks say NOT_SERVING from now on.
    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the process is stopping.
    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Sees the stop begin (the grpc.health task reacts at once).
    pub fn watch_draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Adds the figures other parts keep, read at each scrape (see
    /// [`crate::scrape`]).
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register_collector(Box::new(collector));
    }

    /// The Prometheus text exposition (OpenMetrics 1.0) of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# metrics could not be encoded");
        }
        out
    }
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::Cancelled => "cancelled",
    }
}

/// Times the stages of one request: each [`StageTimer::lap`] observes the
/// time since the previous one (or since the start) for that stage, ends
/// its span and opens the next stage's.
pub struct StageTimer<'a> {
    metrics: &'a Metrics,
    last: Instant,
    /// The running stage's span (disabled unless traces are exported).
    span: tracing::Span,
}

impl StageTimer<'_> {
    /// `stage` just completed.
    pub fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.metrics.stage(stage, now.duration_since(self.last));
        self.last = now;
        let next = match stage {
            Stage::Authenticate => Some(Stage::Prepare),
            Stage::Prepare => Some(Stage::Backend),
            Stage::Backend => Some(Stage::Result),
            Stage::Result => Some(Stage::Seal),
            Stage::Seal | Stage::Audit => None,
        };
        self.span = next.map_or_else(tracing::Span::none, stage_span);
    }
}

/// The span of one stage, a child of the request span (names only).
fn stage_span(stage: Stage) -> tracing::Span {
    tracing::debug_span!(target: crate::traces::TARGET, "stage", otel.name = stage.as_str())
}

/// Counts one call in flight; dropping it ends the count.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every `cause` of `sealgate_tls_handshake_failures_total`: each row is
/// there at 0 from the start, so a first failure is an increase.
pub const HANDSHAKE_FAILURE_CAUSES: [&str; 12] = [
    "certificate_required",
    "unknown_ca",
    "certificate_expired",
    "certificate_revoked",
    "bad_certificate",
    "protocol_version",
    "decode_error",
    "illegal_parameter",
    "alert_received",
    "abandoned",
    "timed_out",
    "other",
];

/// The metrics label of a failed handshake: the TLS alert the gateway sent
/// for the error (or `alert_received` when the client sent one), else the
/// peer's going away.
pub fn handshake_failure_cause(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return "abandoned";
    };
    match tls {
        E::NoCertificatesPresented => "certificate_required",
        E::InvalidCertificate(c) => match c {
            C::Revoked => "certificate_revoked",
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "certificate_expired",
            C::UnknownIssuer => "unknown_ca",
            _ => "bad_certificate",
        },
        E::PeerIncompatible(_) => "protocol_version",
        E::AlertReceived(_) => "alert_received",
        E::InvalidMessage(_) => "decode_error",
        E::PeerMisbehaved(_) => "illegal_parameter",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
