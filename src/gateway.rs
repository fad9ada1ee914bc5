//! The tonic service that runs every stage of a request, in order.
//!
//! identity → admission → envelope → message → authorization → backend →
//! seal → audit. Cheap checks come first; the Ed25519 signature is verified
//! before any JSON is parsed; a nonce is recorded only after its signature
//! held. Each stage returns a [`Denial`] on failure; [`Denial::to_status`]
//! is the only place a denial becomes a gRPC status. Every request, allowed
//! or denied, produces exactly one audit record, except that a repeated
//! admission refusal of the same identity (or source) and reason is counted
//! into one summary record per interval instead. A call is answered only
//! once its record is committed ([`Gateway::finish`]); while the audit
//! trail cannot take records, calls are refused with `AUDIT_UNAVAILABLE`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use prost::Message as _;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::backend::router::Router;
use crate::backend::Reply;
use crate::envelope::{self, Direction, Seal};
use crate::error::{route_denial, Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity, Registry};
use crate::jsonrpc::{self, Method};
use crate::peer::{DenialTurn, PeerInfo};
use crate::policy::SanitizePolicy;
use crate::policy::{Admission, Anomaly};
use crate::proto::mcp_gateway_service_server::McpGatewayService;
use crate::proto::{CallRequest, CallResponse};
use crate::replay::ReplayStore;
use crate::summary::{Seen, Summary, Tally};

/// The clock, injectable so time-dependent logic can be tested.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The gateway's response-signing key and its id.
pub struct ResponseSigner {
    /// The Ed25519 private key; zeroized on drop, never logged.
    pub key: SigningKey,
    /// The same key in aws-lc-rs, which signs each response.
    pub fast: envelope::ed25519::FastSigner,
    /// Its key id (`ed25519:` + hex of the first 16 bytes of the SHA-256 of
    /// the public key), as clients find it in their profiles.
    pub key_id: String,
}

/// Limits the request path enforces.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// How far an envelope's timestamp may be from now, either side, in ms;
    /// also how long a nonce is remembered.
    pub clock_skew_ms: i64,
    /// Largest encoded request accepted, checked before any cryptography.
    pub max_envelope_bytes: usize,
    /// Limits applied while parsing the JSON-RPC payload.
    pub json: jsonrpc::Limits,
}

/// Protocol versions the gateway speaks to clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    /// What request envelopes must carry as audience.
    pub audience: String,
    /// Swapped atomically on reload; the hot path only loads a pointer.
    pub registry: ArcSwap<Registry>,
    /// Serials (lowercase hex) on the configured CRLs: connections opened
    /// before a revocation was loaded are refused per request.
    pub revoked: ArcSwap<std::collections::HashSet<String>>,
    /// Nonces seen per client within the skew window; takes only verified
    /// envelopes.
    pub replay: Box<dyn ReplayStore>,
    /// Swapped when the signing key secret is refreshed.
    pub signer: ArcSwap<ResponseSigner>,
    /// Maps every exposed tool to its backend and pinned definition.
    pub router: Arc<Router>,
    /// Argument rules applied before the schema and the backend.
    pub sanitize: SanitizePolicy,
    /// Checks on what backends answer (stage 9): shape, outputSchema,
    /// size, secret patterns, invisible characters.
    pub results: crate::policy::ResultPolicy,
    /// The URI schemes the primary backend offers, for `resources/read`.
    pub resource_schemes: crate::backend::resources::ResourceSchemes,
    /// Resolved secret values (backend credentials, the signing key);
    /// refreshed by [`crate::reload`], never logged.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// Where the response-signing key comes from, to reload it on refresh.
    pub signing_key_ref: crate::secrets::SecretRef,
    /// Where every request's record goes.
    pub audit: Arc<AuditLog>,
    /// The time source for freshness and key validity (a fixed clock in
    /// tests).
    pub clock: Arc<dyn Clock>,
    /// Size, skew and depth limits of the request path.
    pub limits: RequestLimits,
    /// The anomaly detectors and their per-identity state (stage 7, and
    /// blocks and throttles at stage 2); kept across registry reloads.
    pub anomaly: Arc<Anomaly>,
    /// Admission refusals per (identity or source, reason): the first is
    /// recorded in full, the rest counted into one summary record per
    /// interval ([`Gateway::report_refusals`]), so no flood fills a disk.
    pub refusals: Summary<(String, Reason)>,
    /// How early an expiring client certificate is warned about, in ms.
    pub expiry_horizon_ms: i64,
    /// Client certificates already warned about.
    pub expiring_seen: crate::expiry::SeenCertificates,
    /// Counters and latency histograms of the request path.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The store several replicas share replay, rate and blocks in
    /// (`[state] kind = "redis"`); `None`: this process's own state only.
    pub state: Option<Arc<crate::state::SharedState>>,
}

impl Drop for Gateway {
    /// The refusals counted since the last summary are recorded before the
    /// audit trail closes: a count is never lost at a stop.
    fn drop(&mut self) {
        self.report_refusals();
    }
}

