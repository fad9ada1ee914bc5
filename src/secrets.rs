//! Secrets: references in the config, values from a secrets source.
//!
//! The config never holds a secret value, only a [`SecretRef`]:
//! `openbao://<kv-v2 path>#<field>` (or `vault://`), `file:<path>` (as
//! Kubernetes or systemd credentials mount them), or `env:<NAME>`. Every
//! reference is resolved at startup (a missing one stops the gateway with a
//! message naming the reference and the cause), refreshed on an interval and
//! on reload, and held as a [`SecretString`] that is redacted in Debug and
//! zeroized on drop. This module never puts a value into an error, a log
//! line or a panic.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// A reference to a secret, as written in the config.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// OpenBao/Vault KV v2: the API path after `/v1/` (e.g.
    /// `secret/data/ep`) and the field in the secret's data.
    OpenBao {
        /// The KV v2 API path after `/v1/`: relative, no empty or `..`
        /// segment.
        path: String,
        /// The key within the secret's data whose string value is used.
        field: String,
    },
    /// A file's whole content (one trailing newline removed).
    File(PathBuf),
    /// An environment variable of the gateway process.
    Env(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::OpenBao { path, field } => write!(f, "openbao://{path}#{field}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Env(n) => write!(f, "env:{n}"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl SecretRef {
    /// Parses a reference. Anything else is refused, so a literal secret
    /// value can never be mistaken for a reference.
    pub fn parse(s: &str) -> Result<SecretRef, String> {
        let bad_path = |p: &str| {
            p.is_empty()
                || p.starts_with('/')
                || p.split('/').any(|seg| seg.is_empty() || seg == "..")
        };
        if let Some(rest) = s
            .strip_prefix("openbao://")
            .or_else(|| s.strip_prefix("vault://"))
        {
            let (path, field) = rest
                .split_once('#')
                .ok_or("an OpenBao reference is openbao://<kv-v2 path>#<field>, e.g. openbao://secret/data/ep#api_key")?;
            if bad_path(path) || field.is_empty() {
                return Err("an OpenBao reference is openbao://<kv-v2 path>#<field>, e.g. openbao://secret/data/ep#api_key".into());
            }
            return Ok(SecretRef::OpenBao {
                path: path.to_string(),
                field: field.to_string(),
            });
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file: needs a path".into());
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err("env: needs a variable name of [A-Za-z0-9_]".into());
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        Err("not a secret reference: use openbao://<path>#<field>, file:<path> or env:<NAME> (literal secret values are not allowed in the config)".into())
    }

    /// Resolves relative file paths against the config directory.
    pub fn resolve_relative(&mut self, base: &Path) {
        if let SecretRef::File(p) = self {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The error names the problem, never the string (it may be a secret).
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a secret could not be resolved. Names the reference, never a value.
#[derive(Debug, thiserror::Error)]
#[error("secret {reference}: {reason}")]
pub struct SecretError {
    /// The reference as written in the config (`env:NAME`, …): safe to show.
    pub reference: String,
    /// What went wrong; never holds the secret's value.
    pub reason: String,
}

fn err(r: &SecretRef, reason: impl Into<String>) -> SecretError {
    SecretError {
        reference: r.to_string(),
        reason: reason.into(),
    }
}

/// OpenBao/Vault connection settings (`[secrets.openbao]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoConfig {
    /// e.g. `https://bao.internal:8200`.
    pub address: String,
    /// CA certificate for the OpenBao server (PEM); required for https.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// How the gateway logs in; its credentials are references, not values.
    pub auth: OpenBaoAuth,
    /// Namespace header, for Vault Enterprise / OpenBao namespaces.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// How the gateway logs in to OpenBao. The credentials themselves are
/// references too (file or env), never literals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "method", rename_all = "lowercase")]
pub enum OpenBaoAuth {
    /// A ready-made token, checked with `lookup-self` at login.
    Token {
        /// Where the token is read from (a `file:` or `env:` reference).
        token: SecretRef,
    },
    /// An AppRole login that yields a fresh token.
    Approle {
        /// Where the role id is read from (a `file:` or `env:` reference).
        role_id: SecretRef,
        /// Where the secret id is read from (a `file:` or `env:` reference).
        secret_id: SecretRef,
        /// The AppRole auth mount, `approle` unless configured otherwise.
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// A logged-in OpenBao client with a renewable token.
pub struct OpenBao {
    http: reqwest::Client,
    address: String,
    namespace: Option<String>,
    auth: OpenBaoAuth,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: SecretString,
    renewable: bool,
    /// When to renew: two thirds into the lease; `None` for tokens that do not expire.
    renew_at: Option<Instant>,
}

#[derive(Deserialize)]
struct AuthBody {
    auth: AuthInfo,
}

#[derive(Deserialize)]
struct AuthInfo {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LookupBody {
    data: LookupData,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct KvBody {
    data: KvData,
}

#[derive(Deserialize)]
struct KvData {
    data: HashMap<String, serde_json::Value>,
}

fn renew_at(ttl: u64) -> Option<Instant> {
    // A huge TTL from the server must not overflow the clock: treat as never.
    (ttl > 0)
        .then(|| Instant::now().checked_add(Duration::from_secs(ttl.saturating_mul(2) / 3)))
        .flatten()
}

impl OpenBao {
    /// A client for `config` that has not logged in yet: https with the
    /// configured CA, or plain http on loopback only; never follows redirects.
    pub fn new(config: &OpenBaoConfig) -> Result<OpenBao, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY / ALL_PROXY must not reroute secrets traffic.
            .no_proxy();
        if crate::tls::is_https(&config.address) {
            let ca = config
                .ca
                .as_ref()
                .ok_or("secrets.openbao.ca is required for an https address")?;
            builder = builder.tls_backend_preconfigured(
                crate::tls::backend_client_config(ca).map_err(|e| e.to_string())?,
            );
        } else if !crate::tls::transport_allowed(&config.address) {
            return Err(
                "secrets.openbao.address must be https:// (plain http only on loopback)".into(),
            );
        }
        Ok(OpenBao {
            http: builder.build().map_err(|e| format!("HTTP client: {e}"))?,
            address: config.address.trim_end_matches('/').to_string(),
            namespace: config.namespace.clone(),
            auth: config.auth.clone(),
            token: Mutex::new(None),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}/v1/{path}", self.address));
        if let Some(ns) = &self.namespace {
            rb = rb.header("X-Vault-Namespace", ns);
        }
        rb
    }

    /// A valid token: logs in, renews or re-logs in as needed.
    async fn token(
        &self,
        local: &(dyn Fn(&SecretRef) -> Result<SecretString, SecretError> + Sync),
    ) -> Result<SecretString, String> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            match t.renew_at {
                Some(at) if Instant::now() >= at => {
                    if t.renewable {
                        match self.renew(&t.value).await {
                            Ok(next) => *guard = Some(next),
                            Err(e) => {
                                tracing::warn!(error = %e, "OpenBao token renewal failed; logging in again");
                                *guard = None;
                            }
                        }
                    } else {
                        *guard = None;
                    }
                }
                _ => {}
            }
        }
        if guard.is_none() {
            *guard = Some(self.login(local).await?);
        }
        Ok(guard
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_else(|| SecretString::from(String::new())))
    }

    async fn login(
        &self,
        local: &(dyn Fn(&SecretRef) -> Result<SecretString, SecretError> + Sync),
    ) -> Result<Token, String> {
        match &self.auth {
            OpenBaoAuth::Token { token } => {
                let value = local(token).map_err(|e| e.to_string())?;
                let body: LookupBody = auth_call(
                    self.request(reqwest::Method::GET, "auth/token/lookup-self")
                        .header("X-Vault-Token", value.expose_secret()),
                    |status| format!("OpenBao refused the token (HTTP {status})"),
                    "OpenBao token lookup: unexpected answer",
                )
                .await?;
                Ok(Token {
                    value,
                    renewable: body.data.renewable,
                    renew_at: renew_at(body.data.ttl),
                })
            }
            OpenBaoAuth::Approle {
                role_id,
                secret_id,
                mount,
            } => {
                let role_id = local(role_id).map_err(|e| e.to_string())?;
                let secret_id = local(secret_id).map_err(|e| e.to_string())?;
                let body = serde_json::json!({"role_id": role_id.expose_secret(), "secret_id": secret_id.expose_secret()});
                let body: AuthBody = auth_call(
                    self.request(reqwest::Method::POST, &format!("auth/{mount}/login"))
                        .json(&body),
                    |status| format!("OpenBao AppRole login refused (HTTP {status})"),
                    "OpenBao AppRole login: unexpected answer",
                )
                .await?;
                Ok(Token {
                    value: SecretString::from(body.auth.client_token),
                    renewable: body.auth.renewable,
                    renew_at: renew_at(body.auth.lease_duration),
                })
            }
        }
    }

    async fn renew(&self, token: &SecretString) -> Result<Token, String> {
        let body: AuthBody = auth_call(
            self.request(reqwest::Method::POST, "auth/token/renew-self")
                .header("X-Vault-Token", token.expose_secret())
                .json(&serde_json::json!({})),
            |status| format!("HTTP {status}"),
            "unexpected answer",
        )
        .await?;
        tracing::info!(ttl_secs = body.auth.lease_duration, "OpenBao token renewed");
        Ok(Token {
            value: token.clone(),
            renewable: body.auth.renewable,
            renew_at: renew_at(body.auth.lease_duration),
        })
    }

    /// Reads one field of a KV v2 secret.
    async fn read(
        &self,
        r: &SecretRef,
        path: &str,
        field: &str,
        local: &(dyn Fn(&SecretRef) -> Result<SecretString, SecretError> + Sync),
    ) -> Result<SecretString, SecretError> {
        let token = self.token(local).await.map_err(|e| err(r, e))?;
        let resp = self
            .request(reqwest::Method::GET, path)
            .header("X-Vault-Token", token.expose_secret())
            .send()
            .await
            .map_err(|e| err(r, format!("OpenBao unreachable: {}", without_url(&e))))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(err(
                r,
                "no secret at this path (is it a KV v2 path with /data/?)",
            ));
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            // The token may have been revoked: forget it so the next try logs in.
            *self.token.lock().await = None;
            return Err(err(r, "permission denied by OpenBao"));
        }
        if !status.is_success() {
            return Err(err(r, format!("OpenBao answered HTTP {status}")));
        }
        let body: KvBody = resp
            .json()
            .await
            .map_err(|_| err(r, "not a KV v2 secret"))?;
        let mut data = body.data.data;
        let found = match data.remove(field) {
            Some(serde_json::Value::String(s)) => Ok(SecretString::from(s)),
            Some(_) => Err(err(r, format!("field {field} is not a string"))),
            None => Err(err(r, format!("the secret has no field {field}"))),
        };
        // The secret's other fields are not ours to keep around.
        for v in data.values_mut() {
            if let serde_json::Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
        found
    }
}

/// Sends one token request (lookup, AppRole login, renewal) and parses its
/// JSON answer. The caller words the refusal and the bad-answer errors for
/// its step; neither ever carries a credential or the answer's body.
async fn auth_call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    refused: impl FnOnce(reqwest::StatusCode) -> String,
    unexpected: &str,
) -> Result<T, String> {
    let resp = request
        .send()
        .await
        .map_err(|e| format!("OpenBao unreachable: {}", without_url(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(refused(status));
    }
    resp.json().await.map_err(|_| unexpected.to_string())
}

/// A short cause for a failed request: reqwest's own messages can carry the
/// URL, which is not secret but not needed either.
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// Resolves and caches every secret the gateway uses.
pub struct Secrets {
    openbao: Option<OpenBao>,
    values: ArcSwap<HashMap<SecretRef, SecretString>>,
    refs: Vec<SecretRef>,
}

impl Secrets {
    /// A store for `refs`, nothing resolved yet; refuses an `openbao://`
    /// reference when no OpenBao server is configured.
    pub fn new(openbao: Option<&OpenBaoConfig>, refs: Vec<SecretRef>) -> Result<Secrets, String> {
        let openbao = openbao.map(OpenBao::new).transpose()?;
        if openbao.is_none() {
            if let Some(r) = refs.iter().find(|r| matches!(r, SecretRef::OpenBao { .. })) {
                return Err(format!(
                    "secret {r}: no [secrets.openbao] section configures the OpenBao server"
                ));
            }
        }
        Ok(Secrets {
            openbao,
            values: ArcSwap::from_pointee(HashMap::new()),
            refs,
        })
    }

    fn resolve_local(r: &SecretRef) -> Result<SecretString, SecretError> {
        match r {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| err(r, "the environment variable is not set")),
            SecretRef::File(path) => {
                let bytes =
                    crate::keys::read_private(path).map_err(|e| err(r, short_key_error(&e)))?;
                let mut text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| err(r, "the file is not UTF-8"))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(SecretString::from(text))
            }
            SecretRef::OpenBao { .. } => Err(err(
                r,
                "OpenBao credentials must be file: or env: references",
            )),
        }
    }

    async fn resolve_one(&self, r: &SecretRef) -> Result<SecretString, SecretError> {
        match r {
            SecretRef::OpenBao { path, field } => {
                let bao = self
                    .openbao
                    .as_ref()
                    .ok_or_else(|| err(r, "OpenBao is not configured"))?;
                bao.read(r, path, field, &Self::resolve_local).await
            }
            _ => Self::resolve_local(r),
        }
    }

    /// Resolves every reference; fails on the first that cannot be resolved.
    pub async fn resolve_all(&self) -> Result<(), SecretError> {
        let mut next = HashMap::new();
        for r in &self.refs {
            let v = self.resolve_one(r).await?;
            next.insert(r.clone(), v);
        }
        self.values.store(Arc::new(next));
        Ok(())
    }

    /// Re-resolves every reference; a failure keeps the previous value of
    /// that reference (and is logged) so a blip never drops a credential.
    ///
    /// Returns the references (never values) that failed to refresh, for
    /// the audit trail.
    pub async fn refresh(&self) -> Vec<String> {
        let mut next: HashMap<SecretRef, SecretString> = (**self.values.load()).clone();
        let mut failed = Vec::new();
        for r in &self.refs {
            match self.resolve_one(r).await {
                Ok(v) => {
                    next.insert(r.clone(), v);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "secret refresh failed; keeping the previous value");
                    failed.push(r.to_string());
                }
            }
        }
        self.values.store(Arc::new(next));
        failed
    }

    /// The current value of a reference resolved at startup.
    pub fn get(&self, r: &SecretRef) -> Option<SecretString> {
        self.values.load().get(r).cloned()
    }
}

fn short_key_error(e: &crate::keys::KeyFileError) -> String {
    match e {
        crate::keys::KeyFileError::TooOpen { mode, .. } => {
            format!("the file is readable by group or others (mode {mode:o}); chmod 600 it")
        }
        crate::keys::KeyFileError::Read { source, .. } => format!("cannot read the file: {source}"),
        _ => "cannot read the file".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_literals_are_refused() {
        assert_eq!(
            SecretRef::parse("openbao://secret/data/ep#api_key"),
            Ok(SecretRef::OpenBao {
                path: "secret/data/ep".into(),
                field: "api_key".into()
            })
        );
        assert_eq!(
            SecretRef::parse("vault://kv/data/x#y").map(|r| r.to_string()),
            Ok("openbao://kv/data/x#y".into())
        );
        assert_eq!(
            SecretRef::parse("env:EP_API_KEY"),
            Ok(SecretRef::Env("EP_API_KEY".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/creds/token"),
            Ok(SecretRef::File("/run/creds/token".into()))
        );
        for literal in ["hunter2", "ep-key-a1b2c3d4e5f6"] {
            let e = SecretRef::parse(literal).expect_err(literal);
            assert!(!e.contains(literal), "error echoes the input: {e}");
            assert!(e.contains("literal secret values are not allowed"), "{e}");
        }
        for bad in [
            "openbao://secret/data/ep",
            "openbao://../x#y",
            "openbao:///abs#y",
            "openbao://a//b#c",
            "env:",
            "env:A-B",
            "file:",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn env_and_file_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        crate::keys::write_private(&file, b"s3cr3t-from-file\n", false).expect("write");
        // A unique variable name: tests run in parallel in one process.
        std::env::set_var("SEALGATE_TEST_SECRET_ENV_1", "s3cr3t-from-env");
        let refs = vec![
            SecretRef::File(file.clone()),
            SecretRef::Env("SEALGATE_TEST_SECRET_ENV_1".into()),
        ];
        let secrets = Secrets::new(None, refs.clone()).expect("secrets");
        secrets.resolve_all().await.expect("resolves");
        assert_eq!(
            secrets.get(&refs[0]).expect("file").expose_secret(),
            "s3cr3t-from-file"
        );
        assert_eq!(
            secrets.get(&refs[1]).expect("env").expose_secret(),
            "s3cr3t-from-env"
        );
        assert!(
            !format!("{:?}", secrets.get(&refs[0])).contains("s3cr3t"),
            "Debug is redacted"
        );
    }

    #[tokio::test]
    async fn missing_secrets_name_the_reference_not_a_value() {
        let missing = SecretRef::Env("SEALGATE_TEST_SURELY_UNSET_42".into());
        let secrets = Secrets::new(None, vec![missing]).expect("secrets");
        let e = secrets
            .resolve_all()
            .await
            .expect_err("missing")
            .to_string();
        assert_eq!(
            e,
            "secret env:SEALGATE_TEST_SURELY_UNSET_42: the environment variable is not set"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("open");
        crate::keys::write_public(&file, b"VALUE-XYZ", false).expect("write");
        let secrets = Secrets::new(None, vec![SecretRef::File(file)]).expect("secrets");
        let e = secrets
            .resolve_all()
            .await
            .expect_err("too open")
            .to_string();
        assert!(e.contains("mode 644") && !e.contains("VALUE-XYZ"), "{e}");

        let e = Secrets::new(
            None,
            vec![SecretRef::parse("openbao://secret/data/x#y").expect("ref")],
        )
        .err()
        .expect("no openbao config");
        assert!(e.contains("[secrets.openbao]"), "{e}");
    }
}
