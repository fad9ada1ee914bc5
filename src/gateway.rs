//! The tonic service that runs every stage of a request, in order.
//!
//! identity → admission → envelope → message → authorization → backend →
//! seal → audit. Cheap checks come first; the Ed25519 signature is verified
//! before any JSON is parsed; a nonce is recorded only after its signature
//! held. Each stage returns a [`Denial`] on failure; [`Denial::to_status`]
//! is the only place a denial becomes a gRPC status. Every request, allowed
//! or denied, produces exactly one audit record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use prost::Message as _;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::backend::{Backend, BackendError, Reply};
use crate::envelope::{self, Direction, Seal};
use crate::error::{Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity, Registry};
use crate::jsonrpc::{self, Method};
use crate::proto::mcp_gateway_service_server::McpGatewayService;
use crate::proto::{CallRequest, CallResponse};
use crate::replay::{ReplayError, ReplayStore};
use crate::server::PeerInfo;

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
    pub key: SigningKey,
    pub key_id: String,
}

/// Limits the request path enforces.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub clock_skew_ms: i64,
    pub max_envelope_bytes: usize,
    pub json: jsonrpc::Limits,
    /// How long the backend may take.
    pub backend_timeout: Duration,
}

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    /// What request envelopes must carry as audience.
    pub audience: String,
    /// Swapped atomically on reload; the hot path only loads a pointer.
    pub registry: ArcSwap<Registry>,
    pub replay: Box<dyn ReplayStore>,
    pub signer: ResponseSigner,
    pub backend: Arc<dyn Backend>,
    pub audit: Arc<AuditLog>,
    pub clock: Arc<dyn Clock>,
    pub limits: RequestLimits,
}

/// The tonic service: a cheap handle on the shared [`Gateway`].
#[derive(Clone)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
}

impl GatewayService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        GatewayService { gateway }
    }
}

#[tonic::async_trait]
impl McpGatewayService for GatewayService {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallResponse>, Status> {
        let started = Instant::now();
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let _busy = peer.as_ref().map(|p| p.activity.begin());
        let mut record = AuditRecord::new();
        let result = self
            .gateway
            .process(peer.as_deref(), request.into_inner(), &mut record)
            .await;
        record.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => record.outcome = Outcome::Allowed,
            Err(denial) => {
                record.deny(denial.reason);
                tracing::info!(
                    client.id = record.client_id.as_deref().unwrap_or("-"),
                    reason = denial.reason.as_str(),
                    "request denied"
                );
            }
        }
        self.gateway.audit.write(&record);
        result.map(Response::new).map_err(|d| d.to_status())
    }
}

impl Gateway {
    /// Runs the stages in order. Fills `record` as facts become known.
    pub async fn process(
        &self,
        peer: Option<&PeerInfo>,
        request: CallRequest,
        record: &mut AuditRecord,
    ) -> Result<CallResponse, Denial> {
        // 1 identity: read from the certificate once per connection.
        let identity = self.identify(peer)?;
        record.client_id = Some(identity.client_id.to_string());
        record.cert_serial = Some(identity.serial.clone());
        let registry = self.registry.load();
        let client = registry.get(&identity.client_id).ok_or_else(|| {
            Denial::new(
                Reason::ClientUnknown,
                "this client certificate's identity is not registered",
            )
        })?;
        if !client.enabled {
            return Err(Denial::new(
                Reason::ClientDisabled,
                "this client is disabled",
            ));
        }

        // 2 admission: rate, then size, before any cryptography.
        if client.limiter.check().is_err() {
            return Err(Denial::new(
                Reason::RateLimited,
                "request rate limit exceeded for this client",
            ));
        }
        let size = request.encoded_len();
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
        let env = request.envelope.ok_or(envelope::EnvelopeError::Missing)?;
        envelope::check_shape(&env, &self.audience)?;
        let bound = client
            .keys
            .get(&env.key_id)
            .ok_or(envelope::EnvelopeError::KeyNotBound)?;
        record.key_id = Some(env.key_id.clone());
        let now = self.clock.now_ms();
        if !bound.valid_at(now) {
            return Err(envelope::EnvelopeError::KeyNotValidNow.into());
        }
        let verified = envelope::verify_request(&env, &bound.key, now, self.limits.clock_skew_ms)?;
        self.replay
            .check_and_record(&client.id, &verified, now)
            .map_err(|e| match e {
                ReplayError::Replayed => Denial::new(Reason::ReplayedNonce, e.to_string()),
                ReplayError::Full => Denial::new(Reason::ReplayCacheFull, e.to_string()),
            })?;

        // 4 message: strict JSON-RPC, only now that the signature held.
        let message =
            jsonrpc::parse(&verified.payload, self.limits.json).map_err(message_denial)?;
        record.method = Some(message.method.as_str());

        // 5 authorization.
        authorize(client, &message, record)?;

        // 8 backend.
        let reply = tokio::time::timeout(
            self.limits.backend_timeout,
            self.backend.handle(message.method, message.params.as_ref()),
        )
        .await
        .map_err(|_| Denial::new(Reason::BackendTimeout, "the backend did not answer in time"))?
        .map_err(backend_denial)?;
        let payload = self.response_payload(client, &message, reply, record)?;

        // 9 seal, bound to the request.
        let (envelope, _) = envelope::seal(
            &self.signer.key,
            Seal {
                direction: Direction::Response,
                audience: &identity.spiffe_id,
                key_id: &self.signer.key_id,
                timestamp_unix_ms: self.clock.now_ms(),
                nonce: envelope::random_nonce(),
                payload: payload.into(),
                request_digest: Some(verified.digest),
            },
        );
        Ok(CallResponse {
            envelope: Some(envelope),
        })
    }