/// Refusals that say nothing new when repeated: they are summarized.
fn is_admission_refusal(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::IdentityMissing
            | Reason::IdentityInvalid
            | Reason::CertificateRevoked
            | Reason::CertificateExpired
            | Reason::ClientUnknown
            | Reason::ClientDisabled
            | Reason::IdentityBlocked
            | Reason::RateLimited
            | Reason::ConcurrencyLimited
            | Reason::EnvelopeTooLarge
            | Reason::ReplayCacheFull
            | Reason::AuditUnavailable
            | Reason::StateUnavailable
    )
}

/// The tonic service: a cheap handle on the shared [`Gateway`].
#[derive(Clone)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
}

impl GatewayService {
    /// The service for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        GatewayService { gateway }
    }
}

#[tonic::async_trait]
impl McpGatewayService for GatewayService {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let early = request.extensions().get::<Ticket>().cloned();
        let _busy = peer.as_ref().map(|p| p.activity.begin());
        let _in_flight = self.gateway.metrics.in_flight();
        // Written when this future ends, however it ends: a client that
        // resets its stream, or the transport's request timeout, drops the
        // future mid-call and still leaves a record.
        let mut audit = self.gateway.audit_guard();
        let result = self
            .gateway
            .process_admitted(
                peer.as_deref(),
                early.as_ref(),
                request.into_inner(),
                &mut audit.record,
            )
            .await;
        // Answered only once its record is committed.
        let result = self.gateway.finish(peer.as_deref(), audit, result).await;
        result.map(Response::new).map_err(|d| d.to_status())
    }
}

/// A tower layer around the gRPC services: a request the gRPC layer itself
/// refuses before any handler runs (a message over the decoding limit,
/// answered OUT_OF_RANGE) still leaves its record, with the peer and the
/// certificate, stage `transport`.
#[derive(Clone)]
pub struct TransportAuditLayer {
    gateway: Arc<Gateway>,
}

impl TransportAuditLayer {
    /// The layer for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        TransportAuditLayer { gateway }
    }
}

impl<S> tower::Layer<S> for TransportAuditLayer {
    type Service = TransportAudit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TransportAudit {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// The service of [`TransportAuditLayer`].
#[derive(Clone)]
pub struct TransportAudit<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for TransportAudit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let gateway = self.gateway.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // 11: OUT_OF_RANGE, sent by tonic for an oversized message; no
            // sealgate reason uses that code, so this is only that refusal.
            if response
                .headers()
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == b"11")
            {
                gateway
                    .record_transport_refusal(peer.as_deref(), started)
                    .await;
            }
            Ok(response)
        })
    }
}

/// Writes the audit record of one request when dropped; a request that did
/// not finish is recorded as `cancelled`.
pub struct AuditOnDrop<'a> {
    /// The record, filled in as the request goes.
    pub record: AuditRecord,
    log: &'a AuditLog,
    metrics: &'a crate::metrics::Metrics,
    started: Instant,
    /// Concluded: the record was taken (or counted in a summary).
    done: bool,
}

impl AuditOnDrop<'_> {
    /// Drops the guard without a record: the request was not acted on
    /// (an identity denial past its connection's limit, left unanswered).
    pub fn dismiss(mut self) {
        self.done = true;
    }
}

impl Drop for AuditOnDrop<'_> {
    fn drop(&mut self) {
        // A concluded record was taken by `conclude`; only a request whose
        // future ended early is written from here.
        if self.done {
            return;
        }
        self.record.outcome = Outcome::Cancelled;
        let elapsed = self.started.elapsed();
        self.metrics
            .request(&self.record, Outcome::Cancelled, None, elapsed);
        self.record.duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.log.write_owned(std::mem::take(&mut self.record));
    }
}

