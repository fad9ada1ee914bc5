//! The Rust client SDK: seal a JSON-RPC message, send it over mTLS, verify
//! the gateway's signed response and its binding to the request.
//!
//! A response is returned only after its signature verified with a
//! configured gateway key, its audience is this client, its
//! `request_digest` matches the request that was sent, it is fresh, and
//! (for requests) its JSON-RPC id is the one sent. It never hands back any
//! content of a response that failed one of these checks, and never logs a
//! payload or key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::envelope::{self, Direction, EnvelopeError, Seal};
use crate::gateway::{Clock, SystemClock};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use crate::proto::{CallRequest, ListBlocksRequest, UnblockRequest};

/// A client profile file: where the gateway is and which credentials to
/// use. Relative paths are resolved against the profile's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `host:port` of the gateway.
    pub endpoint: String,
    /// The DNS name (or IP) in the gateway's server certificate.
    pub server_name: String,
    /// CA certificate that issued the gateway's server certificate (PEM).
    pub ca: PathBuf,
    /// This client's certificate (PEM).
    pub cert: PathBuf,
    /// This client's TLS private key (PEM, 0600).
    pub key: PathBuf,
    /// This client's Ed25519 signing key (PKCS#8 PEM, 0600).
    pub signing_key: PathBuf,
    /// The id under which the signing key is registered at the gateway.
    pub key_id: String,
    /// The gateway's audience, e.g. `spiffe://sealgate.local/gateway`.
    pub audience: String,
    /// This client's SPIFFE ID: the audience of the gateway's responses.
    pub spiffe_id: String,
    /// Gateway response-signing keys this client trusts.
    #[serde(rename = "gateway_key", default)]
    pub gateway_keys: Vec<GatewayKey>,
    /// Accepted skew of response timestamps, seconds (default 30).
    #[serde(default)]
    pub clock_skew_secs: Option<u64>,
}

/// A trusted gateway signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKey {
    /// The id the gateway puts in the envelopes this key signs.
    pub key_id: String,
    /// The Ed25519 public key, standard base64 of the raw 32 bytes.
    pub public_key: String,
}

