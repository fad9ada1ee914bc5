//! The request path: every stage of a request, in order.
//!
//! identity → admission → envelope → message → authorization → arguments →
//! anomaly → backend → result → seal → audit (the `record.stage` names).
//! Cheap checks come first; the Ed25519 signature is verified
//! before any JSON is parsed; a nonce is recorded only after its signature
//! held. Each stage returns a [`Denial`] on failure; [`Denial::to_status`]
//! is the only place a denial becomes a gRPC status. Every request, allowed
//! or denied, produces exactly one audit record, except that a repeated
//! admission refusal of the same identity (or source) and reason is counted
//! into one summary record per interval instead. A call is answered only
//! once its record is committed ([`Gateway::finish`]); while the audit
//! trail cannot take records, calls are refused with `AUDIT_UNAVAILABLE`.
//!
//! This file holds the stages, in order, from [`Gateway::process`] down.
//! Beside it, in `gateway/`: `parts.rs` the [`Gateway`] they run on,
//! `admitted.rs` what passes between the first stages, `prepared.rs` what
//! stage 6 leaves for the backend, `response.rs` the answer, `record.rs` a
//! request's audit record, `refusals.rs` refusal summaries and what the
//! detectors hear of, `service.rs` the tonic service and the transport
//! layer, `clock.rs` the clock. None of them names anything defined here.

use std::time::Duration;

use prost::Message as _;
use serde_json::{json, Value};

use crate::audit::AuditRecord;
use crate::backend::Reply;
use crate::envelope::{self, Direction, Seal};
use crate::error::{route_denial, Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity};
use crate::jsonrpc::{self, Method};
use crate::peer::PeerInfo;
use crate::policy::results::serialized_size;
use crate::policy::{Admission, Findings, ResultError};
use crate::proto::{CallRequest, CallResponse};

mod admitted;
mod clock;
mod parts;
mod prepared;
mod record;
mod refusals;
mod response;
mod service;

pub use admitted::{Admitted, Authenticated, Ticket};
pub use clock::{Clock, SystemClock};
pub use parts::{Gateway, RequestLimits, ResponseSigner};
pub use record::AuditOnDrop;
pub use response::SUPPORTED_VERSIONS;
pub use service::{GatewayService, TransportAudit, TransportAuditLayer};

use prepared::{FromBackend, Prepared};
use record::name_peer;
use refusals::note_identity_denied;
use response::initialize_result;

impl Gateway {
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
            self.observe_denial(peer, record, denial);
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
        // Only a backend's reply is taken out to be checked: the
        // gateway's own (initialize, ping) stays as it is.
        if let Some(from) = from_backend {
            if let Some(answer) = reply.take() {
                record.stage = "result";
                let key = message.tool.as_deref().unwrap_or(message.method.as_str());
                let (answer, findings) =
                    self.check_result(message.method, from, key, answer).await?;
                if findings.any() {
                    self.record_filtered(record, key, &findings);
                }
                reply = Some(answer);
            }
        }
        let payload = self.response_payload(&message, reply, record)?;
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
        // ... nor while the witnesses' quorum is lost under fail_closed.
        if self.witnessing.as_ref().is_some_and(|w| w.refusing()) {
            return Err(crate::error::audit_unwitnessed());
        }
        // ... nor while the process is at its memory watermark: the calls
        // in flight finish rather than the process being killed.
        if crate::memory::over_watermark() {
            return Err(crate::error::memory_pressure());
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
        if let Some(p) = peer {
            p.read_hold.note_admitted();
        }
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
}

/// A backend's result or error up to this size (serialised) is checked on
/// the async worker that holds the call; a larger one on a blocking thread.
/// The filters cost up to about 60 ns a byte (8 redaction passes over
/// chained secrets; about 5 for plain text), so inline checks stay under
/// about a millisecond, and the 16 MiB a backend may send (up to a second)
/// never stalls the workers that serve every other call. Small results,
/// nearly all of them, pay no thread hand-off.
const INLINE_CHECK_BYTES: usize = 16 * 1024;

impl Gateway {
    /// Stage 9's checks of a backend's reply for `key`: its size as
    /// received first (`[results] max_bytes`: a larger one is refused
    /// before any filter runs on it), then its MCP shape and pinned
    /// outputSchema and the filters, then its size again if a redaction
    /// lengthened it. Returns the reply as it may be signed.
    async fn check_result(
        &self,
        method: jsonrpc::Method,
        from: FromBackend,
        key: &str,
        mut reply: Reply,
    ) -> Result<(Reply, Findings), Denial> {
        let limit = self.results.max_bytes(key);
        let size = serialized_size(reply_value(&reply));
        if size > limit {
            return Err(ResultError::TooLarge {
                size,
                limit,
                redacted: false,
            }
            .into());
        }
        let check = move |policy: &crate::policy::ResultPolicy, key: &str, reply: &mut Reply| {
            let findings = match reply {
                Reply::Result(result) => {
                    policy.check(method.as_str(), from.tool.as_deref(), key, result)?
                }
                Reply::Error(error) => policy.filter(key, error)?,
            };
            if !findings.redacted.is_empty() {
                let size = serialized_size(reply_value(reply));
                if size > limit {
                    return Err(ResultError::TooLarge {
                        size,
                        limit,
                        redacted: true,
                    });
                }
            }
            Ok(findings)
        };
        if size <= INLINE_CHECK_BYTES {
            let findings = check(&self.results, key, &mut reply)?;
            return Ok((reply, findings));
        }
        // At most a few large results are filtered at once: each blocking
        // thread costs its stack (and, under RLIMIT_AS, address space that
        // the memory watermark counts), and the rest wait their turn
        // (review-b M6).
        static LARGE_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
        let unavailable = || Denial::new(Reason::Internal, "the result could not be checked");
        let permit = LARGE_CHECKS.acquire().await.map_err(|_| unavailable())?;
        let policy = self.results.clone();
        let key = key.to_string();
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check(&policy, &key, &mut reply).map(|findings| (reply, findings))
        })
        .await
        .map_err(|e| {
            // Never the panic's message: it could quote the result.
            tracing::error!(
                panicked = e.is_panic(),
                "the result check ended without an answer"
            );
            unavailable()
        })?;
        Ok(checked?)
    }
}

fn reply_value(reply: &Reply) -> &Value {
    match reply {
        Reply::Result(v) | Reply::Error(v) => v,
    }
}

/// The refusal of a blocked identity ([`crate::error::identity_blocked`]).
pub fn blocked(detector: &str, until_ms: Option<i64>) -> Denial {
    crate::error::identity_blocked(detector, until_ms)
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
