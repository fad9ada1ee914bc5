//! `[state]`: where replay, rate and block state lives: in this process,
//! or in a Redis-protocol store several replicas share (src/state/ uses
//! it); the store's URL is checked here and never echoed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// Where the state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// In this process only (one gateway): the default.
    #[default]
    Local,
    /// A Redis-protocol store (Redis 7, Valkey 8) shared by every replica.
    Redis,
}

/// What a replica does while the store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "StateOnFailure")]
pub enum OnFailure {
    /// Refuse calls (`STATE_UNAVAILABLE`) until the store answers again.
    #[default]
    FailClosed,
    /// Serve with this replica's own state (replay cache, limiter, blocks),
    /// said in the log, the audit trail and the metrics, until the store
    /// answers again.
    Local,
}

/// `[state]`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `local` (default) or `redis`.
    #[serde(default)]
    pub kind: StateKind,
    /// `redis://HOST:PORT/DB` or `rediss://HOST:PORT/DB` (TLS 1.3); no
    /// password in it (see `password`).
    #[serde(default)]
    pub url: Option<String>,
    /// A secret reference (`file:…`, `env:…`, `openbao://…#field`) to the
    /// store's password; never a literal.
    #[serde(default)]
    pub password: Option<String>,
    /// The CA of the store's certificate (PEM); required with `rediss://`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `fail_closed` (default) or `local`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The budget of one store round trip, in ms (default 50): past it the
    /// store counts as unreachable for this call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Prefix of every key sealgate writes (default `sealgate:`), so that
    /// several gateways (or other users) can share one store.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// The operator's word that the store keeps what it acknowledged across
    /// restarts (`appendonly yes` with `appendfsync always`): a store then
    /// found without an epoch is a new deployment, used at once. Default
    /// `false`: a replica that finds no epoch takes the store as emptied
    /// and refuses envelopes for one skew window (docs/OPERATIONS.md).
    #[serde(default)]
    pub persistent: bool,
}

fn default_timeout_ms() -> u64 {
    50
}

fn default_prefix() -> String {
    "sealgate:".into()
}

/// Where the store is, from a validated `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port (6379 by default).
    pub port: u16,
    /// The logical database.
    pub db: i64,
    /// `rediss://`: TLS 1.3 with `ca`.
    pub tls: bool,
    /// An ACL user name, if the URL names one.
    pub username: Option<String>,
}

impl StateConfig {
    /// Whether a shared store is configured.
    pub fn shared(&self) -> bool {
        self.kind == StateKind::Redis
    }

    /// Whether this process's own replay cache ever decides a call: without
    /// a shared store, or with one whose outages are served locally. With a
    /// shared store and `fail_closed`, the store holds every nonce and the
    /// local cap never refuses one.
    pub fn local_replay_decides(&self) -> bool {
        !self.shared() || self.on_failure == OnFailure::Local
    }

    /// The round-trip budget.
    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The password's secret reference, if any.
    pub fn password_ref(&self) -> Result<Option<SecretRef>, String> {
        self.password
            .as_deref()
            .map(|p| SecretRef::parse(p).map_err(|e| format!("field state.password: {e}")))
            .transpose()
    }

    /// Parses `url`; errors name the field and never echo the URL (it
    /// could hold a password by mistake).
    pub fn address(&self) -> Result<StoreAddress, String> {
        let raw = self
            .url
            .as_deref()
            .ok_or("field state.url: required with kind = \"redis\"")?;
        let url = url::Url::parse(raw).map_err(|_| {
            "field state.url: not a URL; expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
                .to_string()
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err("field state.url: the scheme must be redis:// or rediss://".into()),
        };
        if url.password().is_some() {
            return Err("field state.url: holds a password; give it as state.password, a secret reference (file:, env: or openbao://)".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("field state.url: names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=1_000_000).contains(d))
                .ok_or("field state.url: the path must be a database number, e.g. /0")?,
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err("field state.url: takes no query or fragment".into());
        }
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        Ok(StoreAddress {
            host,
            port: url.port().unwrap_or(6379),
            db,
            tls,
            username,
        })
    }

    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if !self.shared() {
            let set = [
                ("url", self.url.is_some()),
                ("password", self.password.is_some()),
                ("ca", self.ca.is_some()),
                ("persistent", self.persistent),
            ];
            if let Some((field, _)) = set.iter().find(|(_, s)| *s) {
                return Err(format!(
                    "field state.{field}: only with kind = \"redis\" (kind is \"local\")"
                ));
            }
            return Ok(());
        }
        let address = self.address()?;
        if address.tls && self.ca.is_none() {
            return Err(
                "field state.ca: required with rediss:// (the CA of the store's certificate)"
                    .into(),
            );
        }
        if !address.tls && self.ca.is_some() {
            return Err("field state.ca: only with rediss://".into());
        }
        if !address.tls && self.password.is_some() && !is_loopback(&address.host) {
            return Err("field state.url: a password is sent only over rediss:// (plain redis:// only on loopback)".into());
        }
        self.password_ref()?;
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err("field state.timeout_ms: must be 1..=10000".into());
        }
        let p = &self.key_prefix;
        if p.is_empty()
            || p.len() > 64
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b))
        {
            return Err("field state.key_prefix: 1-64 characters of [A-Za-z0-9:._-]".into());
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StateConfig, String> {
        let c: StateConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn local_is_the_default_and_takes_no_store_fields() {
        let c = parse("").expect("empty");
        assert_eq!(c.kind, StateKind::Local);
        assert_eq!(c.on_failure, OnFailure::FailClosed);
        assert_eq!(c.timeout_ms, 50);
        assert_eq!(
            parse("url = \"redis://127.0.0.1\"").err().as_deref(),
            Some("field state.url: only with kind = \"redis\" (kind is \"local\")")
        );
    }

    #[test]
    fn a_redis_store_is_checked_field_by_field() {
        let c =
            parse("kind = \"redis\"\nurl = \"redis://127.0.0.1:6380/2\"\non_failure = \"local\"")
                .expect("valid");
        assert_eq!(
            c.address(),
            Ok(StoreAddress {
                host: "127.0.0.1".into(),
                port: 6380,
                db: 2,
                tls: false,
                username: None
            })
        );
        assert_eq!(c.on_failure, OnFailure::Local);
        for (text, want) in [
            (
                "kind = \"redis\"",
                "field state.url: required with kind = \"redis\"",
            ),
            (
                "kind = \"redis\"\nurl = \"http://h\"",
                "field state.url: the scheme must be redis:// or rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://u:hunter2@h\"",
                "field state.url: holds a password; give it as state.password",
            ),
            (
                "kind = \"redis\"\nurl = \"rediss://h\"",
                "field state.ca: required with rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\nca = \"ca.crt\"",
                "field state.ca: only with rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://db.example\"\npassword = \"file:p\"",
                "field state.url: a password is sent only over rediss://",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://127.0.0.1\"\npassword = \"hunter2\"",
                "field state.password: not a secret reference",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h/x\"",
                "field state.url: the path must be a database number",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\ntimeout_ms = 0",
                "field state.timeout_ms: must be 1..=10000",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://h\"\non_failure = \"open\"",
                "unknown variant `open`",
            ),
        ] {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{text}: echoes a secret: {e}");
        }
        let tls = parse("kind = \"redis\"\nurl = \"rediss://redis.internal\"\nca = \"ca.crt\"\npassword = \"file:redis.pass\"")
            .expect("valid");
        assert!(tls.address().expect("address").tls);
        assert_eq!(tls.address().expect("address").port, 6379);
    }
}
