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
    /// `host:port` of the enrollment service, for `sealgate renew`.
    #[serde(default)]
    pub enrollment: Option<String>,
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
    /// The gateway could not be reached, or the connection failed for a
    /// reason other than a refused certificate (those are [`Handshake`]).
    ///
    /// [`Handshake`]: ClientError::Handshake
    #[error(transparent)]
    Connect(crate::tls::ConnectError),
    /// The TLS handshake was refused over a certificate: the gateway sent
    /// an alert (it refused this client's certificate), or this client
    /// refused the gateway's certificate. Under TLS 1.3 the gateway's
    /// verdict arrives after the client's side of the handshake is done, so
    /// this is also what the first call on a new connection can return.
    #[error("{}", handshake_message(alert, advice))]
    Handshake {
        /// The TLS alert the gateway sent, in its RFC 8446 name (e.g.
        /// `certificate_revoked`, `unknown_ca`); or, when this client
        /// refused the gateway's certificate, why, in rustls's name for it
        /// (`unknown_issuer`, `not_valid_for_name`, `expired`, …).
        alert: String,
        /// What to do about it, for people.
        advice: &'static str,
    },
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
        // A refused certificate surfaces on the first call (TLS 1.3): the
        // status then carries the transport error, not a sealgate reason.
        if let Some(handshake) = handshake_failure(&status) {
            return handshake;
        }
        let reason = crate::error::reason_of(&status);
        // A connection the gateway closed with a GOAWAY saying why: the
        // calls it did not act on carry that text only in their source.
        let message = reason
            .is_none()
            .then(|| goaway_text(&status))
            .flatten()
            .unwrap_or_else(|| status.message().to_string());
        ClientError::Denied {
            code: status.code(),
            reason,
            message,
        }
    }
}

/// The gateway's words in a GOAWAY's debug data (`sealgate: …`), found in
/// an error's source chain as h2 displays it (`… (b"sealgate: …")`).
fn goaway_text(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    const MARK: &str = "b\"sealgate: ";
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if let Some(start) = text.find(MARK) {
            return Some(
                unescape_bytes(&text[start + 2..])
                    .chars()
                    .take(256)
                    .collect(),
            );
        }
        next = e.source();
    }
    None
}

/// The text inside a byte string as Rust's `Debug` shows it (`b"…"`, the
/// opening quote already skipped): escapes undone, up to the closing quote.
fn unescape_bytes(shown: &str) -> String {
    let mut bytes = Vec::new();
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => bytes.push(b'\n'),
                Some('r') => bytes.push(b'\r'),
                Some('t') => bytes.push(b'\t'),
                Some('0') => bytes.push(0),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
                }
                Some(other) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => break,
            },
            other => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl From<crate::tls::ConnectError> for ClientError {
    fn from(e: crate::tls::ConnectError) -> Self {
        handshake_failure(&e).unwrap_or(ClientError::Connect(e))
    }
}

