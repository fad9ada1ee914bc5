//! Typed gateway configuration, loaded from TOML and validated once.
//!
//! This module owns the config file's schema, the defaults, the resolution
//! of relative paths (against the directory of the config file) and the
//! checks of values that parse but make no sense. Every error names the
//! file and the field. The config holds paths and references, never secret
//! values: it never resolves a secret, never reads the environment, and
//! never echoes a value that could be a secret in an error.
//!
//! One file per section of the config file, each with its tables, their
//! defaults and their checks (`backends.rs` for `[[backend]]`, `state.rs`
//! for `[state]`…); `file.rs` is the whole file and its top-level fields,
//! `load.rs` reads, resolves and validates it (calling each section's checks
//! in turn), `schema.rs` describes it as a JSON Schema. Sections never name
//! the whole [`Config`]: what a check needs from elsewhere in the file is
//! passed in. `[audit]` is defined beside the audit trail that reads it.

mod backends;
mod clients;
mod envelope;
mod expiry;
mod file;
mod load;
mod sandbox;
mod schema;
mod secrets;
mod signing;
mod state;
mod telemetry;
mod tls;
mod transport;

#[cfg(test)]
mod tests;

pub use backends::{BackendConfig, Pinning};
pub use clients::{EnrollmentConfig, RegistryConfig};
pub use envelope::{EnvelopeConfig, MAX_JSON_DEPTH};
pub use expiry::ExpiryConfig;
pub use file::Config;
pub use load::ConfigError;
pub use sandbox::{EgressSetting, SandboxMode, SandboxSection};
pub use schema::schema;
pub use secrets::{OpenBaoSection, SecretsConfig};
pub use signing::SigningConfig;
pub use state::{OnFailure, StateConfig, StateKind, StoreAddress};
pub use telemetry::{MetricsConfig, TracesConfig, MAX_CLIENT_LABELS};
pub use tls::TlsConfig;
pub use transport::TransportConfig;

/// `[audit]`: sinks, delivery and checkpoints; defined beside the audit
/// trail that reads it.
pub use crate::audit::AuditConfig;
