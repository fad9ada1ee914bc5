//! sealgate: an mTLS-only gRPC gateway with Ed25519-signed envelopes in front
//! of MCP servers.
//!
//! # Layout
//! - [`server`] accepts TCP, runs the TLS 1.3 handshake, reads the peer
//!   identity once per connection and serves [`gateway`], which runs the
//!   request stages in order.
//! - Stages: [`identity`] (certificate → client, registry), admission (rate
//!   limit and size, in [`gateway`]), [`envelope`] (signed bytes, verify) and
//!   [`replay`], [`jsonrpc`] (strict MCP JSON-RPC), authorization (in
//!   [`gateway`]), [`backend`], sealing ([`envelope`]) and [`audit`].
//! - [`error`] is the one place a denial becomes a gRPC status with a stable
//!   reason. [`config`], [`tls`], [`keys`] load what the gateway runs on;
//!   [`ca`] issues certificates and keys; [`client`] is the Rust client SDK.
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

pub mod audit;
pub mod backend;
pub mod ca;
pub mod client;
pub mod config;
pub mod dev;
pub mod envelope;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod jsonrpc;
pub mod keys;
pub mod policy;
pub mod replay;
pub mod secrets;
pub mod server;
pub mod tls;

/// Code generated from proto/sealgate/v1/gateway.proto.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sealgate.v1");
}
