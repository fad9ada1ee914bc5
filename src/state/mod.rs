//! Shared state of several gateway replicas: replay, rate and blocks in a
//! Redis-protocol store (Redis 7, Valkey 8), so that N replicas behind a
//! load balancer behave as one gateway.
//!
//! # What is shared, and when
//! - **Stage 2** (before the signature) stays local: each replica's own
//!   GCRA limiter is a cheap first gate (one replica alone can never exceed
//!   the client's rate), and its own anomaly state refuses blocked
//!   identities without a round trip.
//! - **Stage 3** (after the signature held, so nobody can burn another
//!   client's nonces or rate): **one** round trip, a Lua script
//!   (`admit.lua`) that atomically reads the identity's block, checks the
//!   store's epoch (below), applies a throttle, takes one unit of the
//!   client's rate with the same GCRA as the in-process limiter, and
//!   records the nonce with `SET NX PX` for the replay hold
//!   ([`crate::replay::hold_ms`], on the store's clock) unless it was
//!   signed a hold before the identity's newest accepted envelope (its
//!   high-water, the shared floor); it says which refused. A tool dearer than one unit takes the rest at stage 5
//!   with one more round trip (`rate.lua`), once its name is known.
//! - Blocks and throttles the detectors impose are published to the store;
//!   local ones are re-checked against it every
//!   [`crate::policy::anomaly::RECHECK_MS`]; `admin unblock` deletes them in
//!   the store for every replica (`unblock.lua`). Source blocks are read
//!   before a handshake from a local mirror the reconnection task
//!   refreshes (`sources.rs`): no round trip per connection.
//!
//! # When the store is away
//! A call whose round trip fails or exceeds `timeout_ms` marks the store
//! unreachable; no call waits for it again until the reconnection task
//! (which probes every [`PROBE_INTERVAL`] and reconnects with back-off)
//! reaches it. Meanwhile `on_failure = "fail_closed"` refuses calls with
//! `STATE_UNAVAILABLE`; `"local"` serves them with this replica's own
//! replay cache, limiter and blocks, and says so (log, audit event
//! `state_store`, metric). On the way back, a replica that served locally
//! first writes every nonce it accepted meanwhile to the store
//! (`writeback.lua`, a chunk at a time, held on the store's clock; a chunk
//! not written goes back to the fallback) and republishes its blocks, and
//! only then turns back to the store.
//!
//! # No replay across a gap
//! Nonces written before a gap are still in the store after it, unless the
//! store lost them (a restart without persistence, a flush, a fail-over to
//! an empty replica). The store's **epoch** key (`common.lua`) detects that:
//! it is recreated by the first replica that finds it missing, and a
//! replica that knew the previous epoch (or any replica, unless `[state]
//! persistent = true`: a cold start cannot tell a new store from an
//! emptied one, `guard.rs`) marks it as starting *now*; every
//! replica then refuses envelopes stamped before `since + skew`
//! (`STATE_UNAVAILABLE`, with a retry hint), since they could have been
//! accepted before the loss. So, with `fail_closed`, no envelope accepted
//! before or during a gap is accepted again after it, on any replica. With
//! `local`, a replica in fallback checks nonces against what it saw itself
//! only (those it accepted on its own, and those the store accepted
//! through it within the window), and keeps enforcing the blocks it holds:
//! an envelope accepted by another replica can be replayed to it until it
//! is back (that is what `local` trades for availability). A store that
//! may evict keys is refused (`guard.rs`).
//!
//! This module never sees a payload; the password comes from the secrets
//! source and is never logged; errors carry a kind, never the reply.
//!
//! # Layout
//! - `store.rs`: the handle ([`SharedState`]), its mode and how it is
//!   built; `connection.rs`: how a connection is opened (address, TLS,
//!   password); `reconnect.rs`: the first connection, failures, the
//!   fallback and the reconnection task.
//! - `admit.rs`: stages 3 and 5 (`admit.lua`, `rate.lua`); `epoch.rs`:
//!   the store's epoch and the probe; `guard.rs`: what the store must
//!   guarantee.
//! - `blocks.rs`: blocks and throttles published, listed and read before a
//!   handshake; `unblock.rs`: an operator's unblock; `sources.rs` and
//!   `mirror.rs`: the mirror of the store's source blocks.
//! - `keys.rs`, `scripts.rs`, `error.rs`: the store's key names, its Lua
//!   scripts, and why a round trip failed.

mod admit;
mod blocks;
mod connection;
mod epoch;
mod error;
mod guard;
mod keys;
mod mirror;
mod reconnect;
mod scripts;
mod sources;
mod store;
mod unblock;

pub use crate::config::{OnFailure, StateConfig, StateKind, StoreAddress};

pub use admit::{unavailable, Verdict};
pub use error::{StoreError, FAILURE_KINDS};
pub use reconnect::PROBE_INTERVAL;
pub use store::{Mode, Now, SharedState, StateMetrics, StateSetup};
