//! Who is calling: certificate → [`ClientIdentity`], and the client registry.
//!
//! The identity is read from the verified client certificate exactly once
//! per connection ([`identity_from_cert`]); the registry says what that
//! identity may do and which Ed25519 keys are bound to it. This module never
//! trusts anything the client says about itself outside its certificate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use governor::{DefaultDirectRateLimiter, Quota};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::jsonrpc::Method;

/// Longest client id accepted.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// A client id: 1 to 64 characters from `[A-Za-z0-9._-]`, starting with a
/// letter or digit. Safe as a file name, a SPIFFE path segment and a log
/// field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// Accepts `s` only if it follows the naming rule above; never trims or
    /// rewrites it.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CLIENT_ID_LEN
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(ClientId(s.to_string()))
        } else {
            Err(IdentityError::BadClientId)
        }
    }

    /// The id as it appears in the certificate, registry and logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A trust domain: the host part of our SPIFFE IDs, e.g. `sealgate.local`.
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
        })
}

/// The SPIFFE ID of a client in a trust domain.
pub fn client_spiffe_id(trust_domain: &str, id: &ClientId) -> String {
    format!("spiffe://{trust_domain}/client/{id}")
}

/// The identity of a connected client, read once from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The `<id>` part of the SPIFFE ID: the registry key for this client.
    pub client_id: ClientId,
    /// `spiffe://<trust-domain>/client/<id>`: the audience of responses.
    pub spiffe_id: String,
    /// Certificate serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint: String,
}

/// Why a certificate (or a client id in a file) names no valid client: on
/// the request path every variant becomes `IDENTITY_INVALID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A client id given to [`ClientId::parse`] (registry, CLI) is empty,
    /// longer than [`MAX_CLIENT_ID_LEN`], starts with `.`, `_` or `-`, or
    /// holds a character outside `[A-Za-z0-9._-]`.
    #[error("client id must be 1-{MAX_CLIENT_ID_LEN} characters of [A-Za-z0-9._-], starting with a letter or digit")]
    BadClientId,
    /// The DER is not an X.509 certificate, or its SAN or EKU extension is
    /// malformed; also used when the TLS layer handed over no certificate.
    #[error("the client certificate cannot be parsed")]
    Unparseable,
    /// The certificate has no URI SAN, or more than one: the identity
    /// would be ambiguous.
    #[error("the client certificate must carry exactly one URI SAN")]
    UriSanCount,
    /// The one URI SAN is not `spiffe://<our trust domain>/client/<id>`
    /// with a valid id (another trust domain, a workload path, a bad id).
    #[error("the client certificate's URI SAN is not spiffe://<trust-domain>/client/<id> of this trust domain")]
    NotOurSpiffeId,
    /// The certificate has no extended key usage, or one without
    /// clientAuth (a server certificate presented as a client's).
    #[error("the client certificate lacks the clientAuth extended key usage")]
    NoClientAuth,
}

/// Reads the [`ClientIdentity`] out of a verified client certificate (DER).
/// The chain, validity and revocation were checked by the TLS layer; this
/// checks the naming rules: exactly one URI SAN, of the form
/// `spiffe://<trust_domain>/client/<id>`, and EKU clientAuth present.
pub fn identity_from_cert(der: &[u8], trust_domain: &str) -> Result<ClientIdentity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unparseable)?;
    let eku = cert
        .extended_key_usage()
        .map_err(|_| IdentityError::Unparseable)?
        .ok_or(IdentityError::NoClientAuth)?;
    if !eku.value.client_auth {
        return Err(IdentityError::NoClientAuth);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparseable)?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(IdentityError::UriSanCount);
    };
    let prefix = format!("spiffe://{trust_domain}/client/");
    let id = uri
        .strip_prefix(&prefix)
        .ok_or(IdentityError::NotOurSpiffeId)?;
    let client_id = ClientId::parse(id).map_err(|_| IdentityError::NotOurSpiffeId)?;
    Ok(ClientIdentity {
        spiffe_id: (*uri).to_string(),
        client_id,
        serial: hex::encode(cert.raw_serial()),
        fingerprint: hex::encode(Sha256::digest(der)),
    })
}

