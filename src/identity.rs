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
use governor::DefaultDirectRateLimiter;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::jsonrpc::Method;
/// The rate-limit table of the registry and config (defined with the tier
/// policy it belongs to).
pub use crate::policy::{quota, RateLimitFile};
use crate::policy::{AllowedHours, Patterns, PolicyFields, ToolCost};
pub use enrolled::EnrolledKeys;
pub use timestamp::parse_rfc3339_ms;

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
    /// The certificate's notAfter in Unix milliseconds: a connection opened
    /// before it is refused per request once it has passed.
    pub not_after_ms: i64,
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
        not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
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
    /// The tier whose policy this entry starts from.
    #[serde(default)]
    tier: Option<String>,
    /// May call the admin service.
    #[serde(default)]
    admin: bool,
    // The policy fields (serde cannot flatten with deny_unknown_fields).
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    resources: Option<Vec<String>>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
    #[serde(default)]
    tool_cost: Option<std::collections::BTreeMap<String, u32>>,
    #[serde(default)]
    max_concurrent_calls: Option<u32>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    allowed_hours: Option<crate::policy::AllowedHoursSpec>,
    #[serde(default, rename = "key")]
    keys: Vec<KeyFile>,
}

impl ClientFile {
    fn policy(&self) -> PolicyFields {
        PolicyFields {
            methods: self.methods.clone(),
            tools: self.tools.clone(),
            resources: self.resources.clone(),
            rate_limit: self.rate_limit,
            tool_cost: self.tool_cost.clone(),
            max_concurrent_calls: self.max_concurrent_calls,
            max_connections: self.max_connections,
            allowed_hours: self.allowed_hours.clone(),
        }
    }
}

/// The methods of a client whose tier and entry name none.
pub const DEFAULT_TIER_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "notifications/initialized",
    "notifications/cancelled",
];

/// What a registry entry falls back on: the gateway's default rate and the
/// tiers defined in its config.
#[derive(Debug, Clone)]
pub struct RegistryDefaults {
    /// The rate limit of a client whose entry and tier name none.
    pub rate: RateLimitFile,
    /// `[tier.NAME]` tables of the gateway config, by name.
    pub tiers: std::collections::BTreeMap<String, PolicyFields>,
}

