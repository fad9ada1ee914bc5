//! Accepting connections: TCP, the TLS 1.3 handshake, the peer identity,
//! then HTTP/2 and the gateway service; and closing them again.
//!
//! Admission happens in steps, each with its own budget, so that what one
//! peer holds can never lock out the others:
//! 1. At accept, a connection takes one of `max_handshakes_per_source`
//!    handshake slots of its source address (IPv6: its /64) and one of
//!    `max_handshakes` handshake slots overall; with none free it is closed
//!    at once, before any TLS. Silent or slow sockets therefore hold
//!    handshake slots only, for at most `handshake_timeout_secs`.
//! 2. The handshake runs off the accept loop, under that timeout.
//! 3. The client certificate is parsed into a
//!    [`crate::identity::ClientIdentity`] exactly once, and the connection
//!    takes one of its identity's connection slots (its registry entry's
//!    `max_connections`, or `max_connections_per_identity`) and then one of
//!    `max_connections` overall; with none free it is closed. Both slots
//!    move into the connection and are freed when it closes.
//!
//! An established connection is closed when it has had no request for
//! `idle_timeout`; at `max_connection_age` it is sent GOAWAY, so it closes
//! once no request is in flight, and `request_timeout_secs` later it is
//! closed regardless; and once the answers in flight are out after the
//! request path marks it (too many identity denials, see
//! [`crate::peer::PeerInfo::note_identity_denied`]), with a GOAWAY saying why
//! (`server/goaway.rs`). A connection that failed its handshake never
//! reaches HTTP/2, and every failed handshake counts against its source
//! (the `source_failures` detector). A connection refused at accept gets a
//! TLS alert saying why (`server/alert.rs`). Every refusal is counted in
//! [`AcceptStats`] and logged through a [`Summary`]: the first of a kind
//! from a source in full, then one line with the count per interval.
//!
//! The rooms, in the order a connection meets them: `listener` binds the
//! socket ([`bind_listener`]); `accept` runs the accept loop and refuses at
//! accept (`alert` says why); `handshake` runs each handshake off the loop
//! and takes the connection slots; `stream` is the established connection
//! ([`PeerStream`]), held to its `lifetime` and closed with a GOAWAY
//! (`goaway`) when marked. `budgets` holds the semaphores and the per-key
//! `slots` of each `source` or identity; `refusal` is how every refusal is
//! counted and logged. This file wires them to tonic: the services, the
//! HTTP/2 settings and the shutdown.
//!
//! This module owns the transport only: it never reads a config file,
//! starts a backend or decides about a request. [`crate::startup`] hands it
//! ready [`ServerParts`]; [`crate::gateway`] judges each request.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::config::TransportConfig;
use crate::gateway::{Gateway, GatewayService};
use crate::peer::AcceptStats;
use crate::proto::mcp_gateway_service_server::McpGatewayServiceServer;
use crate::summary::Summary;

mod accept;
mod alert;
mod budgets;
mod goaway;
mod handshake;
mod lifetime;
mod listener;
mod refusal;
mod source;
mod stream;

use crate::slots::Slots;
use accept::accept_loop;
use budgets::Admission;
use refusal::{log_summary, SUMMARY_KEYS};

pub use listener::{bind_listener, LISTEN_BACKLOG};
pub use refusal::SUMMARY_INTERVAL;
pub use stream::PeerStream;

/// The largest `GetReceiptRequest` decoded (a 32-byte digest and a
/// number need 40).
const RECEIPT_REQUEST_BYTES: usize = 256;

/// Everything [`run`] needs besides the listener, as
/// [`crate::startup::build`] assembles it from a config.
pub struct ServerParts {
    /// The request path every connection is served by.
    pub gateway: Arc<Gateway>,
    /// Swapped on reload (certificate, CA, CRLs); each handshake loads it.
    pub tls: Arc<arc_swap::ArcSwap<crate::tls::ServerTls>>,
    /// Connection limits and timeouts; fixed for the life of the listener.
    pub transport: TransportConfig,
    /// The SPIFFE trust domain a client certificate's URI SAN must be in.
    pub trust_domain: String,
    /// What the accept loop did, shared with whoever wants to read it.
    pub stats: Arc<AcceptStats>,
}

/// Serves the gateway on a bound listener until `shutdown` completes, then
/// lets in-flight requests finish. Repeated refusals are logged as counts
/// every [`SUMMARY_INTERVAL`].
pub async fn run(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    run_summarizing(listener, parts, SUMMARY_INTERVAL, shutdown).await
}