/// The key id sealgate derives for an Ed25519 public key: `ed25519:` and the
/// first 16 bytes of SHA-256 of the raw key, in hex. Stable and unique.
pub fn key_id_for(key: &VerifyingKey) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", hex::encode(&d[..16]))
}

/// Decodes a base64 (standard alphabet) raw 32-byte Ed25519 public key and
/// refuses weak (small-order) keys.
pub fn decode_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "public_key is not valid base64".to_string())?;
    let raw: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| "public_key must be 32 bytes (raw Ed25519)".to_string())?;
    let key = VerifyingKey::from_bytes(&raw)
        .map_err(|_| "public_key is not a valid Ed25519 point".to_string())?;
    if key.is_weak() {
        return Err("public_key is a weak (small-order) Ed25519 key".to_string());
    }
    Ok(key)
}

// ---------------------------------------------------------------------------
// Registry file format.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default, rename = "client")]
    clients: Vec<ClientFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    id: String,
    #[serde(default = "yes")]
    enabled: bool,
    methods: Vec<String>,
    tools: Vec<String>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
    #[serde(default, rename = "key")]
    keys: Vec<KeyFile>,
}

fn yes() -> bool {
    true
}

/// A per-identity rate limit (GCRA): a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Sustained rate, in requests per second; at least 1.
    pub per_second: u32,
    /// Most requests accepted back to back after a quiet spell; at least 1.
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    id: String,
    public_key: String,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

/// One signing key bound to a client, decoded once at load.
#[derive(Debug)]
pub struct BoundKey {
    /// The public key, already checked not to be weak (small-order).
    pub key: VerifyingKey,
    /// First instant the key may sign, in Unix milliseconds (inclusive);
    /// `None` for no lower bound.
    pub not_before_ms: Option<i64>,
    /// Last instant the key may sign, in Unix milliseconds (inclusive);
    /// `None` for no upper bound.
    pub not_after_ms: Option<i64>,
}

impl BoundKey {
    /// Whether `now_ms` (Unix milliseconds) lies inside the key's validity
    /// window, both ends inclusive.
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.not_before_ms.is_none_or(|nb| now_ms >= nb)
            && self.not_after_ms.is_none_or(|na| now_ms <= na)
    }
}

/// Which tools a client may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolPolicy {
    /// `tools = ["*"]`: every tool the backend offers.
    Any,
    /// Only these tools, by exposed name (the backend prefix included).
    Only(HashSet<String>),
}

impl ToolPolicy {
    /// Whether the client may call (and see) the tool with exposed name `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        match self {
            ToolPolicy::Any => true,
            ToolPolicy::Only(set) => set.contains(tool),
        }
    }
}

/// A registered client.
pub struct ClientEntry {
    /// The id its certificate must carry.
    pub id: ClientId,
    /// `false` refuses every request with `CLIENT_DISABLED` while keeping
    /// the entry (and its keys) on file.
    pub enabled: bool,
    /// The MCP methods it may call; any other is `METHOD_NOT_ALLOWED`.
    pub methods: HashSet<Method>,
    /// The tools it may call and see in `tools/list`.
    pub tools: ToolPolicy,
    /// Its signing keys by key id; a key id names one key across the whole
    /// registry.
    pub keys: HashMap<String, BoundKey>,
    /// Its own GCRA limiter, so one client's flood never spends another's quota.
    pub limiter: DefaultDirectRateLimiter,
}

impl fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEntry")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The client registry: every client the gateway knows, by id.
#[derive(Debug, Default)]
pub struct Registry {
    clients: HashMap<ClientId, Arc<ClientEntry>>,
}