impl Gateway {
    /// The audit guard of one request: whatever ends the request's future,
    /// its record is written (or, for a repeated admission refusal,
    /// counted by [`Gateway::conclude`]).
    pub fn audit_guard(&self) -> AuditOnDrop<'_> {
        self.audit_guard_for(AuditRecord::new(), Instant::now())
    }

    /// The audit guard of a request that began at `started`, with what
    /// `record` already says of it.
    fn audit_guard_for(&self, record: AuditRecord, started: Instant) -> AuditOnDrop<'_> {
        AuditOnDrop {
            record,
            log: &self.audit,
            metrics: &self.metrics,
            started,
            done: false,
        }
    }

    /// Finishes a request's record from its outcome: allowed, or denied with
    /// its reason, logged in full unless it repeats an admission refusal of
    /// the same identity (or source) in this interval, which is counted.
    pub fn conclude<T>(
        &self,
        peer: Option<&PeerInfo>,
        mut audit: AuditOnDrop<'_>,
        result: &Result<T, Denial>,
    ) -> Option<AuditRecord> {
        self.metrics.request(
            &audit.record,
            if result.is_ok() {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            result.as_ref().err().map(|d| d.reason.as_str()),
            audit.started.elapsed(),
        );
        match result {
            Ok(_) => audit.record.outcome = Outcome::Allowed,
            Err(denial) => {
                audit
                    .record
                    .deny(denial.reason.as_str(), denial.reason.fault());
                let who = match (&audit.record.client_id, peer) {
                    (Some(id), _) => id.clone(),
                    (None, Some(p)) => p.remote.ip().to_string(),
                    (None, None) => "-".to_string(),
                };
                let repeat = is_admission_refusal(denial.reason)
                    && self.refusals.note((who, denial.reason)) == Seen::Repeat;
                if repeat {
                    // Counted into the next summary record instead.
                    audit.done = true;
                    return None;
                } else {
                    tracing::info!(
                        client.id = audit.record.client_id.as_deref().unwrap_or("-"),
                        method = audit.record.method.unwrap_or("-"),
                        reason = denial.reason.as_str(),
                        "request denied"
                    );
                }
            }
        }
        audit.done = true;
        audit.record.duration_us =
            u64::try_from(audit.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Some(std::mem::take(&mut audit.record))
    }

    /// Concludes a request's record and commits it; the call is answered
    /// only once the record is committed. A record that cannot be
    /// committed turns the answer into `AUDIT_UNAVAILABLE` (and the trail
    /// says so once it can): no client sees an answer that has no record.
    pub async fn finish<T>(
        &self,
        peer: Option<&PeerInfo>,
        audit: AuditOnDrop<'_>,
        result: Result<T, Denial>,
    ) -> Result<T, Denial> {
        match self.conclude(peer, audit, &result) {
            None => result,
            Some(record) => {
                let commit = self.audit.commit(record);
                let stage = crate::metrics::Stage::Audit;
                if self.metrics.stage_of(stage, commit).await {
                    result
                } else {
                    tracing::error!("audit record could not be committed; the answer is withheld");
                    Err(crate::error::audit_unavailable())
                }
            }
        }
    }

    /// Answers a request that stages 1 or 2 refused before its body was
    /// read ([`crate::admission`]): tells the detectors, records it as
    /// the service would (a repeat counted into the summary), and returns
    /// the status to send.
    pub async fn refuse(
        &self,
        peer: Option<&PeerInfo>,
        record: AuditRecord,
        started: Instant,
        denial: Denial,
    ) -> Status {
        self.observe_denial(peer, &record, denial.reason);
        let audit = self.audit_guard_for(record, started);
        match self.finish::<()>(peer, audit, Err(denial)).await {
            Err(denial) => denial.to_status(),
            // `finish` turns a refusal into a refusal; never reached.
            Ok(()) => crate::error::audit_unavailable().to_status(),
        }
    }

    /// The record of a request the gRPC layer refused as too large
    /// (`MESSAGE_TOO_LARGE`, stage `transport`), counted like an admission
    /// refusal when it repeats.
    pub async fn record_transport_refusal(&self, peer: Option<&PeerInfo>, started: Instant) {
        let mut record = AuditRecord::new();
        name_peer(&mut record, peer);
        let audit = self.audit_guard_for(record, started);
        let denial = Denial::new(
            Reason::MessageTooLarge,
            "the gRPC message exceeds the decoding limit",
        );
        if let Some(record) = self.conclude::<()>(peer, audit, &Err(denial)) {
            self.audit.commit(record).await;
        }
    }

    /// Writes one summary record (and log line) per identity or source and
    /// reason whose admission refusals repeated since the last report, with
    /// the exact count. Runs every interval; tests call it directly.
    pub fn report_refusals(&self) {
        let interval = self.refusals.interval();
        for (tally, count) in self.refusals.drain() {
            let (who, reason) = match &tally {
                Tally::Key((who, reason)) => (who.as_str(), Some(*reason)),
                Tally::Others => ("(others)", None),
            };
            let reason = reason.map(Reason::as_str).unwrap_or("(various)");
            tracing::info!(
                who,
                reason,
                count,
                "{count} more requests refused in the last {}",
                crate::summary::interval_text(interval)
            );
            self.audit.refusal_summary(&crate::audit::RefusalSummary {
                ts: crate::audit::rfc3339_ms(self.clock.now_ms()),
                event: "refusal_summary",
                who,
                reason,
                count,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    /// Runs the stages in order. Fills `record` as facts become known, and
    /// tells the anomaly detectors about refusals that say something of the
    /// caller.
    pub async fn process(
        &self,
        peer: Option<&PeerInfo>,
        request: CallRequest,
        record: &mut AuditRecord,
    ) -> Result<CallResponse, Denial> {
        self.process_admitted(peer, None, request, record).await
    }

    /// [`Gateway::process`] for a request whose stages 1 and 2 the early
    /// admission layer already ran (`early`), so that they are not run,
    /// nor its rate charged, twice.
    pub async fn process_admitted(
        &self,
        peer: Option<&PeerInfo>,
        early: Option<&Ticket>,
        request: CallRequest,
        record: &mut AuditRecord,
    ) -> Result<CallResponse, Denial> {
        let result = self.stages(peer, early, request, record).await;
        if let Err(denial) = &result {
            self.observe_denial(peer, record, denial.reason);
        }
        result
    }

    async fn stages(
        &self,
        peer: Option<&PeerInfo>,
        early: Option<&Ticket>,
        request: CallRequest,
        record: &mut AuditRecord,
    ) -> Result<CallResponse, Denial> {
        let size = request.encoded_len();
        let now = self.clock.now_ms();
        let mut timer = self.metrics.stages();
        // 1 identity, 2 admission (unless the early layer ran them), 3
        // envelope.
        let admitted = match early {
            Some(ticket) => {
                name_peer(record, peer);
                let admitted = ticket.admitted(peer)?;
                record.identity_passed = true;
                admitted
            }
            None => self.admit_request(peer, record, now)?,
        };
        let Authenticated {
            identity,
            client,
            verified,
            in_flight: _in_flight,
        } = self
            .open_envelope(admitted, request.envelope, size, record, now)
            .await?;
        timer.lap(crate::metrics::Stage::Authenticate);

        // 4 message: strict JSON-RPC, only now that the signature held.
        record.request_digest = Some(verified.digest);
        crate::traces::correlate(&verified.digest);
        record.stage = "message";
        let mut message = jsonrpc::parse(&verified.payload, self.limits.json)?;
        record.method = Some(message.method.as_str());

        // 5 authorization: method, tool, resource, and a tool's extra cost.
        record.stage = "authorization";
        authorize(&client, &message, record)?;
        if let (Some(state), Some(tool)) = (&self.state, message.tool.as_deref()) {
            // The rest of a dearer tool's cost, across every replica.
            let cost = client.tool_cost.of(Some(tool));
            if cost > 1 {
                state.take_extra(&client, tool, cost - 1).await?;
            }
        }

        // 6 arguments.
        record.stage = "arguments";
        let prepared = self.prepare(&client, &mut message).await?;
        record.backend = self.backend_of(&prepared);
        timer.lap(crate::metrics::Stage::Prepare);

        // 7 anomaly: the identity compared with itself.
        record.stage = "anomaly";
        let in_hours = client
            .allowed_hours
            .as_ref()
            .is_none_or(|h| h.contains(now));
        if let Admission::Blocked { detector, until_ms } = self.anomaly.observe_call(
            identity.client_id.as_str(),
            message.tool.as_deref(),
            in_hours,
            now,
        ) {
            return Err(blocked(detector, until_ms));
        }

        // 8 backend.
        record.stage = "backend";
        let from_backend = prepared.answered_by_backend();
        let mut reply = self.execute(prepared).await?;
        timer.lap(crate::metrics::Stage::Backend);

        // 9 result: what a backend answered, checked before it is signed.
        let mut limit = None;
        if let (Some(from), Some(reply)) = (from_backend, reply.as_mut()) {
            record.stage = "result";
            let key = message.tool.as_deref().unwrap_or(message.method.as_str());
            let findings = match reply {
                Reply::Result(result) => self.results.check(
                    message.method.as_str(),
                    from.tool.as_deref(),
                    key,
                    result,
                )?,
                Reply::Error(error) => self.results.filter(key, error)?,
            };
            if findings.any() {
                self.record_filtered(record, key, &findings);
            }
            limit = Some(self.results.max_bytes(key));
        }
        let payload = self.response_payload(&message, reply, record)?;
        if let Some(limit) = limit.filter(|l| payload.len() > *l) {
            return Err(crate::policy::ResultError::TooLarge {
                size: payload.len(),
                limit,
            }
            .into());
        }
        timer.lap(crate::metrics::Stage::Result);

        // 10 seal, bound to the request.
        record.stage = "seal";
        let envelope = self.seal_response(identity, payload, verified.digest);
        timer.lap(crate::metrics::Stage::Seal);
        Ok(CallResponse {
            envelope: Some(envelope),
        })
    }

    /// Stages 1 to 3, shared by every service: the certificate's identity
    /// and its registry entry, admission (blocks, throttles, rate,
    /// concurrency, size), and the envelope (key bound to this identity,
    /// signature, freshness, replay). `size` is the encoded request's.
    pub async fn authenticate<'p>(
        &self,
        peer: Option<&'p PeerInfo>,
        envelope: Option<crate::proto::SignedEnvelope>,
        size: usize,
        record: &mut AuditRecord,
        now: i64,
    ) -> Result<Authenticated<'p>, Denial> {
        let admitted = self.admit_request(peer, record, now)?;
        self.open_envelope(admitted, envelope, size, record, now)
            .await
    }

    /// Stages 1 and 2, which need nothing from the request's body: the
    /// certificate's identity and its registry entry, then admission
    /// (blocks, throttles, rate, concurrency). The early admission layer
    /// ([`crate::admission`]) runs them before the body is decoded.
    pub fn admit_request<'p>(
        &self,
        peer: Option<&'p PeerInfo>,
        record: &mut AuditRecord,
        now: i64,
    ) -> Result<Admitted<'p>, Denial> {
        // 1 identity: read from the certificate once per connection. The
        // record names the certificate even when it is refused below.
        record.stage = "audit";
        name_peer(record, peer);
        // 0 audit: while no record can be committed, nothing is served.
        if !self.audit.available() {
            return Err(crate::error::audit_unavailable());
        }
        record.stage = "identity";
        let identity = self.identify(peer, now).map_err(|d| {
            let d = note_identity_denied(peer, d);
            // A certificate that was revoked or expired while its connection
            // was open will never pass again on it: close it after this answer.
            if matches!(
                d.reason,
                Reason::CertificateRevoked | Reason::CertificateExpired
            ) {
                if let Some(p) = peer {
                    p.activity.request_close();
                }
            }
            d
        })?;
        let client = self
            .registry
            .load()
            .get(&identity.client_id)
            .cloned()
            .ok_or_else(|| {
                Denial::new(
                    Reason::ClientUnknown,
                    "this client certificate's identity is not registered",
                )
            })
            .map_err(|d| note_identity_denied(peer, d))?;
        if !client.enabled {
            return Err(note_identity_denied(
                peer,
                Denial::new(Reason::ClientDisabled, "this client is disabled"),
            ));
        }
        record.identity_passed = true;
        if let Some(p) = peer {
            p.note_identity_passed();
        }

        // 2 admission: blocks and throttles, rate, concurrency, then size,
        // before any cryptography.
        record.stage = "admission";
        self.admit(&client, now)?;
        let in_flight = match &client.concurrency {
            Some(permits) => Some(permits.clone().try_acquire_owned().map_err(|_| {
                Denial::new(
                    Reason::ConcurrencyLimited,
                    format!(
                        "this client already has {} calls in flight, its limit",
                        client.concurrent_limit.unwrap_or_default()
                    ),
                )
            })?),
            None => None,
        };
        Ok(Admitted {
            identity,
            client,
            in_flight,
        })
    }

    /// The rest of stage 2 (the size) and stage 3, for a request that
    /// stages 1 and 2 admitted: the envelope's shape, the key bound to this
    /// identity, signature, freshness, replay.
    pub async fn open_envelope<'p>(
        &self,
        admitted: Admitted<'p>,
        envelope: Option<crate::proto::SignedEnvelope>,
        size: usize,
        record: &mut AuditRecord,
        now: i64,
    ) -> Result<Authenticated<'p>, Denial> {
        let Admitted {
            identity,
            client,
            in_flight,
        } = admitted;
        record.stage = "admission";
        if size > self.limits.max_envelope_bytes {
            return Err(Denial::new(
                Reason::EnvelopeTooLarge,
                format!(
                    "envelope is {size} bytes; the limit is {}",
                    self.limits.max_envelope_bytes
                ),
            ));
        }

        // 3 envelope: shape, key bound to this identity, signature,
        // freshness, replay.
        record.stage = "envelope";
        let env = envelope.ok_or(envelope::EnvelopeError::Missing)?;
        envelope::check_shape(&env, &self.audience)?;
        let bound = client
            .keys
            .get(&env.key_id)
            .ok_or(envelope::EnvelopeError::KeyNotBound)?;
        record.key_id = Some(env.key_id.clone());
        if !bound.valid_at(now) {
            return Err(envelope::EnvelopeError::KeyNotValidNow.into());
        }
        let verified = envelope::verify_request(&env, &bound.key, now, self.limits.clock_skew_ms)?;
        match &self.state {
            None => self.replay.check_and_record(&client.id, &verified, now)?,
            // Replay, the client's rate and its block across all replicas,
            // in one round trip to the shared store.
            Some(state) => state.admit(&client, &verified, now, &self.anomaly).await?,
        }
        Ok(Authenticated {
            identity,
            client,
            verified,
            in_flight,
        })
    }

    /// Stage 9: `payload` signed by the gateway, addressed to the caller and
    /// bound to the request by `digest`.
    pub fn seal_response(
        &self,
        identity: &ClientIdentity,
        payload: Vec<u8>,
        digest: [u8; envelope::DIGEST_LEN],
    ) -> crate::proto::SignedEnvelope {
        let signer = self.signer.load();
        envelope::seal(
            &signer.fast,
            Seal {
                direction: Direction::Response,
                audience: &identity.spiffe_id,
                key_id: &signer.key_id,
                timestamp_unix_ms: self.clock.now_ms(),
                nonce: envelope::random_nonce(),
                payload: payload.into(),
                request_digest: Some(digest),
            },
        )
        .0
    }

    fn identify<'a>(
        &self,
        peer: Option<&'a PeerInfo>,
        now_ms: i64,
    ) -> Result<&'a ClientIdentity, Denial> {
        match peer.map(|p| &p.identity) {
            None => Err(Denial::new(
                Reason::IdentityMissing,
                "no verified client certificate on this connection",
            )),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(identity)) if self.revoked.load().contains(&identity.serial) => {
                Err(Denial::new(
                    Reason::CertificateRevoked,
                    "this client certificate has been revoked",
                ))
            }
            Some(Ok(identity)) if now_ms > identity.not_after_ms => Err(Denial::new(
                Reason::CertificateExpired,
                "this client certificate has expired since the connection was opened; reconnect with a renewed certificate",
            )),
            Some(Ok(identity)) => {
                let ends_soon = identity.not_after_ms < now_ms.saturating_add(self.expiry_horizon_ms);
                if ends_soon && self.expiring_seen.first_time(&identity.serial) {
                    crate::expiry::report(
                        &self.audit,
                        &[crate::expiry::Expiring {
                            what: "client_certificate",
                            name: format!("serial {} of client {}", identity.serial, identity.client_id),
                            not_after_ms: identity.not_after_ms,
                        }],
                        now_ms,
                    );
                }
                Ok(identity)
            }
        }
    }

    /// Stage 2: anomaly blocks and throttles, then the client's own rate.
    fn admit(&self, client: &ClientEntry, now_ms: i64) -> Result<(), Denial> {
        match self.anomaly.admit(client.id.as_str(), now_ms) {
            Admission::Allow => {}
            Admission::Blocked { detector, until_ms } => return Err(blocked(detector, until_ms)),
            Admission::Throttled { retry_after_ms } => {
                return Err(Denial::new(
                    Reason::RateLimited,
                    "this client is throttled after unusual activity; slow down",
                )
                .retry_after(Duration::from_millis(retry_after_ms)))
            }
        }
        if let Err(not_until) = client.limiter.check() {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(client.limiter.clock()));
            return Err(Denial::new(
                Reason::RateLimited,
                "request rate limit exceeded for this client",
            )
            .retry_after(wait));
        }
        Ok(())
    }

    /// Tells the detectors about a refusal: of a registered identity for
    /// what it sent, or of a source for whom it claims to be.
    pub fn observe_denial(&self, peer: Option<&PeerInfo>, record: &AuditRecord, reason: Reason) {
        let now = self.clock.now_ms();
        let from_source = matches!(
            reason,
            Reason::IdentityInvalid
                | Reason::ClientUnknown
                | Reason::ClientDisabled
                | Reason::CertificateRevoked
                | Reason::KeyNotBound
        );
        if from_source {
            if let Some(p) = peer {
                self.anomaly.observe_source_failure(p.remote.ip(), now);
            }
        }
        // Admission refusals say nothing new (and would let a block feed
        // itself); identity refusals have no registered identity to blame.
        let admission = matches!(
            reason,
            Reason::RateLimited
                | Reason::ConcurrencyLimited
                | Reason::IdentityBlocked
                | Reason::ClientDisabled
                | Reason::EnvelopeTooLarge
                | Reason::ReplayCacheFull
        );
        if record.identity_passed && !admission && reason.fault() == crate::error::Fault::Client {
            if let Some(id) = &record.client_id {
                self.anomaly.observe_denial(id, reason.as_str(), now);
            }
        }
    }

    /// Stage 6: the gateway answers lifecycle methods itself, serves
    /// tools/list from the pinned tools, and for tools/call checks the
    /// arguments against the sanitizer and the pinned schema before the
    /// routed backend may see them.
    async fn prepare(
        &self,
        client: &ClientEntry,
        message: &mut jsonrpc::Message,
    ) -> Result<Prepared, Denial> {
        // The params move into what the backend is sent: nothing after this
        // stage reads them from the message.
        let params = message
            .params
            .take()
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        Ok(match message.method {
            Method::Initialize => Prepared::Answer(Reply::Result(initialize_result(&params))),
            Method::Ping => Prepared::Answer(Reply::Result(json!({}))),
            Method::ToolsList => Prepared::Answer(Reply::Result(
                json!({"tools": self.router.list(|name| client.tools.allows(name))}),
            )),
            Method::ToolsCall => {
                let name = message.tool.as_deref().unwrap_or_default();
                let route = self
                    .router
                    .resolve(name)
                    .await
                    .map_err(|e| route_denial(e, name))?;
                let mut arguments = match params {
                    Value::Object(mut params) => params.remove("arguments"),
                    _ => None,
                }
                .unwrap_or_else(|| json!({}));
                self.sanitize.apply(name, &mut arguments)?;
                route
                    .tool
                    .validate(&arguments)
                    .map_err(crate::error::schema_denial)?;
                Prepared::Tool { route, arguments }
            }
            // The gateway initialized each backend itself; cancellation of
            // a call is the gRPC cancellation of that call.
            Method::NotificationsInitialized | Method::NotificationsCancelled => Prepared::Nothing,
            // A resource URI must carry a scheme the backend offers.
            Method::ResourcesRead => {
                let mut params = params;
                let primary = self
                    .router
                    .slots()
                    .first()
                    .ok_or_else(|| Denial::from(crate::backend::BackendError::Unavailable))?;
                let offered = self
                    .resource_schemes
                    .offered(primary.backend.as_ref(), primary.timeout)
                    .await?;
                self.sanitize.apply_resource_read(&mut params, &offered)?;
                Prepared::Forward {
                    method: Method::ResourcesRead.as_str(),
                    params,
                }
            }
            // Prompts and resource listings: the sanitizer checks their
            // params too.
            other => {
                let mut params = params;
                self.sanitize.apply(other.as_str(), &mut params)?;
                Prepared::Forward {
                    method: other.as_str(),
                    params,
                }
            }
        })
    }

    /// The configured name of the backend `prepared` goes to, if any.
    fn backend_of(&self, prepared: &Prepared) -> Option<String> {
        let slot = match prepared {
            Prepared::Tool { route, .. } => route.slot,
            Prepared::Forward { .. } => 0,
            Prepared::Answer(_) | Prepared::Nothing => return None,
        };
        self.router
            .slots()
            .get(slot)
            .map(|s| s.backend.name().to_string())
    }

    /// Stage 8: the backend answers what stage 6 prepared.
    async fn execute(&self, prepared: Prepared) -> Result<Option<Reply>, Denial> {
        Ok(Some(match prepared {
            Prepared::Answer(reply) => reply,
            Prepared::Nothing => return Ok(None),
            Prepared::Tool { route, arguments } => {
                let call = self.router.call_tool(&route, arguments);
                self.metrics.backend_call(route.slot, call).await?
            }
            Prepared::Forward { method, params } => {
                let call = self.router.forward_to_primary(method, params);
                self.metrics.backend_call(0, call).await?
            }
        }))
    }

    /// Records that stage 9 changed a result (pattern names and counts,
    /// never the text): a security event, warned in the log.
    fn record_filtered(&self, record: &AuditRecord, key: &str, findings: &crate::policy::Findings) {
        let backend = record.backend.as_deref().unwrap_or("-");
        tracing::warn!(
            backend,
            tool = key,
            redacted = ?findings.redacted,
            stripped = findings.stripped,
            "a backend's result was filtered"
        );
        self.audit.write_event(&json!({
            "ts": crate::audit::rfc3339_ms(self.clock.now_ms()),
            "event": "result_filtered",
            "backend": backend,
            "tool": key,
            "client_id": record.client_id,
            "request_digest": record.request_digest.map(hex::encode),
            "redacted": findings.redacted,
            "stripped": findings.stripped,
        }));
    }

    /// Turns the reply into the JSON-RPC response bytes.
    fn response_payload(
        &self,
        message: &jsonrpc::Message,
        reply: Option<Reply>,
        record: &mut AuditRecord,
    ) -> Result<Vec<u8>, Denial> {
        let (Some(id), Some(reply)) = (message.id.as_ref(), reply) else {
            // A notification: nothing to answer but the signed acknowledgement.
            return Ok(Vec::new());
        };
        let body = match reply {
            Reply::Result(result) => {
                if message.method == Method::ToolsCall {
                    record.backend_error =
                        result.get("isError").and_then(Value::as_bool) == Some(true);
                }
                jsonrpc::response(id, result)
            }
            Reply::Error(error) => {
                record.backend_error = true;
                json!({"jsonrpc": "2.0", "id": id, "error": error})
            }
        };
        serde_json::to_vec(&body)
            .map_err(|_| Denial::new(Reason::Internal, "response could not be encoded"))
    }
}

