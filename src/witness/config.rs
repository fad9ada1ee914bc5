//! The witness's config file (`sealgate audit witness --config FILE`):
//! where it listens, its TLS certificate, its cosigning key, where it keeps
//! its state, and the logs it witnesses (origin and public key each).
//!
//! Parsed and checked once: relative paths are resolved against the
//! config file's folder; every error names the file and the field. The
//! file holds only paths and public keys; the private key file is read
//! (0600 enforced) by [`super::Witness`], never echoed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tlog::{SignatureType, VerifierKey};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: SocketAddr,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    signing_key: PathBuf,
    state_dir: PathBuf,
    #[serde(default)]
    prefix: String,
    #[serde(default, rename = "log")]
    logs: Vec<LogEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogEntry {
    origin: String,
    key: String,
}

/// A checked witness config.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The HTTPS listening address.
    pub listen: SocketAddr,
    /// The server certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// The server certificate's private key (PEM, 0600).
    pub tls_key: PathBuf,
    /// The witness's cosignature/v1 key (a C2SP skey text file, 0600).
    pub signing_key: PathBuf,
    /// Where the last cosigned checkpoint of each log is kept.
    pub state_dir: PathBuf,
    /// The submission prefix's path: `POST <prefix>/add-checkpoint`.
    /// Empty, or starting with `/` and not ending with one.
    pub prefix: String,
    /// The logs witnessed: origin → the log's note key(s).
    pub logs: BTreeMap<String, Vec<VerifierKey>>,
}

/// Why a witness config was refused; names the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The config file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not match the schema (toml names the field).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// What toml reported.
        message: String,
    },
    /// A field's value makes no sense.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The config file.
        path: String,
        /// The field, e.g. `log[1].key`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl WitnessConfig {
    /// Reads and checks a witness config file.
    pub fn load(path: &Path) -> Result<WitnessConfig, WitnessConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WitnessConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            Refusal::Parse(message) => WitnessConfigError::Parse {
                path: shown.clone(),
                message,
            },
            Refusal::Invalid(field, message) => WitnessConfigError::Invalid {
                path: shown.clone(),
                field,
                message,
            },
        })
    }

    fn parse(text: &str, base: &Path) -> Result<WitnessConfig, Refusal> {
        let file: File = toml::from_str(text).map_err(|e| Refusal::Parse(e.to_string()))?;
        let invalid = |field: String, message: String| Refusal::Invalid(field, message);
        let prefix = file.prefix;
        if !prefix.is_empty()
            && (!prefix.starts_with('/')
                || prefix.ends_with('/')
                || prefix.contains(['?', '#', ' ']))
        {
            return Err(invalid(
                "prefix".into(),
                "a URL path starting with / and not ending with one (or empty)".into(),
            ));
        }
        if file.logs.is_empty() {
            return Err(invalid(
                "log".into(),
                "no [[log]]: a witness needs at least one log".into(),
            ));
        }
        let mut logs: BTreeMap<String, Vec<VerifierKey>> = BTreeMap::new();
        for (i, entry) in file.logs.iter().enumerate() {
            let field = |name: &str| format!("log[{i}].{name}");
            if entry.origin.is_empty() || entry.origin.contains(|c: char| c.is_control()) {
                return Err(invalid(
                    field("origin"),
                    "an origin is one non-empty line".into(),
                ));
            }
            let key = VerifierKey::parse(entry.key.trim())
                .map_err(|e| invalid(field("key"), format!("not a vkey: {e}")))?;
            if key.kind() != SignatureType::Ed25519 {
                return Err(invalid(
                    field("key"),
                    "not a note (Ed25519, type 0x01) key: a log signs checkpoints with one".into(),
                ));
            }
            let keys = logs.entry(entry.origin.clone()).or_default();
            if keys
                .iter()
                .any(|k| k.name() == key.name() && k.id() == key.id())
            {
                return Err(invalid(
                    field("key"),
                    format!("key {}+{} is listed twice", key.name(), key.id()),
                ));
            }
            keys.push(key);
        }
        Ok(WitnessConfig {
            listen: file.listen,
            tls_cert: base.join(file.tls_cert),
            tls_key: base.join(file.tls_key),
            signing_key: base.join(file.signing_key),
            state_dir: base.join(file.state_dir),
            prefix,
            logs,
        })
    }
}

#[derive(Debug)]
enum Refusal {
    Parse(String),
    Invalid(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    fn config(extra: &str) -> String {
        format!(
            "listen = \"127.0.0.1:8443\"\ntls_cert = \"w.crt\"\ntls_key = \"w.key\"\n\
             signing_key = \"w.skey\"\nstate_dir = \"state\"\n{extra}"
        )
    }

    fn refusal(text: &str) -> (String, String) {
        match WitnessConfig::parse(text, Path::new("/etc/w")) {
            Err(Refusal::Invalid(f, m)) => (f, m),
            Err(Refusal::Parse(m)) => ("(parse)".into(), m),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn a_good_config_resolves_paths_and_keys() {
        let c = WitnessConfig::parse(
            &config(&format!(
                "prefix = \"/w\"\n[[log]]\norigin = \"a.example/log\"\nkey = \"{KEY}\"\n\
                 [[log]]\norigin = \"b.example/log\"\nkey = \"{KEY}\"\n"
            )),
            Path::new("/etc/w"),
        )
        .expect("valid test input");
        assert_eq!(c.state_dir, Path::new("/etc/w/state"));
        assert_eq!(c.signing_key, Path::new("/etc/w/w.skey"));
        assert_eq!(c.prefix, "/w");
        assert_eq!(c.logs.len(), 2);
        assert_eq!(c.logs["a.example/log"][0].to_string(), KEY);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let log = format!("[[log]]\norigin = \"a\"\nkey = \"{KEY}\"\n");
        assert_eq!(refusal(&config("")).0, "log");
        assert_eq!(
            refusal(&config(&format!("prefix = \"w\"\n{log}"))).0,
            "prefix"
        );
        assert_eq!(
            refusal(&config(&format!("prefix = \"/w/\"\n{log}"))).0,
            "prefix"
        );
        assert_eq!(
            refusal(&config("[[log]]\norigin = \"a\"\nkey = \"nope\"\n")).0,
            "log[0].key"
        );
        assert_eq!(
            refusal(&config(&format!(
                "[[log]]\norigin = \"\"\nkey = \"{KEY}\"\n"
            )))
            .0,
            "log[0].origin"
        );
        assert_eq!(refusal(&config(&format!("{log}{log}"))).0, "log[1].key");
        let cosigner = crate::tlog::SignerKey::from_seed(
            crate::tlog::KeyName::new("w").expect("valid test input"),
            SignatureType::CosignatureV1,
            &[1; 32],
        );
        let cosigner = cosigner.verifier().to_string();
        let (field, message) = refusal(&config(&format!(
            "[[log]]\norigin = \"a\"\nkey = \"{cosigner}\"\n"
        )));
        assert_eq!(field, "log[0].key");
        assert!(message.contains("not a note"), "{message}");
        let (field, message) = refusal(&config(&format!("{log}colour = 1\n")));
        assert_eq!(field, "(parse)");
        assert!(message.contains("colour"), "{message}");
    }
}
