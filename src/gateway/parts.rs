//! The [`Gateway`]: everything a request needs, shared by all connections,
//! with its response-signing key and the limits of the request path. Its
//! methods live with what they own: the stages in `gateway.rs`, a request's
//! audit record in `record.rs`, refusals in `refusals.rs`, the answer in
//! `response.rs`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;

use super::clock::Clock;
use crate::audit::AuditLog;
use crate::backend::router::Router;
use crate::envelope;
use crate::error::Reason;
use crate::identity::Registry;
use crate::jsonrpc;
use crate::policy::{Anomaly, SanitizePolicy};
use crate::replay::ReplayStore;
use crate::summary::Summary;

/// The gateway's response-signing key and its id.
pub struct ResponseSigner {
    /// The Ed25519 private key; zeroized on drop, never logged.
    pub key: SigningKey,
    /// The same key in aws-lc-rs, which signs each response.
    pub fast: envelope::ed25519::FastSigner,
    /// Its key id (`ed25519:` + hex of the first 16 bytes of the SHA-256 of
    /// the public key), as clients find it in their profiles.
    pub key_id: String,
}

/// Limits the request path enforces.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// How far an envelope's timestamp may be from now, either side, in ms;
    /// also how long a nonce is remembered.
    pub clock_skew_ms: i64,
    /// Largest encoded request accepted, checked before any cryptography.
    pub max_envelope_bytes: usize,
    /// Limits applied while parsing the JSON-RPC payload.
    pub json: jsonrpc::Limits,
}

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    /// What request envelopes must carry as audience.
    pub audience: String,
    /// Swapped atomically on reload; the hot path only loads a pointer.
    pub registry: ArcSwap<Registry>,
    /// Serials (lowercase hex) on the configured CRLs: connections opened
    /// before a revocation was loaded are refused per request.
    pub revoked: ArcSwap<std::collections::HashSet<String>>,
    /// Nonces seen per client within the skew window; takes only verified
    /// envelopes.
    pub replay: Box<dyn ReplayStore>,
    /// Swapped when the signing key secret is refreshed.
    pub signer: ArcSwap<ResponseSigner>,
    /// Maps every exposed tool to its backend and pinned definition.
    pub router: Arc<Router>,
    /// Argument rules applied before the schema and the backend.
    pub sanitize: SanitizePolicy,
    /// Checks on what backends answer (stage 9): shape, outputSchema,
    /// size, secret patterns, invisible characters.
    pub results: crate::policy::ResultPolicy,
    /// The URI schemes the primary backend offers, for `resources/read`.
    pub resource_schemes: crate::backend::resources::ResourceSchemes,
    /// Resolved secret values (backend credentials, the signing key);
    /// refreshed by [`crate::reload`], never logged.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// Where the response-signing key comes from, to reload it on refresh.
    pub signing_key_ref: crate::secrets::SecretRef,
    /// Where every request's record goes.
    pub audit: Arc<AuditLog>,
    /// `[audit.witness]`: whether calls are refused because no quorum of
    /// witnesses cosigns the audit log (`fail_closed`); `None`: no
    /// witnesses configured.
    pub witnessing: Option<Arc<crate::witnessing::WitnessGate>>,
    /// The time source for freshness and key validity (a fixed clock in
    /// tests).
    pub clock: Arc<dyn Clock>,
    /// Size, skew and depth limits of the request path.
    pub limits: RequestLimits,
    /// The anomaly detectors and their per-identity state (stage 7, and
    /// blocks and throttles at stage 2); kept across registry reloads.
    pub anomaly: Arc<Anomaly>,
    /// Admission refusals per (identity or source, reason): the first is
    /// recorded in full, the rest counted into one summary record per
    /// interval ([`Gateway::report_refusals`]), so no flood fills a disk.
    pub refusals: Summary<(String, Reason)>,
    /// How early an expiring client certificate is warned about, in ms.
    pub expiry_horizon_ms: i64,
    /// Client certificates already warned about.
    pub expiring_seen: crate::expiry::SeenCertificates,
    /// Counters and latency histograms of the request path.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The store several replicas share replay, rate and blocks in
    /// (`[state] kind = "redis"`); `None`: this process's own state only.
    pub state: Option<Arc<crate::state::SharedState>>,
}