impl RegistryDefaults {
    /// Defaults with a rate and no tiers.
    pub fn rate_only(rate: RateLimitFile) -> Self {
        RegistryDefaults {
            rate,
            tiers: Default::default(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    id: String,
    public_key: String,
    #[serde(default)]
    not_before: Option<String>,
    /// Required, unless `never_expires` says otherwise on purpose.
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    never_expires: bool,
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

/// A registered client.
pub struct ClientEntry {
    /// The id its certificate must carry.
    pub id: ClientId,
    /// `false` refuses every request with `CLIENT_DISABLED` while keeping
    /// the entry (and its keys) on file.
    pub enabled: bool,
    /// The MCP methods it may call; any other is `METHOD_NOT_ALLOWED`.
    pub methods: HashSet<Method>,
    /// The tools it may call and see in `tools/list`, by exposed name (the
    /// backend prefix included) or glob.
    pub tools: Patterns,
    /// The resource URIs it may read, as globs; none unless configured.
    pub resources: Patterns,
    /// The tier it belongs to, if any (for messages and `admin blocks`).
    pub tier: Option<String>,
    /// Whether it may call the admin service.
    pub admin: bool,
    /// Its signing keys by key id; a key id names one key across the whole
    /// registry.
    pub keys: HashMap<String, BoundKey>,
    /// Its own GCRA limiter, so one client's flood never spends another's
    /// quota. Shared with the previous registry across a reload when the
    /// rate did not change, so a reload never refills a burst.
    pub limiter: Arc<DefaultDirectRateLimiter>,
    /// The rate `limiter` enforces.
    pub rate: RateLimitFile,
    /// What one call of each tool costs against `limiter`.
    pub tool_cost: ToolCost,
    /// Permits for calls in flight at once (`max_concurrent_calls`); `None`:
    /// unlimited. Kept across a reload like the limiter.
    pub concurrency: Option<Arc<tokio::sync::Semaphore>>,
    /// The `max_concurrent_calls` that `concurrency` enforces.
    pub concurrent_limit: Option<u32>,
    /// Open connections it may hold at once; `None`: the transport's
    /// `max_connections_per_identity`.
    pub max_connections: Option<usize>,
    /// When it may call; `None`: any time.
    pub allowed_hours: Option<AllowedHours>,
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
    /// Whether an enrolled-keys file was merged into it: a reload that
    /// finds that file gone is refused ([`Registry::load_merged`]).
    enrolled_seen: bool,
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

    /// Every registered client, in no particular order.
    pub fn clients(&self) -> impl Iterator<Item = &Arc<ClientEntry>> {
        self.clients.values()
    }

    /// How many clients are registered (disabled ones included).
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered: such a gateway refuses everyone.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Loads and validates a registry file. Clients also in `previous` keep
    /// their rate-limiter and concurrency state when those did not change.
    pub fn load(
        path: &Path,
        defaults: &RegistryDefaults,
        previous: Option<&Registry>,
    ) -> Result<Registry, RegistryError> {
        Registry::load_merged(path, None, defaults, previous)
    }

    /// [`Registry::load`], merging the keys of the enrolled-keys file at
    /// `enrolled` (written by the enrollment service; absent is empty).
    pub fn load_merged(
        path: &Path,
        enrolled: Option<&Path>,
        defaults: &RegistryDefaults,
        previous: Option<&Registry>,
    ) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let read = match enrolled {
            Some(p) => EnrolledKeys::read(p).map_err(|message| RegistryError {
                path: p.display().to_string(),
                message,
            })?,
            None => None,
        };
        // The caps on replaced keys live in that file: one that vanished
        // (deleted, moved, a backup restored without it, the setting
        // changed) must not silently bring those keys back. A restart
        // reads the file as it is (the enrollment service refuses to start
        // without a file it wrote, `crate::enroll::service`).
        if read.is_none() && previous.is_some_and(|r| r.enrolled_seen) {
            let where_ = enrolled.map_or_else(
                || "registry.enrolled_keys".to_string(),
                |p| p.display().to_string(),
            );
            return Err(RegistryError {
                path: where_,
                message: "the enrolled-keys file was there at the previous load and is gone: its caps on replaced keys would be lost; restore it (or, to drop every enrolled key and cap on purpose, create an empty file)".into(),
            });
        }
        let seen = read.is_some();
        let extra = read.unwrap_or_default();
        let mut registry =
            Registry::parse_merged(&text, &extra, defaults, previous).map_err(|message| {
                RegistryError {
                    path: path.display().to_string(),
                    message,
                }
            })?;
        registry.enrolled_seen = seen;
        Ok(registry)
    }

    /// Parses and validates registry TOML with a default rate and no tiers.
    /// Errors name the client and field.
    pub fn parse(text: &str, default_rate: RateLimitFile) -> Result<Registry, String> {
        Registry::parse_with(text, &RegistryDefaults::rate_only(default_rate), None)
    }

    /// Parses and validates registry TOML against `defaults` (the tiers),
    /// carrying limiter state over from `previous`. Errors name the client
    /// and field.
    pub fn parse_with(
        text: &str,
        defaults: &RegistryDefaults,
        previous: Option<&Registry>,
    ) -> Result<Registry, String> {
        Registry::parse_merged(text, &EnrolledKeys::default(), defaults, previous)
    }

    /// [`Registry::parse_with`], binding the enrolled keys of `extra` to
    /// the clients the text lists and applying its caps on replaced keys.
    pub fn parse_merged(
        text: &str,
        extra: &EnrolledKeys,
        defaults: &RegistryDefaults,
        previous: Option<&Registry>,
    ) -> Result<Registry, String> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let listed: HashSet<&str> = file.clients.iter().map(|c| c.id.as_str()).collect();
        for k in extra
            .keys
            .iter()
            .filter(|k| !listed.contains(k.client.as_str()))
        {
            tracing::warn!(
                client.id = k.client.as_str(),
                key.id = k.id.as_str(),
                "an enrolled key belongs to a client the registry does not list: ignored until it is added"
            );
        }
        let mut clients = HashMap::new();
        let mut all_key_ids = HashSet::new();
        for c in file.clients {
            let id = ClientId::parse(&c.id).map_err(|e| format!("client id {:?}: {e}", c.id))?;
            let ctx = |field: &str| format!("client {id:?} field {field}");
            let policy = match &c.tier {
                Some(t) => {
                    let tier = defaults.tiers.get(t).ok_or_else(|| {
                        format!("{}: no tier {t:?} in the gateway config", ctx("tier"))
                    })?;
                    c.policy().over(tier)
                }
                None => c.policy(),
            };
            // A tier that names no methods gives the MCP tool methods.
            let tier_methods: Vec<String> =
                DEFAULT_TIER_METHODS.iter().map(|m| m.to_string()).collect();
            let method_names = match (&policy.methods, &c.tier) {
                (Some(m), _) => m,
                (None, Some(_)) => &tier_methods,
                (None, None) => {
                    return Err(format!(
                        "{}: missing (and no tier names it)",
                        ctx("methods")
                    ))
                }
            };
            let mut methods = HashSet::new();
            for m in method_names {
                let method = Method::parse(m)
                    .ok_or_else(|| format!("{}: unknown method {m:?}", ctx("methods")))?;
                methods.insert(method);
            }
            let tool_names = policy
                .tools
                .as_ref()
                .ok_or_else(|| format!("{}: missing (and no tier names it)", ctx("tools")))?;
            if tool_names.iter().any(|t| t == "*") && tool_names.len() != 1 {
                return Err(format!("{}: \"*\" must be the only entry", ctx("tools")));
            }
            // A plain name must be a valid tool name; a glob is checked by
            // its compiler below.
            for t in tool_names {
                let glob = t.contains(['*', '?', '[']);
                if !glob && !crate::jsonrpc::valid_tool_name(t) {
                    return Err(format!("{}: invalid tool name {t:?}", ctx("tools")));
                }
            }
            let tools = Patterns::compile(tool_names, &ctx("tools"))?;
            let resources = match &policy.resources {
                Some(r) => Patterns::compile(r, &ctx("resources"))?,
                None => Patterns::none(),
            };
            let tool_cost = ToolCost::compile(policy.tool_cost.as_ref())
                .map_err(|e| format!("client {id:?} field {e}"))?;
            let rate = policy.rate_limit.unwrap_or(defaults.rate);
            if let Some((tool, cost)) = tool_cost.dearest().filter(|(_, c)| *c > rate.burst) {
                return Err(format!(
                    "{}: {tool} costs {cost}, more than the burst of {} (it could never be called)",
                    ctx("tool_cost"),
                    rate.burst
                ));
            }
            let allowed_hours = policy
                .allowed_hours
                .as_ref()
                .map(AllowedHours::compile)
                .transpose()
                .map_err(|e| format!("client {id:?} field {e}"))?;
            let max_connections = match policy.max_connections {
                Some(0) => return Err(format!("{}: must be at least 1", ctx("max_connections"))),
                other => other.map(|n| n as usize),
            };
            let mut keys = HashMap::new();
            let enrolled = extra
                .keys
                .iter()
                .filter(|k| k.client == id.as_str())
                .map(|k| KeyFile {
                    id: k.id.clone(),
                    public_key: k.public_key.clone(),
                    not_before: Some(k.not_before.clone()),
                    not_after: Some(k.not_after.clone()),
                    never_expires: false,
                });
            for k in c.keys.into_iter().chain(enrolled) {
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
                // A renewal caps the key it replaced.
                let cap = extra
                    .cap_of(id.as_str(), &k.id)
                    .map_err(|e| format!("client {id:?} enrolled keys: {e}"))?;
                let not_after_ms = match (not_after_ms, cap) {
                    (Some(a), Some(c)) => Some(a.min(c)),
                    (None, Some(c)) => Some(c),
                    (a, None) => a,
                };
                // No credential lives forever unless an operator says so,
                // and then every load says it again.
                match (k.not_after.is_some(), k.never_expires) {
                    (false, false) => {
                        return Err(format!(
                            "{} ({}): missing; a signing key must expire (or set never_expires = true, which is warned about at every load)",
                            ctx("key.not_after"),
                            k.id
                        ))
                    }
                    (true, true) => {
                        return Err(format!(
                            "{} ({}): not_after and never_expires = true contradict each other",
                            ctx("key.never_expires"),
                            k.id
                        ))
                    }
                    (false, true) if cap.is_none() => tracing::warn!(
                        client.id = %id,
                        key.id = k.id.as_str(),
                        "this signing key never expires (never_expires = true); give it a not_after"
                    ),
                    _ => {}
                }
                keys.insert(
                    k.id,
                    BoundKey {
                        key,
                        not_before_ms,
                        not_after_ms,
                    },
                );
            }
            let before = previous.and_then(|p| p.get(&id));
            let limiter = match before {
                Some(b) if b.rate == rate => b.limiter.clone(),
                _ => Arc::new(DefaultDirectRateLimiter::direct(
                    quota(rate).map_err(|e| format!("{}: {e}", ctx("rate_limit")))?,
                )),
            };
            let concurrency = match policy.max_concurrent_calls {
                None => None,
                Some(0) => {
                    return Err(format!(
                        "{}: must be at least 1",
                        ctx("max_concurrent_calls")
                    ))
                }
                Some(n) => Some(
                    before
                        .and_then(|b| b.concurrency.clone())
                        .filter(|_| before.and_then(|b| b.concurrent_limit) == Some(n))
                        .unwrap_or_else(|| Arc::new(tokio::sync::Semaphore::new(n as usize))),
                ),
            };
            let entry = ClientEntry {
                id: id.clone(),
                enabled: c.enabled,
                methods,
                tools,
                resources,
                tier: c.tier.clone(),
                admin: c.admin,
                keys,
                limiter,
                rate,
                tool_cost,
                concurrency,
                concurrent_limit: policy.max_concurrent_calls,
                max_connections,
                allowed_hours,
            };
            if clients.insert(id.clone(), Arc::new(entry)).is_some() {
                return Err(format!("client {id:?} is listed twice"));
            }
        }
        Ok(Registry {
            clients,
            enrolled_seen: false,
        })
    }
}

pub mod enrolled;
mod timestamp;

#[cfg(test)]
mod tests;