/// Proof, inside the server, that stages 1 and 2 admitted this request.
#[derive(Clone)]
pub struct Ticket {
    client: Arc<ClientEntry>,
}

impl Ticket {
    /// The ticket of a request stages 1 and 2 admitted for `client`.
    pub(crate) fn new(client: Arc<ClientEntry>) -> Self {
        Ticket { client }
    }

    /// The admission the layer made, for the service's stage 3. The
    /// connection's identity was checked by the layer; a request without one
    /// never gets a ticket, so the error is only a guard.
    pub fn admitted<'p>(&self, peer: Option<&'p PeerInfo>) -> Result<Admitted<'p>, Denial> {
        match peer.map(|p| &p.identity) {
            Some(Ok(identity)) => Ok(Admitted {
                identity,
                client: self.client.clone(),
                in_flight: None,
            }),
            _ => Err(Denial::new(
                Reason::IdentityMissing,
                "no verified client certificate on this connection",
            )),
        }
    }
}

/// A request that passed stages 1 and 2.
pub struct Admitted<'p> {
    /// The caller, as its certificate names it.
    pub identity: &'p ClientIdentity,
    /// Its registry entry, as loaded when the request arrived.
    pub client: Arc<ClientEntry>,
    /// One of its concurrent-call permits, held until the request ends.
    pub in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A request that passed stages 1 to 3.
