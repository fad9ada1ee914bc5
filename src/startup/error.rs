//! Why the gateway could not start: [`StartError`], naming the file, field
//! or reference and what is wrong, never a secret value.

use std::io;

use crate::secrets::SecretError;

/// Why the gateway could not start. Names the file, field or reference
/// and what is wrong; never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The client registry is unreadable or invalid.
    #[error(transparent)]
    Registry(#[from] crate::identity::RegistryError),
    /// A certificate, key or CRL could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A secret reference could not be resolved, or the signing key secret
    /// is not a usable key; the message names the reference, not the value.
    #[error("{0}")]
    Secrets(String),
    /// A backend could not be started, listed or pinned.
    #[error("{0}")]
    Backend(String),
    /// A file the config names is missing, unreadable or unusable.
    #[error("field {field}: {message}")]
    File {
        /// The config field, e.g. `tls.key`.
        field: String,
        /// What is wrong, naming the file.
        message: String,
    },
    /// The shared state store (`[state]`) is misconfigured or cannot be
    /// reached (with `on_failure = "fail_closed"`).
    #[error("{0}")]
    State(String),
    /// The audit sink could not be opened.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The configured audit file.
        path: String,
        /// Why it could not be opened.
        source: io::Error,
    },
}

impl From<SecretError> for StartError {
    fn from(e: SecretError) -> Self {
        StartError::Secrets(e.to_string())
    }
}
