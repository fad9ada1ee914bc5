//! `[audit.witness]`: the witnesses that cosign the audit log's
//! checkpoints (c2sp.org/tlog-witness), how many must, and what the
//! gateway does while too few do (docs/OPERATIONS.md, "Witnessing
//! policy").
//!
//! Parsed and checked once with the rest of `[audit]`; it reads no file
//! and holds public material only (a witness's vkey, its TLS CA's path).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tlog::{SignatureType, VerifierKey};

/// Witnesses a gateway submits to, at most (each one is a POST per
/// checkpoint).
pub const MAX_WITNESSES: usize = 16;

/// `[audit.witness]`: the witnesses and the quorum policy.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Cosignatures a checkpoint needs to count as witnessed (default:
    /// every witness).
    #[serde(default)]
    pub quorum: Option<usize>,
    /// How long the latest checkpoints may stay without a quorum before
    /// `on_no_quorum` applies, in seconds (default 300).
    #[serde(default = "default_max_unwitnessed_secs")]
    pub max_unwitnessed_secs: u64,
    /// `alert` (default): an event, a metric and an error log, calls go on
    /// being served; `fail_closed`: calls are also refused with
    /// `AUDIT_UNWITNESSED` until a quorum cosigns again.
    #[serde(default)]
    pub on_no_quorum: OnNoQuorum,
    /// `[[audit.witness.peer]]`: every witness.
    #[serde(rename = "peer")]
    pub peers: Vec<WitnessPeer>,
}

/// What the gateway does while no quorum of witnesses cosigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnNoQuorum {
    /// Record `witness_quorum_lost`, raise the metric, log an error; go on
    /// serving.
    #[default]
    Alert,
    /// As `alert`, and refuse calls with `AUDIT_UNWITNESSED` until a quorum
    /// cosigns again: nothing is served that could be rewritten unseen.
    FailClosed,
}

/// `[[audit.witness.peer]]`: one witness.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessPeer {
    /// The witness's submission prefix (https): checkpoints are POSTed to
    /// `<url>/add-checkpoint`.
    pub url: String,
    /// The witness's public key, a cosignature/v1 vkey
    /// (`<name>+<hex id>+<base64>`); only cosignatures under it count.
    pub key: String,
    /// PEM of the CA that issued the witness's TLS certificate: the only
    /// root trusted for it.
    pub ca_file: PathBuf,
}

fn default_max_unwitnessed_secs() -> u64 {
    300
}

impl WitnessPeer {
    /// The witness's key, parsed (checked by [`WitnessConfig::validate`]).
    pub fn verifier(&self) -> Result<VerifierKey, String> {
        let key = VerifierKey::parse(self.key.trim()).map_err(|e| e.to_string())?;
        if key.kind() != SignatureType::CosignatureV1 {
            return Err("not a cosignature/v1 (type 0x04) witness key".into());
        }
        Ok(key)
    }
}

impl WitnessConfig {
    /// Cosignatures a checkpoint needs.
    pub fn quorum(&self) -> usize {
        self.quorum.unwrap_or(self.peers.len())
    }

