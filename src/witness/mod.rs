//! The witness (c2sp.org/tlog-witness): a small HTTPS service that cosigns
//! a log's checkpoint only when it is consistent with the last one it
//! cosigned for that log, so a log that rewrites or forks its history is
//! caught by anyone holding an older cosigned checkpoint.
//!
//! It must never cosign a checkpoint smaller than, or inconsistent with,
//! the last it cosigned for the same origin, across restarts included, and
//! never answer before that new state is on disk.
//!
//! Layout, each file using only files listed before it: `protocol` (the
//! add-checkpoint request and response bytes, shared with the gateway's
//! client); `config` (the witness's config file); `state` (the last
//! cosigned checkpoint of each log, on disk); `cosigner` ([`Witness`]: the
//! checks and the cosignature); `server` (HTTPS and the spec's routes);
//! `client` (the gateway's HTTPS client of one witness).

pub mod client;
mod config;
mod cosigner;
pub mod protocol;
mod server;
mod state;

pub use config::{WitnessConfig, WitnessConfigError};
pub(crate) use cosigner::{decide, Decision};
pub use cosigner::{load_signer, Refused, Witness, WitnessError};
pub use server::{
    serve, tls_config, BODY_TIMEOUT, HANDSHAKE_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP, MAX_CONNECTION_AGE,
};
pub use state::{Cosigned, StateDir, StateError};
