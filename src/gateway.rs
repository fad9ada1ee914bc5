//! The tonic service that runs every stage of a request, in order.
//!
//! identity → admission → envelope → message → authorization → backend →
//! seal → audit. Cheap checks come first; the Ed25519 signature is verified
//! before any JSON is parsed; a nonce is recorded only after its signature
//! held. Each stage returns a [`Denial`] on failure; [`Denial::to_status`]
//! is the only place a denial becomes a gRPC status. Every request, allowed
//! or denied, produces exactly one audit record.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use prost::Message as _;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::backend::router::{Lookup, Router};
use crate::backend::{BackendError, Reply};
use crate::envelope::{self, Direction, Seal};
use crate::error::{Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity, Registry};
use crate::jsonrpc::{self, Method};
use crate::policy::SanitizePolicy;
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
    pub replay: Box<dyn ReplayStore>,
    /// Swapped when the signing key secret is refreshed.
    pub signer: ArcSwap<ResponseSigner>,
    pub router: Arc<Router>,
    pub sanitize: SanitizePolicy,
    pub secrets: Arc<crate::secrets::Secrets>,
    pub signing_key_ref: crate::secrets::SecretRef,
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
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let _busy = peer.as_ref().map(|p| p.activity.begin());
        // Written when this future ends, however it ends: a client that
        // resets its stream, or the transport's request timeout, drops the
        // future mid-call and still leaves a record.
        let mut audit = AuditOnDrop {
            record: AuditRecord::new(),
            log: &self.gateway.audit,
            started: Instant::now(),
            done: false,
        };
        let result = self
            .gateway
            .process(peer.as_deref(), request.into_inner(), &mut audit.record)
            .await;
        match &result {
            Ok(_) => audit.record.outcome = Outcome::Allowed,
            Err(denial) => {
                audit.record.deny(denial.reason);
                tracing::info!(
                    client.id = audit.record.client_id.as_deref().unwrap_or("-"),
                    reason = denial.reason.as_str(),
                    "request denied"
                );
            }
        }
        audit.done = true;
        drop(audit);
        result.map(Response::new).map_err(|d| d.to_status())
    }
}

/// Writes the audit record of one request when dropped; a request that did
/// not finish is recorded as `cancelled`.
struct AuditOnDrop<'a> {
    record: AuditRecord,
    log: &'a AuditLog,
    started: Instant,
    done: bool,
}

impl Drop for AuditOnDrop<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record.outcome = Outcome::Cancelled;
        }
        self.record.duration_us =
            u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.log.write(&self.record);
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

        // 6 arguments and 8 backend.
        let reply = self.dispatch(client, &message).await?;
        let payload = self.response_payload(&message, reply, record)?;

        // 9 seal, bound to the request.
        let signer = self.signer.load();
        let (envelope, _) = envelope::seal(
            &signer.key,
            Seal {
                direction: Direction::Response,
                audience: &identity.spiffe_id,
                key_id: &signer.key_id,
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
            Some(Ok(identity)) if self.revoked.load().contains(&identity.serial) => {
                Err(Denial::new(
                    Reason::CertificateRevoked,
                    "this client certificate has been revoked",
                ))
            }
            Some(Ok(identity)) => Ok(identity),
        }
    }

    /// Stages 6 and 8: the gateway answers lifecycle methods itself, serves
    /// tools/list from the pinned tools, and for tools/call checks the
    /// arguments against the sanitizer and the pinned schema before the
    /// routed backend sees them.
    async fn dispatch(
        &self,
        client: &ClientEntry,
        message: &jsonrpc::Message,
    ) -> Result<Option<Reply>, Denial> {
        let params = message
            .params
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        let reply = match message.method {
            Method::Initialize => Reply::Result(initialize_result(&params)),
            Method::Ping => Reply::Result(json!({})),
            Method::ToolsList => {
                Reply::Result(json!({"tools": self.router.list(|name| client.tools.allows(name))}))
            }
            Method::ToolsCall => {
                let name = message.tool.as_deref().unwrap_or_default();
                let route = self.router.resolve(name).await.map_err(|e| match e {
                    Lookup::Unknown => Denial::new(Reason::ToolUnknown, format!("no backend offers tool {name}")),
                    Lookup::Changed => Denial::new(
                        Reason::ToolDefinitionChanged,
                        format!("the definition of tool {name} changed at its backend and awaits an operator's acceptance"),
                    ),
                    Lookup::Unavailable => Denial::new(Reason::BackendUnavailable, "the backend of this tool reconnected and could not be re-listed"),
                })?;
                let mut arguments = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                self.sanitize
                    .apply(name, &mut arguments)
                    .map_err(|e| Denial::new(Reason::ArgumentsRejected, e.to_string()))?;
                route
                    .tool
                    .validate(&arguments)
                    .map_err(|e| Denial::new(Reason::ArgumentsInvalid, e))?;
                self.router
                    .call_tool(&route, arguments)
                    .await
                    .map_err(backend_denial)?
            }
            // The gateway initialized each backend itself; cancellation of
            // a call is the gRPC cancellation of that call.
            Method::NotificationsInitialized | Method::NotificationsCancelled => return Ok(None),
            // Resources and prompts: the sanitizer checks their params too
            // (a resource uri is an identifier field).
            other => {
                let mut params = params;
                self.sanitize
                    .apply(other.as_str(), &mut params)
                    .map_err(|e| Denial::new(Reason::ArgumentsRejected, e.to_string()))?;
                self.router
                    .forward_to_primary(other.as_str(), params)
                    .await
                    .map_err(backend_denial)?
            }
        };
        Ok(Some(reply))
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

    /// Re-resolves every secret and swaps in a changed signing key.
    pub async fn refresh_secrets(&self) {
        self.secrets.refresh().await;
        match signer_from(&self.secrets, &self.signing_key_ref) {
            Ok(signer) => {
                if signer.key_id != self.signer.load().key_id {
                    tracing::info!(key.id = signer.key_id, "gateway signing key rotated");
                }
                self.signer.store(Arc::new(signer));
            }
            Err(e) => {
                tracing::error!(error = %e, "signing key refresh failed; keeping the previous key")
            }
        }
    }
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

/// Builds the response signer from the signing-key secret (PKCS#8 PEM).
pub fn signer_from(
    secrets: &crate::secrets::Secrets,
    r: &crate::secrets::SecretRef,
) -> Result<ResponseSigner, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use secrecy::ExposeSecret;
    let pem = secrets
        .get(r)
        .ok_or_else(|| format!("secret {r} was not resolved"))?;
    let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
        .map_err(|_| format!("secret {r}: not an Ed25519 PKCS#8 PEM private key"))?;
    let key_id = crate::identity::key_id_for(&key.verifying_key());
    Ok(ResponseSigner { key, key_id })
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