/// A failed call as a [`ClientError`]: a status without a sealgate reason
/// that the transport produced (the connection failed under the call) is
/// explained by the channel's last TLS error, when there is one.
///
/// The gateway's alert and the failed call race each other (the call can
/// fail before the connection task has read the alert), so a bare
/// transport failure waits up to [`ALERT_WAIT`] for it.
pub(crate) async fn explain_status(
    status: tonic::Status,
    failures: Option<&crate::tls::TlsFailures>,
) -> ClientError {
    let error = ClientError::from(status);
    if let ClientError::Denied {
        code: tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable,
        reason: None,
        ..
    } = &error
    {
        let Some(failures) = failures else {
            return error;
        };
        let deadline = tokio::time::Instant::now() + ALERT_WAIT;
        loop {
            if let Some(refusal) = failures.last().as_ref().and_then(refusal_of) {
                return refusal;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    error
}

/// How long a failed call waits for the TLS alert that explains it.
const ALERT_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// One known way a handshake is refused over a certificate: who refused,
/// the alert (or rustls reason) name, what happened and what to do.
struct Refusal {
    by_gateway: bool,
    alert: &'static str,
    what: &'static str,
    advice: &'static str,
}

const NEW_CERT: &str = "ask the CA operator for a new client certificate";

/// Every refusal this client explains; the first entry of each side whose
/// `alert` is empty is the fallback for that side.
const REFUSALS: &[Refusal] = &[
    Refusal {
        by_gateway: true,
        alert: "certificate_revoked",
        what: "it has been revoked",
        advice: NEW_CERT,
    },
    Refusal {
        by_gateway: true,
        alert: "certificate_expired",
        what: "it has expired or is not valid yet",
        advice: "ask the CA operator for a new client certificate, and check this machine's clock",
    },
    Refusal {
        by_gateway: true,
        alert: "unknown_ca",
        what: "it was not issued by the gateway's client CA, or the gateway cannot check \
               its revocation status (its CRL may be past its next update)",
        advice: "check that the profile's cert was issued by the gateway's CA; if it was, \
                 ask the gateway operator to re-issue the CRL (`sealgate ca crl`) and reload",
    },
    Refusal {
        by_gateway: true,
        alert: "certificate_required",
        what: "no client certificate was sent",
        advice: "set cert and key in the profile to this client's certificate and key",
    },
    Refusal {
        by_gateway: true,
        alert: "protocol_version",
        what: "the TLS version was refused (the gateway speaks TLS 1.3 only)",
        advice: "connect with a TLS 1.3 client",
    },
    Refusal {
        by_gateway: true,
        alert: "unsupported_certificate",
        what: "its extended key usage does not allow client authentication",
        advice: "ask the CA operator for a client certificate (`sealgate ca issue-client`)",
    },
    Refusal {
        by_gateway: true,
        alert: "bad_certificate",
        what: "it is malformed",
        advice: NEW_CERT,
    },
    Refusal {
        by_gateway: true,
        alert: "access_denied",
        what: "this source address is blocked (too many failed handshakes or refused \
               identities came from it)",
        advice: "the block ends after its cool-down; if this client is not the cause (a shared \
                 or NAT address), ask the gateway operator to lift it \
                 (`sealgate admin unblock ADDRESS`)",
    },
    Refusal {
        by_gateway: true,
        alert: "internal_error",
        what: "the gateway is busy (too many handshakes in progress, from this source address \
               or in all)",
        advice: "retry in a few seconds; if it persists, ask the gateway operator",
    },
    Refusal {
        by_gateway: true,
        alert: "",
        what: "the handshake was refused",
        advice: "the gateway's log names the reason; ask its operator",
    },
    Refusal {
        by_gateway: false,
        alert: "unknown_issuer",
        what: "it was not issued by the CA in this client's profile",
        advice: "set the profile's ca to the CA that issued the gateway's server certificate",
    },
    Refusal {
        by_gateway: false,
        alert: "not_valid_for_name",
        what: "it is not valid for the profile's server_name",
        advice: "set the profile's server_name to a name in the gateway's certificate",
    },
    Refusal {
        by_gateway: false,
        alert: "expired",
        what: "it has expired",
        advice: "ask the gateway operator to renew its server certificate, \
                 and check this machine's clock",
    },
    Refusal {
        by_gateway: false,
        alert: "not_valid_yet",
        what: "it is not valid yet",
        advice: "check this machine's clock",
    },
    Refusal {
        by_gateway: false,
        alert: "",
        what: "it could not be verified",
        advice: "check the profile's ca and server_name",
    },
];

/// The entry for a refusal: by the gateway (a received alert) or by this
/// client (a local verification failure).
fn refusal_entry(by_gateway: bool, alert: &str) -> &'static Refusal {
    let side = || REFUSALS.iter().filter(move |r| r.by_gateway == by_gateway);
    side()
        .find(|r| r.alert == alert)
        .or_else(|| side().find(|r| r.alert.is_empty()))
        .unwrap_or(&REFUSALS[0])
}

/// The alerts the gateway sends when it refuses a connection at accept,
/// before looking at any certificate.
const CONNECTION_ALERTS: &[&str] = &["access_denied", "internal_error"];

/// The Display of [`ClientError::Handshake`]: who refused what, in words,
/// and the advice.
fn handshake_message(alert: &str, advice: &str) -> String {
    let by_gateway = !REFUSALS.iter().any(|r| !r.by_gateway && r.advice == advice);
    let what = refusal_entry(by_gateway, alert).what;
    if CONNECTION_ALERTS.contains(&alert) {
        format!("the gateway refused this connection before the handshake: {what} (TLS alert {alert}); {advice}")
    } else if by_gateway {
        format!("the gateway refused this client certificate: {what} (TLS alert {alert}); {advice}")
    } else {
        format!("this client refused the gateway's certificate: {what} ({alert}); {advice}")
    }
}

/// Walks an error's source chain (tonic → hyper → io → rustls) for the
/// rustls error of a certificate refusal, and explains it.
fn handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<ClientError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return refusal_of(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error::source skips the error it wraps: look inside it.
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return refusal_of(tls);
                }
                if let Some(refusal) = alert_in_text(io.kind(), &inner.to_string()) {
                    return Some(refusal);
                }
            }
        }
        next = e.source();
    }
    None
}