pub struct Authenticated<'p> {
    /// The caller, as its certificate names it.
    pub identity: &'p ClientIdentity,
    /// Its registry entry, as loaded when the request arrived.
    pub client: Arc<ClientEntry>,
    /// The envelope, signature and freshness checked, nonce recorded.
    pub verified: envelope::VerifiedEnvelope,
    /// One of its concurrent-call permits, held until the request ends.
    pub in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A reply that comes from a backend, and the pinned tool it answers.
struct FromBackend {
    tool: Option<Arc<crate::policy::PinnedTool>>,
}

impl Prepared {
    /// `Some` when a backend answers what was prepared: its reply is then
    /// checked at stage 9.
    fn answered_by_backend(&self) -> Option<FromBackend> {
        match self {
            Prepared::Tool { route, .. } => Some(FromBackend {
                tool: Some(route.tool.clone()),
            }),
            Prepared::Forward { .. } => Some(FromBackend { tool: None }),
            Prepared::Answer(_) | Prepared::Nothing => None,
        }
    }
}

/// What stage 6 left for the backend stage.
enum Prepared {
    /// The gateway answers itself.
    Answer(Reply),
    /// A notification: nothing to answer.
    Nothing,
    /// A tool call with checked arguments, to its routed backend.
    Tool {
        route: crate::backend::router::Route,
        arguments: Value,
    },
    /// Resources and prompts, to the primary backend.
    Forward { method: &'static str, params: Value },
}

/// Names the caller in `record`: its address, and its certificate's client
/// id, serial and fingerprint (serial and fingerprint also when the
/// certificate names no valid identity).
fn name_peer(record: &mut AuditRecord, peer: Option<&PeerInfo>) {
    if let Some(p) = peer {
        record.peer = Some(p.remote);
        match (&p.identity, &p.certificate) {
            (Ok(named), _) => {
                record.client_id = Some(named.client_id.to_string());
                record.cert_serial = Some(named.serial.clone());
                record.cert_fingerprint = Some(named.fingerprint.clone());
            }
            (Err(_), Some(facts)) => {
                record.cert_serial = Some(facts.serial.clone());
                record.cert_fingerprint = Some(facts.fingerprint.clone());
            }
            (Err(_), None) => {}
        }
    }
}

/// Counts an identity refusal on the connection (one that produced nothing
/// else for long enough is closed by the transport); the refusal, marked
/// unanswered when it is past the connection's limit.
fn note_identity_denied(peer: Option<&PeerInfo>, mut denial: Denial) -> Denial {
    if let Some(p) = peer {
        match p.note_identity_denied(denial.reason.as_str()) {
            DenialTurn::Answer => {}
            DenialTurn::AnswerAndClose => {
                tracing::debug!(peer.addr = %p.remote, "marking a connection that only produced identity refusals for closing");
            }
            DenialTurn::Unanswered => denial.unanswered = true,
        }
    }
    denial
}

/// The refusal of a blocked identity ([`crate::error::identity_blocked`]).
pub fn blocked(detector: &str, until_ms: Option<i64>) -> Denial {
    crate::error::identity_blocked(detector, until_ms)
}

/// The gateway's own answer to `initialize`: it is the MCP server its
/// clients talk to; the backends were initialized by the gateway.
fn initialize_result(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(SUPPORTED_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}, "resources": {}, "prompts": {}},
        "serverInfo": {"name": "sealgate", "title": "sealgate MCP gateway", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn authorize(
    client: &ClientEntry,
    message: &jsonrpc::Message,
    record: &mut AuditRecord,
) -> Result<(), Denial> {
    if !client.methods.contains(&message.method) {
        return Err(Denial::new(
            Reason::MethodNotAllowed,
            format!("this client may not call {}", message.method.as_str()),
        ));
    }
    if let Some(tool) = &message.tool {
        // The name is validated ([A-Za-z0-9_.-], at most 128): safe to audit.
        record.tool = Some(tool.clone());
        if !client.tools.allows(tool) {
            return Err(Denial::new(
                Reason::ToolNotAllowed,
                format!("this client may not call tool {tool}"),
            ));
        }
        // Stage 2 took one unit of the rate; a dearer tool takes the rest
        // now that its name is known.
        let cost = client.tool_cost.of(Some(tool));
        if cost > 1 {
            let extra = std::num::NonZeroU32::new(cost - 1).unwrap_or(std::num::NonZeroU32::MIN);
            match client.limiter.check_n(extra) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    let wait = not_until
                        .wait_time_from(governor::clock::Clock::now(client.limiter.clock()));
                    return Err(Denial::new(
                        Reason::RateLimited,
                        format!("tool {tool} costs {cost} calls of this client's rate; not enough remain now"),
                    )
                    .retry_after(wait));
                }
                Err(_) => {
                    return Err(Denial::new(
                        Reason::RateLimited,
                        format!("tool {tool} costs {cost} calls, more than this client's burst"),
                    ))
                }
            }
        }
    }
    if message.method == Method::ResourcesRead {
        let uri = message
            .params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // The URI itself is not echoed: it may name a person.
        if !client.resources.allows(uri) {
            return Err(Denial::new(
                Reason::ResourceNotAllowed,
                "this client may not read this resource",
            ));
        }
    }
    Ok(())
}
