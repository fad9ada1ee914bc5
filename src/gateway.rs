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
use crate::backend::router::Router;
use crate::backend::Reply;
use crate::envelope::{self, Direction, Seal};
use crate::error::{route_denial, Denial, Reason};
use crate::identity::{ClientEntry, ClientIdentity, Registry};
use crate::jsonrpc::{self, Method};
use crate::peer::PeerInfo;
use crate::policy::SanitizePolicy;
use crate::proto::mcp_gateway_service_server::McpGatewayService;
use crate::proto::{CallRequest, CallResponse};
use crate::replay::ReplayStore;

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
                audit
                    .record
                    .deny(denial.reason.as_str(), denial.reason.fault());
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
        self.replay.check_and_record(&client.id, &verified, now)?;

        // 4 message: strict JSON-RPC, only now that the signature held.
        let message = jsonrpc::parse(&verified.payload, self.limits.json)?;
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
            Some(Err(e)) => Err(e.into()),
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
                let route = self
                    .router
                    .resolve(name)
                    .await
                    .map_err(|e| route_denial(e, name))?;
                let mut arguments = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                self.sanitize.apply(name, &mut arguments)?;
                route
                    .tool
                    .validate(&arguments)
                    .map_err(crate::error::schema_denial)?;
                self.router.call_tool(&route, arguments).await?
            }
            // The gateway initialized each backend itself; cancellation of
            // a call is the gRPC cancellation of that call.
            Method::NotificationsInitialized | Method::NotificationsCancelled => return Ok(None),
            // Resources and prompts: the sanitizer checks their params too
            // (a resource uri is an identifier field).
            other => {
                let mut params = params;
                self.sanitize.apply(other.as_str(), &mut params)?;
                self.router
                    .forward_to_primary(other.as_str(), params)
                    .await?
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
    }
    Ok(())
}