/// An error in the registry file, naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RegistryError {
    /// The registry file, as given in the configuration.
    pub path: String,
    /// What is wrong, naming the client and field where it can.
    pub message: String,
}

impl Registry {
    /// The entry of the client `id`, `None` if it is not registered.
    pub fn get(&self, id: &ClientId) -> Option<&Arc<ClientEntry>> {
        self.clients.get(id)
    }

    /// How many clients are registered (disabled ones included).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered: such a gateway refuses everyone.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Loads and validates a registry file.
    pub fn load(path: &Path, default_rate: RateLimitFile) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Registry::parse(&text, default_rate).map_err(|message| RegistryError {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates registry TOML. Errors name the client and field.
    pub fn parse(text: &str, default_rate: RateLimitFile) -> Result<Registry, String> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut clients = HashMap::new();
        let mut all_key_ids = HashSet::new();
        for c in file.clients {
            let id = ClientId::parse(&c.id).map_err(|e| format!("client id {:?}: {e}", c.id))?;
            let ctx = |field: &str| format!("client {id:?} field {field}");
            let mut methods = HashSet::new();
            for m in &c.methods {
                let method = Method::parse(m)
                    .ok_or_else(|| format!("{}: unknown method {m:?}", ctx("methods")))?;
                methods.insert(method);
            }
            let tools = if c.tools.iter().any(|t| t == "*") {
                if c.tools.len() != 1 {
                    return Err(format!("{}: \"*\" must be the only entry", ctx("tools")));
                }
                ToolPolicy::Any
            } else {
                for t in &c.tools {
                    if !crate::jsonrpc::valid_tool_name(t) {
                        return Err(format!("{}: invalid tool name {t:?}", ctx("tools")));
                    }
                }
                ToolPolicy::Only(c.tools.iter().cloned().collect())
            };
            let mut keys = HashMap::new();
            for k in c.keys {
                if k.id.is_empty() || k.id.len() > crate::envelope::MAX_KEY_ID_LEN {
                    return Err(format!("{}: key id must be 1-128 bytes", ctx("key.id")));
                }
                if !all_key_ids.insert(k.id.clone()) {
                    return Err(format!(
                        "{}: key id {:?} is registered twice",
                        ctx("key.id"),
                        k.id
                    ));
                }
                let key = decode_public_key(&k.public_key)
                    .map_err(|e| format!("{} ({}): {e}", ctx("key.public_key"), k.id))?;
                let instant = |value: Option<&str>, field: &str| {
                    value
                        .map(parse_rfc3339_ms)
                        .transpose()
                        .map_err(|e| format!("{}: {e}", ctx(field)))
                };
                let not_before_ms = instant(k.not_before.as_deref(), "key.not_before")?;
                let not_after_ms = instant(k.not_after.as_deref(), "key.not_after")?;
                keys.insert(
                    k.id,
                    BoundKey {
                        key,
                        not_before_ms,
                        not_after_ms,
                    },
                );
            }
            let rate = c.rate_limit.unwrap_or(default_rate);
            let limiter = DefaultDirectRateLimiter::direct(
                quota(rate).map_err(|e| format!("{}: {e}", ctx("rate_limit")))?,
            );
            let entry = ClientEntry {
                id: id.clone(),
                enabled: c.enabled,
                methods,
                tools,
                keys,
                limiter,
            };
            if clients.insert(id.clone(), Arc::new(entry)).is_some() {
                return Err(format!("client {id:?} is listed twice"));
            }
        }
        Ok(Registry { clients })
    }
}

/// Builds a GCRA quota, refusing zero rates.
pub fn quota(rate: RateLimitFile) -> Result<Quota, String> {
    let per_second =
        std::num::NonZeroU32::new(rate.per_second).ok_or("per_second must be at least 1")?;
    let burst = std::num::NonZeroU32::new(rate.burst).ok_or("burst must be at least 1")?;
    Ok(Quota::per_second(per_second).allow_burst(burst))
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {e}"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests;