/// [`run`], logging the counts of repeated refusals every
/// `summary_interval` (tests use a short one).
pub async fn run_summarizing(
    listener: TcpListener,
    parts: ServerParts,
    summary_interval: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let t = parts.transport.clone();
    let summary = Arc::new(Summary::new(summary_interval, SUMMARY_KEYS));
    let reporter = tokio::spawn({
        let summary = summary.clone();
        async move { summary.report(log_summary).await }
    });
    let (tx, rx) = mpsc::channel::<io::Result<PeerStream>>(64);
    let admission = Arc::new(Admission {
        tls: parts.tls.clone(),
        transport: t.clone(),
        trust_domain: parts.trust_domain.as_str().into(),
        gateway: parts.gateway.clone(),
        stats: parts.stats.clone(),
        summary: summary.clone(),
        handshakes: Arc::new(Semaphore::new(t.max_handshakes)),
        handshakes_per_source: Slots::new(),
        connections: Arc::new(Semaphore::new(t.max_connections)),
        connections_per_identity: Slots::new(),
        alerts_per_source: Slots::new(),
    });
    // At the stop signal the accept loop ends and the listener closes at
    // once (new connections are refused), while tonic lets the requests in
    // flight finish.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let gateway = parts.gateway.clone();
    let shutdown = async move {
        shutdown.await;
        gateway.metrics.start_draining();
        let _ = stopping_tx.send(true);
    };
    let accept = tokio::spawn(accept_loop(listener, admission, tx, stopping));
    let max_decoding = parts
        .gateway
        .limits
        .max_envelope_bytes
        .saturating_mul(2)
        .saturating_add(4096);
    let service = McpGatewayServiceServer::new(GatewayService::new(parts.gateway.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(16 * 1024 * 1024);
    // The operator service: same port, same mTLS, same signed envelopes.
    let admin = crate::proto::admin_service_server::AdminServiceServer::new(
        crate::admin::AdminService::new(parts.gateway.clone()),
    )
    .max_decoding_message_size(max_decoding)
    .max_encoding_message_size(1024 * 1024);
    // Receipts: same port, same mTLS, the same identity and admission as
    // a gateway call (no envelope: the caller's certificate is who it is).
    let receipts = crate::proto::audit_service_server::AuditServiceServer::new(
        crate::receipt::AuditService::new(parts.gateway.clone()),
    )
    .max_decoding_message_size(RECEIPT_REQUEST_BYTES)
    .max_encoding_message_size(1024 * 1024);
    // grpc.health.v1 and server reflection: same port, same mTLS (any
    // client certificate of our CA), no envelope; they reveal the service
    // names and whether the gateway serves, nothing about any client.
    let health = crate::health::service(&parts.gateway);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .inspect_err(|e| tracing::error!(error = %e, "server reflection is off: the descriptors did not load"))
        .ok();
    let result = tonic::transport::Server::builder()
        // A message the gRPC layer refuses as too large is audited too.
        // Every request in its span: the correlation id of its log lines.
        .layer(crate::traces::RequestSpanLayer)
        .layer(crate::gateway::TransportAuditLayer::new(
            parts.gateway.clone(),
        ))
        // Identity and admission from the headers, before the body is
        // decoded: a flood is refused for the price of HTTP/2.
        .layer(crate::admission::EarlyAdmissionLayer::new(
            parts.gateway.clone(),
        ))
        .accept_http1(false)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(t.request_timeout_secs))
        .max_concurrent_streams(t.max_concurrent_streams)
        .concurrency_limit_per_connection(t.max_concurrent_streams as usize)
        .http2_max_header_list_size(t.max_header_list_size)
        .max_frame_size(16 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(t.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(t.keepalive_timeout_secs)))
        .http2_max_pending_accept_reset_streams(Some(32))
        .initial_connection_window_size(Some(1024 * 1024))
        .initial_stream_window_size(Some(256 * 1024))
        // GOAWAY at the maximum age: the connection closes once its
        // requests are done; PeerStream closes it request_timeout later
        // regardless.
        .max_connection_age(t.max_connection_age())
        .add_service(service)
        .add_service(admin)
        .add_service(receipts)
        .add_service(health)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    reporter.abort();
    for (key, count) in summary.drain() {
        log_summary(key, count, summary_interval);
    }
    result
}