    /// Makes each relative `ca_file` relative to `base`, the config file's
    /// folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in &mut self.peers {
            if p.ca_file.is_relative() {
                p.ca_file = base.join(&p.ca_file);
            }
        }
    }

    /// Checks values that parse but make no sense; the error names the
    /// field. `has_log`: `[audit] signing_key` is set (without it there is
    /// no log to witness).
    pub fn validate(&self, has_log: bool) -> Result<(), String> {
        if !has_log {
            return Err(
                "field audit.witness: needs audit.signing_key (the log and its checkpoints exist only with it)"
                    .into(),
            );
        }
        if self.peers.is_empty() || self.peers.len() > MAX_WITNESSES {
            return Err(format!(
                "field audit.witness.peer: 1 to {MAX_WITNESSES} witnesses"
            ));
        }
        if !(1..=self.peers.len()).contains(&self.quorum()) {
            return Err(format!(
                "field audit.witness.quorum: must be 1..={} (the witnesses configured)",
                self.peers.len()
            ));
        }
        if !(1..=604_800).contains(&self.max_unwitnessed_secs) {
            return Err("field audit.witness.max_unwitnessed_secs: must be 1..=604800".into());
        }
        let mut keys: Vec<VerifierKey> = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            let field = |f: &str| format!("field audit.witness.peer[{i}].{f}");
            let u = url::Url::parse(&p.url).map_err(|_| format!("{}: not a URL", field("url")))?;
            if u.scheme() != "https" {
                return Err(format!("{}: must be https", field("url")));
            }
            if !u.username().is_empty()
                || u.password().is_some()
                || u.query().is_some()
                || u.fragment().is_some()
            {
                return Err(format!(
                    "{}: no credentials, query or fragment in the URL",
                    field("url")
                ));
            }
            let key = p.verifier().map_err(|e| format!("{}: {e}", field("key")))?;
            // One witness counted twice would make a quorum of one.
            // A cosignature does not sign its key name: one public key
            // under two names is still one witness.
            if let Some(j) = keys.iter().position(|k| k.public_key() == key.public_key()) {
                return Err(format!(
                    "{}: the same witness key as audit.witness.peer[{j}].key",
                    field("key")
                ));
            }
            keys.push(key);
            if p.ca_file.as_os_str().is_empty() {
                return Err(format!("{}: required", field("ca_file")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{KeyName, SignerKey};

    fn vkey(name: &str) -> String {
        SignerKey::generate(
            KeyName::new(name).expect("name"),
            SignatureType::CosignatureV1,
        )
        .verifier()
        .to_string()
    }

    fn peer(url: &str, key: &str) -> String {
        format!("[[peer]]\nurl = \"{url}\"\nkey = \"{key}\"\nca_file = \"w.crt\"\n")
    }

    fn parse(text: &str) -> Result<WitnessConfig, String> {
        let c: WitnessConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate(true).map(|_| c)
    }

    #[test]
    fn defaults_are_every_witness_five_minutes_and_alert() {
        let c = parse(&format!(
            "{}{}",
            peer("https://w1.example/", &vkey("w1")),
            peer("https://w2.example/", &vkey("w2"))
        ))
        .expect("ok");
        assert_eq!(c.quorum(), 2);
        assert_eq!(c.max_unwitnessed_secs, 300);
        assert_eq!(c.on_no_quorum, OnNoQuorum::Alert);
        let mut c = c;
        c.resolve_paths(Path::new("/etc/sealgate"));
        assert_eq!(c.peers[0].ca_file, Path::new("/etc/sealgate/w.crt"));
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let one = peer("https://w1.example/", &vkey("w1"));
        let note_key =
            SignerKey::generate(KeyName::new("w").expect("name"), SignatureType::Ed25519)
                .verifier()
                .to_string();
        let same = vkey("w1");
        // The same public key under another name: one witness all the same.
        let alias = SignerKey::from_seed(
            KeyName::new("alias").expect("name"),
            SignatureType::CosignatureV1,
            &[9; 32],
        )
        .verifier()
        .to_string();
        let original = SignerKey::from_seed(
            KeyName::new("w9").expect("name"),
            SignatureType::CosignatureV1,
            &[9; 32],
        )
        .verifier()
        .to_string();
        let rows = [
            (
                format!(
                    "{}{}",
                    peer("https://w1.example/", &original),
                    peer("https://w2.example/", &alias)
                ),
                "audit.witness.peer[1].key: the same witness key as audit.witness.peer[0].key",
            ),
            ("peer = []".to_string(), "audit.witness.peer"),
            (format!("quorum = 2\n{one}"), "audit.witness.quorum"),
            (format!("quorum = 0\n{one}"), "audit.witness.quorum"),
            (
                format!("max_unwitnessed_secs = 0\n{one}"),
                "audit.witness.max_unwitnessed_secs",
            ),
            (
                peer("http://w1.example/", &vkey("w1")),
                "audit.witness.peer[0].url",
            ),
            (
                peer("https://u:p@w1.example/", &vkey("w1")),
                "audit.witness.peer[0].url",
            ),
            (
                peer("https://w1.example/", "w1+00000000+AAAA"),
                "audit.witness.peer[0].key",
            ),
            (
                peer("https://w1.example/", &note_key),
                "audit.witness.peer[0].key",
            ),
            (
                format!(
                    "{}{}",
                    peer("https://w1.example/", &same),
                    peer("https://w2.example/", &same)
                ),
                "audit.witness.peer[1].key",
            ),
        ];
        for (text, field) in rows {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(field), "{text}: {e}");
        }
        let c: WitnessConfig = toml::from_str(&one).expect("parses");
        let e = c.validate(false).expect_err("no log without a key");
        assert!(
            e.starts_with("field audit.witness: needs audit.signing_key"),
            "{e}"
        );
        assert!(parse(&format!("on_no_quorum = \"panic\"\n{one}")).is_err());
        assert!(parse(&format!("timeout = 1\n{one}")).is_err());
    }
}
