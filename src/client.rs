//! The Rust client SDK: seal a JSON-RPC message, send it over mTLS, verify
//! the gateway's signed response and its binding to the request.
//!
//! A response is returned only after its signature verified with a
//! configured gateway key, its audience is this client, its
//! `request_digest` matches the request that was sent, it is fresh, and
//! (for requests) its JSON-RPC id is the one sent. It never hands back any
//! content of a response that failed one of these checks, and never logs a
//! payload or key.
//!
//! Layout: this file holds the [`Client`] and its calls (seal a request,
//! send it, open the sealed answer); `client/profile.rs` the profile file,
//! `client/error.rs` the [`ClientError`], `client/status.rs` how a failed
//! call becomes one, `client/handshake.rs` and `client/refusals.rs` how a
//! refused certificate is read and explained, `client/receipt.rs` the
//! receipts of this client's calls (asked for by their request digest and
//! verified).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::envelope::{self, Direction, EnvelopeError, Seal};
use crate::gateway::{Clock, SystemClock};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::audit_service_client::AuditServiceClient;
use crate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use crate::proto::{CallRequest, ListBlocksRequest, UnblockRequest};

mod error;
mod handshake;
mod profile;
mod receipt;
mod refusals;
mod status;

pub use crate::receipt::{verify_receipt, Receipt, ReceiptError, ReceiptKeys, VerifiedReceipt};
pub use error::ClientError;
pub use profile::{load_vkey, GatewayKey, Profile};
pub(crate) use status::explain_status;

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
    audit: AuditServiceClient<Channel>,
    creds: Arc<Credentials>,
    clock: Arc<dyn Clock>,
    next_id: Arc<AtomicU64>,
    /// The channel's last TLS error, to explain a call that failed because
    /// the gateway refused this client's certificate (TLS 1.3 delivers that
    /// verdict at the first call); none for a channel made elsewhere.
    tls_failures: Option<crate::tls::TlsFailures>,
}

impl Client {
    /// Connects with the credentials of a profile.
    pub async fn connect(profile: &Profile) -> Result<Client, ClientError> {
        let tls = crate::tls::client_config(&profile.ca, &profile.cert, &profile.key)?;
        let (channel, tls_failures) =
            crate::tls::connect_channel_watched(&profile.endpoint, &profile.server_name, tls)
                .await?;
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
        Ok(Client {
            tls_failures: Some(tls_failures),
            ..Client::new(channel, creds)
        })
    }

    /// A client over an existing channel.
    pub fn new(channel: Channel, creds: Credentials) -> Client {
        Client {
            rpc: McpGatewayServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel),
            creds: Arc::new(creds),
            clock: Arc::new(SystemClock),
            next_id: Arc::new(AtomicU64::new(1)),
            tls_failures: None,
        }
    }

    /// A failed call as a [`ClientError`]: a status without a sealgate
    /// reason that the transport produced (the connection failed under the
    /// call) is explained by the channel's last TLS error, when it has one.
    async fn call_error(&self, status: tonic::Status) -> ClientError {
        explain_status(status, self.tls_failures.as_ref()).await
    }

    /// Seals `payload` (one JSON-RPC message, exact bytes), sends it and
    /// returns the verified response payload.
    pub async fn send(&self, payload: Bytes) -> Result<Bytes, ClientError> {
        Ok(self.send_bound(payload).await?.0)
    }

    /// [`Client::send`], also returning the request digest (SHA-256 of the
    /// request's signed bytes) the response is bound to: what the call's
    /// audit record and its receipt are found by.
    pub async fn send_bound(&self, payload: Bytes) -> Result<(Bytes, [u8; 32]), ClientError> {
        let (env, signed) = self.seal(payload);
        let response = match self
            .rpc
            .clone()
            .call(CallRequest {
                envelope: Some(env),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(self.call_error(status).await),
        };
        let reply = self.open(response.envelope, &signed)?;
        Ok((reply, envelope::digest(&signed)))
    }

    /// `sealgate admin blocks`: the current blocks and throttles (an admin
    /// identity only), verified like every response.
    pub async fn admin_blocks(&self) -> Result<Value, ClientError> {
        let (payload, id) = self.admin_payload(crate::admin::METHOD_BLOCKS, None)?;
        let (env, signed) = self.seal(payload);
        let response = match self
            .admin
            .clone()
            .list_blocks(ListBlocksRequest {
                envelope: Some(env),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(self.call_error(status).await),
        };
        self.admin_result(self.open(response.envelope, &signed)?, id)
    }

    /// `sealgate admin unblock ID`: lifts every block and throttle of a
    /// client id or source address (an admin identity only).
    pub async fn admin_unblock(&self, target: &str) -> Result<Value, ClientError> {
        let (payload, id) =
            self.admin_payload(crate::admin::METHOD_UNBLOCK, Some(json!({"id": target})))?;
        let (env, signed) = self.seal(payload);
        let response = match self
            .admin
            .clone()
            .unblock(UnblockRequest {
                envelope: Some(env),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(self.call_error(status).await),
        };
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
        Ok(self.request_bound(method, params).await?.0)
    }

    /// [`Client::request`], also returning the request digest the response
    /// is bound to (see [`Client::send_bound`]).
    pub async fn request_bound(
        &self,
        method: &str,
        params: Value,
    ) -> Result<(Value, [u8; 32]), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let payload = serde_json::to_vec(&msg).map_err(|e| ClientError::Config(e.to_string()))?;
        let (reply, digest) = self.send_bound(payload.into()).await?;
        let value: Value = serde_json::from_slice(&reply)
            .map_err(|_| ClientError::BadResponse("payload is not JSON".into()))?;
        if value.get("id") != Some(&json!(id)) {
            return Err(ClientError::BadResponse(
                "JSON-RPC id does not match the request".into(),
            ));
        }
        Ok((value, digest))
    }

    /// `tools/call`: returns the JSON-RPC response object.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// [`Client::call_tool`], also returning the request digest its
    /// receipt is asked for by ([`Client::verified_receipt`]).
    pub async fn call_tool_bound(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<(Value, [u8; 32]), ClientError> {
        self.request_bound("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// `tools/list`: returns the JSON-RPC response object.
    pub async fn list_tools(&self) -> Result<Value, ClientError> {
        self.request("tools/list", json!({})).await
    }
}
