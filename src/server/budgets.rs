//! The transport's budgets and what a new connection needs: the handshake
//! slots held from accept to the end of the handshake, the connection slots
//! held from then to the close, overall, per source and per identity, in
//! one [`Admission`] shared by the accept loop and every handshake task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::TransportConfig;
use crate::gateway::Gateway;
use crate::identity::ClientId;
use crate::peer::AcceptStats;
use crate::summary::{Seen, Summary};

use super::refusal::Refusal;
use super::source::Source;
use crate::slots::Slots;

/// The accept loop's budgets and what a new connection needs, shared with
/// every handshake task.
pub(super) struct Admission {
    pub(super) tls: Arc<arc_swap::ArcSwap<crate::tls::ServerTls>>,
    pub(super) transport: TransportConfig,
    pub(super) trust_domain: Arc<str>,
    /// For each identity's connection cap in its registry entry.
    pub(super) gateway: Arc<Gateway>,
    pub(super) stats: Arc<AcceptStats>,
    pub(super) summary: Arc<Summary<Refusal>>,
    /// `max_handshakes`: held from accept to the end of the handshake.
    pub(super) handshakes: Arc<Semaphore>,
    /// `max_handshakes_per_source`, likewise.
    pub(super) handshakes_per_source: Arc<Slots<Source>>,
    /// `max_connections`: held from the end of the handshake to the close.
    pub(super) connections: Arc<Semaphore>,
    /// Each identity's connection cap, likewise.
    pub(super) connections_per_identity: Arc<Slots<ClientId, crate::peer::ReadHold>>,
    /// The refusals at accept being answered with an alert, per source.
    pub(super) alerts_per_source: Arc<Slots<Source>>,
}

impl Admission {
    /// Counts a refusal, and logs it in full when it is the first of its
    /// kind from its source in the summary interval.
    pub(super) fn refuse(&self, counter: &AtomicU64, refusal: Refusal) -> bool {
        counter.fetch_add(1, Ordering::Relaxed);
        self.summary.note(refusal) == Seen::First
    }

    /// The open connections `client` may hold: its registry entry's
    /// `max_connections`, else `max_connections_per_identity`.
    pub(super) fn identity_cap(&self, client: &ClientId) -> usize {
        self.gateway
            .registry
            .load()
            .get(client)
            .and_then(|entry| entry.max_connections)
            .unwrap_or(self.transport.max_connections_per_identity)
    }
}