/// How rustls words `Error::AlertReceived` (its Display).
const ALERT_RECEIVED: &str = "received fatal alert: ";

/// The alert of an error that reached us as text. An alert that arrives on
/// the first read after the handshake (TLS 1.3: the gateway's verdict on
/// the client certificate) passes through h2, which keeps only an I/O
/// error's kind and message, so at the first call the `rustls::Error` is
/// gone and only its Display, `received fatal alert: CertificateRevoked`,
/// remains.
fn alert_in_text(kind: std::io::ErrorKind, text: &str) -> Option<ClientError> {
    if kind != std::io::ErrorKind::InvalidData {
        return None;
    }
    let name = text.strip_prefix(ALERT_RECEIVED)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let alert = snake_case(name);
    let advice = refusal_entry(true, &alert).advice;
    Some(ClientError::Handshake { alert, advice })
}

/// A rustls error as a [`ClientError::Handshake`], when it is about a
/// certificate: an alert from the gateway, or its certificate refused here.
fn refusal_of(error: &rustls::Error) -> Option<ClientError> {
    let (by_gateway, alert) = match error {
        rustls::Error::AlertReceived(alert) => (true, alert_name(*alert)),
        rustls::Error::InvalidCertificate(e) => (false, certificate_error_name(e)),
        _ => return None,
    };
    let advice = refusal_entry(by_gateway, &alert).advice;
    Some(ClientError::Handshake { alert, advice })
}

/// rustls's `AlertDescription` in its RFC 8446 name (`CertificateRevoked`
/// → `certificate_revoked`).
fn alert_name(alert: rustls::AlertDescription) -> String {
    snake_case(&format!("{alert:?}"))
}

/// rustls's name of a certificate error in snake case, without its context
/// (`NotValidForNameContext { .. }` → `not_valid_for_name`).
fn certificate_error_name(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::Expired | E::ExpiredContext { .. } => "expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "not_valid_yet".into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => "not_valid_for_name".into(),
        E::UnknownIssuer => "unknown_issuer".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => "invalid_purpose".into(),
        other => {
            let debug = format!("{other:?}");
            let name = debug.split([' ', '(', '{']).next().unwrap_or("");
            snake_case(name)
        }
    }
}