impl Profile {
    /// Reads a profile, resolves its paths against the profile's directory
    /// and refuses one that trusts no gateway key.
    pub fn load(path: &Path) -> Result<Profile, ClientError> {
        let err = |m: String| ClientError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut p: Profile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in [&mut p.ca, &mut p.cert, &mut p.key, &mut p.signing_key] {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if p.gateway_keys.is_empty() {
            return Err(err(
                "no [[gateway_key]]: responses could not be verified".into()
            ));
        }
        Ok(p)
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile could not be read or is incomplete, a gateway key does
    /// not decode, or a request could not be encoded.
    #[error("configuration: {0}")]
    Config(String),
    /// The gateway could not be reached, or the TLS handshake failed.
    #[error(transparent)]
    Connect(#[from] crate::tls::ConnectError),
    /// The profile's CA, certificate or TLS key could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The signing key file is unreadable, too open or not an Ed25519 key.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// The gateway refused the request.
    #[error("{}: {message} (gRPC {code:?})", reason.as_deref().unwrap_or("UNKNOWN"))]
    Denied {
        /// The gRPC status code.
        code: tonic::Code,
        /// The stable sealgate reason (e.g. `TOOL_NOT_ALLOWED`), when the
        /// status carried one: match on this, not on the message.
        reason: Option<String>,
        /// The status message, meant for people.
        message: String,
    },
    /// The response failed verification: never trust its content.
    #[error("response rejected: {0}")]
    BadResponse(String),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Denied {
            code: status.code(),
            reason: crate::error::reason_of(&status),
            message: status.message().to_string(),
        }
    }
}

impl ClientError {
    /// The sealgate reason code of a denial.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Denied { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }
}

/// What a client signs with and whom it trusts.
pub struct Credentials {
    /// This client's Ed25519 envelope-signing key; never logged or sent.
    pub signing_key: SigningKey,
    /// The id under which the signing key is registered at the gateway.
    pub key_id: String,
    /// The gateway's audience, put in every request envelope.
    pub audience: String,
    /// This client's SPIFFE ID: the audience every response must carry.
    pub spiffe_id: String,
    /// Trusted gateway response-signing keys by key id; a response signed
    /// with any other key is rejected.
    pub gateway_keys: HashMap<String, VerifyingKey>,
    /// Accepted skew of response timestamps, in milliseconds.
    pub clock_skew_ms: i64,
}

/// A connected sealgate client.
#[derive(Clone)]
pub struct Client {
    rpc: McpGatewayServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    creds: Arc<Credentials>,
    clock: Arc<dyn Clock>,
    next_id: Arc<AtomicU64>,
}

impl Client {
    /// Connects with the credentials of a profile.
    pub async fn connect(profile: &Profile) -> Result<Client, ClientError> {
        let tls = crate::tls::client_config(&profile.ca, &profile.cert, &profile.key)?;
        let channel =
            crate::tls::connect_channel(&profile.endpoint, &profile.server_name, tls).await?;
        let mut gateway_keys = HashMap::new();
        for k in &profile.gateway_keys {
            let key = crate::identity::decode_public_key(&k.public_key)
                .map_err(|e| ClientError::Config(format!("gateway_key {}: {e}", k.key_id)))?;
            gateway_keys.insert(k.key_id.clone(), key);
        }
        let creds = Credentials {
            signing_key: crate::keys::load_signing_key(&profile.signing_key)?,
            key_id: profile.key_id.clone(),
            audience: profile.audience.clone(),
            spiffe_id: profile.spiffe_id.clone(),
            gateway_keys,
            clock_skew_ms: i64::try_from(profile.clock_skew_secs.unwrap_or(30).min(600))
                .unwrap_or(30)
                * 1000,
        };
        Ok(Client::new(channel, creds))
    }

    /// A client over an existing channel.
    pub fn new(channel: Channel, creds: Credentials) -> Client {
        Client {
            rpc: McpGatewayServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel),
            creds: Arc::new(creds),
            clock: Arc::new(SystemClock),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Seals `payload` (one JSON-RPC message, exact bytes), sends it and
    /// returns the verified response payload.
    pub async fn send(&self, payload: Bytes) -> Result<Bytes, ClientError> {
        let (env, signed) = self.seal(payload);
        let response = self
            .rpc
            .clone()
            .call(CallRequest {
                envelope: Some(env),
            })
            .await?
            .into_inner();
        self.open(response.envelope, &signed)
    }

    /// `sealgate admin blocks`: the current blocks and throttles (an admin
    /// identity only), verified like every response.
    pub async fn admin_blocks(&self) -> Result<Value, ClientError> {
        let (payload, id) = self.admin_payload(crate::admin::METHOD_BLOCKS, None)?;
        let (env, signed) = self.seal(payload);
        let response = self
            .admin
            .clone()
            .list_blocks(ListBlocksRequest {
                envelope: Some(env),
            })
            .await?
            .into_inner();
        self.admin_result(self.open(response.envelope, &signed)?, id)
    }

    /// `sealgate admin unblock ID`: lifts every block and throttle of a
    /// client id or source address (an admin identity only).
    pub async fn admin_unblock(&self, target: &str) -> Result<Value, ClientError> {
        let (payload, id) =
            self.admin_payload(crate::admin::METHOD_UNBLOCK, Some(json!({"id": target})))?;
        let (env, signed) = self.seal(payload);
        let response = self
            .admin
            .clone()
            .unblock(UnblockRequest {
                envelope: Some(env),
            })
            .await?
            .into_inner();
        self.admin_result(self.open(response.envelope, &signed)?, id)
    }

    fn admin_payload(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<(Bytes, u64), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        let payload = serde_json::to_vec(&msg).map_err(|e| ClientError::Config(e.to_string()))?;
        Ok((payload.into(), id))
    }

    fn admin_result(&self, reply: Bytes, id: u64) -> Result<Value, ClientError> {
        let value: Value = serde_json::from_slice(&reply)
            .map_err(|_| ClientError::BadResponse("payload is not JSON".into()))?;
        if value.get("id") != Some(&json!(id)) {
            return Err(ClientError::BadResponse(
                "JSON-RPC id does not match the request".into(),
            ));
        }
        value
            .get("result")
            .cloned()
            .ok_or_else(|| ClientError::BadResponse("no result".into()))
    }

    /// Seals one request payload; returns the envelope and its signed
    /// bytes (whose digest the response must carry).
    fn seal(&self, payload: Bytes) -> (crate::proto::SignedEnvelope, Vec<u8>) {
        envelope::seal(
            &self.creds.signing_key,
            Seal {
                direction: Direction::Request,
                audience: &self.creds.audience,
                key_id: &self.creds.key_id,
                timestamp_unix_ms: self.clock.now_ms(),
                nonce: envelope::random_nonce(),
                payload,
                request_digest: None,
            },
        )
    }

    /// Verifies a response envelope against the request's signed bytes and
    /// returns its payload.
    fn open(
        &self,
        env: Option<crate::proto::SignedEnvelope>,
        signed: &[u8],
    ) -> Result<Bytes, ClientError> {
        let env = env.ok_or_else(|| ClientError::BadResponse("no envelope".into()))?;
        let key = self.creds.gateway_keys.get(&env.key_id).ok_or_else(|| {
            ClientError::BadResponse("signed with a key this client does not trust".into())
        })?;
        envelope::verify_response(
            &env,
            &self.creds.spiffe_id,
            &env.key_id,
            key,
            &envelope::digest(signed),
            self.clock.now_ms(),
            self.creds.clock_skew_ms,
        )
        .map_err(|e: EnvelopeError| ClientError::BadResponse(e.to_string()))
    }

    /// Sends a JSON-RPC request and returns the whole verified response
    /// object (with `result` or `error`).
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let payload = serde_json::to_vec(&msg).map_err(|e| ClientError::Config(e.to_string()))?;
        let reply = self.send(payload.into()).await?;
        let value: Value = serde_json::from_slice(&reply)
            .map_err(|_| ClientError::BadResponse("payload is not JSON".into()))?;
        if value.get("id") != Some(&json!(id)) {
            return Err(ClientError::BadResponse(
                "JSON-RPC id does not match the request".into(),
            ));
        }
        Ok(value)
    }

    /// `tools/call`: returns the JSON-RPC response object.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// `tools/list`: returns the JSON-RPC response object.
    pub async fn list_tools(&self) -> Result<Value, ClientError> {
        self.request("tools/list", json!({})).await
    }
}