    fn identify<'a>(&self, peer: Option<&'a PeerInfo>) -> Result<&'a ClientIdentity, Denial> {
        match peer.map(|p| &p.identity) {
            None => Err(Denial::new(
                Reason::IdentityMissing,
                "no verified client certificate on this connection",
            )),
            Some(Err(e)) => Err(Denial::new(Reason::IdentityInvalid, e.to_string())),
            Some(Ok(identity)) => Ok(identity),
        }
    }

    /// Turns the backend's reply into the JSON-RPC response bytes, filtering
    /// tools/list down to what the client may call.
    fn response_payload(
        &self,
        client: &ClientEntry,
        message: &jsonrpc::Message,
        reply: Reply,
        record: &mut AuditRecord,
    ) -> Result<Vec<u8>, Denial> {
        let Some(id) = message.id.as_ref() else {
            // A notification: nothing to answer but the signed acknowledgement.
            return Ok(Vec::new());
        };
        let body = match reply {
            Reply::Result(mut result) => {
                if !result.is_object() {
                    return Err(backend_denial(BackendError::Protocol));
                }
                match message.method {
                    Method::ToolsList => filter_tools(&mut result, client)?,
                    Method::ToolsCall => {
                        record.backend_error =
                            result.get("isError").and_then(Value::as_bool) == Some(true);
                    }
                    _ => {}
                }
                jsonrpc::response(id, result)
            }
            Reply::Error(error) => {
                record.backend_error = true;
                serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error})
            }
            Reply::None => return Err(backend_denial(BackendError::Protocol)),
        };
        serde_json::to_vec(&body)
            .map_err(|_| Denial::new(Reason::Internal, "response could not be encoded"))
    }
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
    }
    Ok(())
}

/// Keeps only the tools the client may call in a tools/list result.
fn filter_tools(result: &mut Value, client: &ClientEntry) -> Result<(), Denial> {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return Err(backend_denial(BackendError::Protocol));
    };
    tools.retain(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| client.tools.allows(n))
    });
    Ok(())
}

fn message_denial(e: jsonrpc::JsonRpcError) -> Denial {
    use jsonrpc::JsonRpcError as E;
    let reason = match e {
        E::Json => Reason::JsonInvalid,
        E::TooDeep(_) => Reason::JsonTooDeep,
        E::Batch => Reason::BatchNotSupported,
        E::Invalid(_) => Reason::JsonRpcInvalid,
        E::UnknownMethod => Reason::MethodUnknown,
        E::Params(_) => Reason::ParamsInvalid,
    };
    Denial::new(reason, e.to_string())
}

fn backend_denial(e: BackendError) -> Denial {
    let reason = match e {
        BackendError::Unavailable => Reason::BackendUnavailable,
        BackendError::Timeout => Reason::BackendTimeout,
        BackendError::Protocol => Reason::BackendProtocol,
    };
    Denial::new(reason, e.to_string())
}