fn snake_case(camel: &str) -> String {
    // An underscore only after a lowercase letter or digit: `UnknownCA` is
    // `unknown_ca`, as RFC 8446 names it.
    let mut out = String::with_capacity(camel.len() + 4);
    let mut after_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
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
            admin: AdminServiceClient::new(channel),
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
        self.open(response.envelope, &signed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError};

    fn handshake(error: Option<ClientError>) -> (String, &'static str, String) {
        match error {
            Some(e @ ClientError::Handshake { .. }) => {
                let message = e.to_string();
                let ClientError::Handshake { alert, advice } = e else {
                    unreachable!()
                };
                (alert, advice, message)
            }
            other => panic!("not a handshake refusal: {other:?}"),
        }
    }

    #[test]
    fn alerts_from_the_gateway_are_named_and_explained() {
        for (alert, name, words) in [
            (
                AlertDescription::CertificateRevoked,
                "certificate_revoked",
                "revoked",
            ),
            (
                AlertDescription::CertificateExpired,
                "certificate_expired",
                "expired",
            ),
            (
                AlertDescription::UnknownCA,
                "unknown_ca",
                "not issued by the gateway's",
            ),
            (
                AlertDescription::CertificateRequired,
                "certificate_required",
                "no client",
            ),
            (
                AlertDescription::ProtocolVersion,
                "protocol_version",
                "TLS 1.3",
            ),
            (
                AlertDescription::UnsupportedCertificate,
                "unsupported_certificate",
                "key usage",
            ),
            (
                AlertDescription::BadCertificate,
                "bad_certificate",
                "malformed",
            ),
            (AlertDescription::DecryptError, "decrypt_error", "refused"),
        ] {
            let (got, advice, message) =
                handshake(refusal_of(&rustls::Error::AlertReceived(alert)));
            assert_eq!(got, name);
            assert!(message.starts_with("the gateway refused this client certificate: "));
            assert!(message.contains(words), "{message}");
            assert!(
                message.contains(&format!("(TLS alert {name}); {advice}")),
                "{message}"
            );
        }
    }

    #[test]
    fn the_gateways_certificate_refused_here_is_explained() {
        for (error, name, words) in [
            (
                CertificateError::UnknownIssuer,
                "unknown_issuer",
                "not issued by the CA",
            ),
            (
                CertificateError::NotValidForName,
                "not_valid_for_name",
                "server_name",
            ),
            (CertificateError::Expired, "expired", "expired"),
            (
                CertificateError::NotValidYet,
                "not_valid_yet",
                "not valid yet",
            ),
            (
                CertificateError::BadEncoding,
                "bad_encoding",
                "could not be verified",
            ),
        ] {
            let (got, _, message) =
                handshake(refusal_of(&rustls::Error::InvalidCertificate(error)));
            assert_eq!(got, name);
            assert!(message.starts_with("this client refused the gateway's certificate: "));
            assert!(message.contains(words), "{message}");
        }
        assert!(refusal_of(&rustls::Error::DecryptError).is_none());
    }

    #[test]
    fn an_alert_that_reached_us_as_text_is_recognised() {
        let kind = std::io::ErrorKind::InvalidData;
        let (alert, advice, _) = handshake(alert_in_text(
            kind,
            "received fatal alert: CertificateRevoked",
        ));
        assert_eq!((alert.as_str(), advice), ("certificate_revoked", NEW_CERT));
        let (alert, _, _) = handshake(alert_in_text(kind, "received fatal alert: UnknownCA"));
        assert_eq!(alert, "unknown_ca");
        for text in [
            "received fatal alert: ",
            "received fatal alert: a b",
            "other",
        ] {
            assert!(alert_in_text(kind, text).is_none(), "{text}");
        }
        let other = std::io::ErrorKind::ConnectionReset;
        assert!(alert_in_text(other, "received fatal alert: UnknownCA").is_none());
    }

    #[test]
    fn each_side_has_its_own_advice() {
        // The message tells the sides apart by the advice.
        for gateway in REFUSALS.iter().filter(|r| r.by_gateway) {
            assert!(
                !REFUSALS
                    .iter()
                    .any(|r| !r.by_gateway && r.advice == gateway.advice),
                "{}",
                gateway.advice
            );
        }
    }

    #[test]
    fn goaway_words_are_read_whole_with_their_escapes_undone() {
        let shown = r#"connection error: GoAway(b"sealgate: closed (\"why\") caf\xc3\xa9\n", ENHANCE_YOUR_CALM, Remote)"#;
        let start = shown.find("b\"").expect("bytes") + 2;
        assert_eq!(
            unescape_bytes(&shown[start..]),
            "sealgate: closed (\"why\") caf\u{e9}\n"
        );
        assert_eq!(unescape_bytes("cut\\"), "cut", "a dangling escape");
    }
}
