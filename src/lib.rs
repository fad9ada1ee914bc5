//! sealgate: an mTLS-only gRPC gateway with Ed25519-signed envelopes in front
//! of MCP servers.
//!
//! # Layout
//! docs/ARCHITECTURE.md has the full map; in short, along the process
//! lifecycle and the request path:
//! - Start: [`config`] (typed TOML) → [`startup`] (secrets, registry, TLS,
//!   backends, signer → a ready [`gateway::Gateway`] in
//!   [`server::ServerParts`]); [`reload`] keeps it fresh (interval secret
//!   refresh, SIGHUP).
//! - Serve: [`server`] accepts TCP, runs the TLS 1.3 handshake ([`tls`]),
//!   reads the peer identity once per connection into [`peer::PeerInfo`]
//!   and serves [`gateway`], which runs the request stages in order:
//!   [`identity`] (certificate → client, registry), admission (rate limit
//!   and size), [`envelope`] (signed bytes, verify) and [`replay`] (or,
//!   for several replicas, [`state`]: replay, rate and blocks in a shared
//!   store, one round trip per call),
//!   [`jsonrpc`] (strict MCP JSON-RPC), authorization, [`policy`] (pins,
//!   schema, sanitizer), [`backend`], sealing ([`envelope`]) and [`audit`].
//! - [`error`] is the one place a stage error becomes a denial and a denial
//!   becomes a gRPC status with a stable reason.
//! - Backends: [`backend`] runs stdio children inside [`sandbox`] (their
//!   own account, limits, Landlock, seccomp, network), applied by the
//!   `sealgate sandbox-exec` helper before the backend runs.
//! - Tooling: [`ca`] issues certificates and keys, [`keys`] reads and writes
//!   key files, [`secrets`] resolves secret references, [`dev`] writes the
//!   dev setup, [`client`] is the Rust client SDK, [`receipt`] builds and
//!   verifies receipts (proof that a call's record is in the audit log).
//!
//! # Security model
//! Every connection is TLS 1.3 with a client certificate from our CA; every
//! request is an envelope signed with an Ed25519 key bound to that
//! certificate's identity, fresh, and never seen before; every response is
//! signed by the gateway and bound to its request. Nothing reaches a backend
//! before all of that held and the client's policy allowed the method and
//! tool. Audit records and logs never hold payloads, argument values, keys
//! or signatures.
//!
//! Errors on the hot path are small enums; cold-path errors (startup, CLI)
//! may carry strings and are boxed through `anyhow` in the binary only.

#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod audit;
pub mod backend;
pub mod bridge;
pub mod ca;
pub mod client;
pub mod config;
pub mod dev;
pub mod enroll;
pub mod envelope;
pub mod error;
pub mod expiry;
pub mod foreign;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod health;
pub mod identity;
pub mod jsonrpc;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod protocol_log;
pub mod receipt;
pub mod reload;
pub mod replay;
pub mod sandbox;
pub mod scrape;
pub mod secrets;
pub mod server;
pub mod slots;
pub mod startup;
pub mod state;
pub mod summary;
pub mod tlog;
pub mod tls;
pub mod traces;
pub mod witness;
pub mod witnessing;

/// Code generated from proto/sealgate/v1/ (gateway, admin, audit, enrollment).
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sealgate.v1");

    /// The encoded descriptors of the services on the gateway's port
    /// (gateway, admin and audit), for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sealgate_descriptor.bin"));
}
