//! One accepted connection, off the accept loop: the TLS handshake under
//! its timeout, the peer identity parsed once, the identity's and the
//! overall connection slots; then the connection goes to tonic as a
//! [`PeerStream`]. A failed handshake counts against its source and is
//! closed gently, so that the client reads the alert.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::identity::{identity_from_cert, IdentityError};
use crate::peer::PeerInfo;

use super::alert;
use super::budgets::Admission;
use super::refusal::Refusal;
use super::source::Source;
use super::stream::{Held, PeerStream};
use crate::slots::Slot;

/// A handshake timeout that fires this late was the gateway's own doing
/// (its runtime stalled): not counted against the client's source.
const LATE_TIMEOUT: Duration = Duration::from_millis(250);

/// Connections being closed gently after a refused handshake; beyond this
/// many, one is closed at once.
const MAX_LINGERING: usize = 256;
/// How long a refused connection is read and discarded after its alert.
const ALERT_LINGER: Duration = Duration::from_millis(500);
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Closes a connection whose handshake was refused, its alert written.
///
/// Under TLS 1.3 the client sends its certificate and, at once, its first
/// HTTP/2 bytes. Closing the socket with those bytes unread sends a TCP
/// reset, which can reach the client before it reads the alert: it then
/// sees a bare transport error instead of the reason (say `unknown_ca`).
/// So the gateway half-closes (FIN after the alert), reads and discards
/// what the client still sends, for at most [`ALERT_LINGER`] and 64 KiB,
/// then closes; at most [`MAX_LINGERING`] connections at a time.
fn close_after_alert(mut tcp: TcpStream) {
    use std::sync::atomic::Ordering;
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tcp.shutdown().await;
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(ALERT_LINGER, async {
            let mut total = 0usize;
            while let Ok(n) = tcp.read(&mut buf).await {
                total += n;
                if n == 0 || total > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The handshake, the identity and the connection slots of one accepted
/// connection; hands it to tonic when all of them hold.
pub(super) async fn admit(
    admission: Arc<Admission>,
    tcp: TcpStream,
    remote: SocketAddr,
    handshake_slots: (OwnedSemaphorePermit, Slot<Source>),
    tx: mpsc::Sender<io::Result<PeerStream>>,
) {
    let a = &*admission;
    let t = &a.transport;
    let source = Source::of(remote);
    if let Some(state) = &a.gateway.state {
        // A source blocked on another replica (from this replica's mirror
        // of the store's source blocks: no round trip per connection).
        if state.source_blocked(remote.ip(), &a.gateway.anomaly).await {
            alert::refuse(
                tcp,
                alert::Alert::AccessDenied,
                source,
                &a.alerts_per_source,
            );
            let counter = &a.stats.connections_from_blocked_sources;
            if a.refuse(counter, Refusal::BlockedSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed before the handshake: its source is blocked (shared state store)");
            }
            return;
        }
    }
    let tls = a.tls.load_full();
    let deadline = Instant::now() + t.handshake_timeout();
    let handshake = tokio::time::timeout_at(deadline, tls.accept_or_return(tcp)).await;
    drop(handshake_slots);
    let io = match handshake {
        Ok(Ok(io)) => io,
        Ok(Err((e, tcp))) => {
            if let Some(tcp) = tcp.filter(|_| is_tls_error(&e)) {
                close_after_alert(tcp);
            }
            a.gateway
                .metrics
                .handshake_failed(crate::metrics::handshake_failure_cause(&e));
            // Every failed handshake feeds the per-source detector: refused
            // by TLS, abandoned (EOF or reset mid-handshake, a bare connect
            // and close included) or timed out.
            let now_ms = a.gateway.clock.now_ms();
            a.gateway
                .anomaly
                .observe_source_failure(remote.ip(), now_ms);
            let refusal = if is_tls_error(&e) {
                Refusal::HandshakeFailed(source)
            } else {
                Refusal::HandshakeAbandoned(source)
            };
            if a.refuse(&a.stats.handshakes_failed, refusal) {
                tracing::info!(peer.addr = %remote, error = %e, "TLS handshake refused");
            }
            return;
        }
        Err(_) => {
            // Counted against the source only if the gateway was on time:
            // a timeout that fires well past its deadline means the
            // gateway itself was stalled (CPU starvation under a flood,
            // say), and the client's handshake may have been waiting on us.
            if Instant::now().saturating_duration_since(deadline) < LATE_TIMEOUT {
                let now_ms = a.gateway.clock.now_ms();
                a.gateway
                    .anomaly
                    .observe_source_failure(remote.ip(), now_ms);
            }
            a.gateway.metrics.handshake_failed("timed_out");
            let refusal = Refusal::HandshakeTimedOut(source);
            if a.refuse(&a.stats.handshakes_timed_out, refusal) {
                tracing::info!(peer.addr = %remote, "TLS handshake timed out");
            }
            return;
        }
    };
    a.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    if crate::tls::is_post_quantum(io.get_ref().1) {
        a.stats
            .handshakes_post_quantum
            .fetch_add(1, Ordering::Relaxed);
    }
    let identity = match io.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => identity_from_cert(cert, &a.trust_domain),
        // Unreachable with a verifier that requires certificates;
        // kept as a refusal rather than a panic.
        None => Err(IdentityError::Unparseable),
    };
    if let Err(e) = &identity {
        tracing::info!(peer.addr = %remote, error = %e, "client certificate names no valid identity");
    }
    // A certificate that can be served nothing (it names no valid
    // identity, or one the registry does not know or has disabled) cost a
    // full handshake: that counts against its source once, as a failed
    // handshake does, so a flood of such handshakes without a request ends
    // in a source block too. Its requests' refusals count as before.
    let servable = identity.as_ref().is_ok_and(|id| {
        a.gateway
            .registry
            .load()
            .get(&id.client_id)
            .is_some_and(|entry| entry.enabled)
    });
    if !servable {
        let now_ms = a.gateway.clock.now_ms();
        a.gateway
            .anomaly
            .observe_source_failure(remote.ip(), now_ms);
    }
    let identity_slot = match &identity {
        Ok(id) => {
            let cap = a.identity_cap(&id.client_id);
            let taken = a
                .connections_per_identity
                .try_take(id.client_id.clone(), cap);
            if taken.is_none() {
                let refusal = Refusal::OverIdentityCap(id.client_id.clone());
                if a.refuse(&a.stats.connections_over_identity_cap, refusal) {
                    tracing::info!(peer.addr = %remote, client.id = %id.client_id, cap, "connection closed: its identity already holds its cap of open connections");
                }
                return;
            }
            taken
        }
        Err(_) => None,
    };
    let Ok(connection) = a.connections.clone().try_acquire_owned() else {
        if a.refuse(
            &a.stats.connections_over_capacity,
            Refusal::OverCapacity(source),
        ) {
            tracing::info!(peer.addr = %remote, "connection closed: max_connections connections open");
        }
        return;
    };
    // An identity that does not parse still has a serial and fingerprint
    // for its audit records.
    let certificate = identity
        .is_err()
        .then(|| io.get_ref().1.peer_certificates().and_then(|c| c.first()))
        .flatten()
        .map(|c| crate::audit::CertFacts::of_der(c));
    let mut info = PeerInfo::new(identity, remote, t.max_identity_denials_per_connection)
        .with_certificate(certificate);
    if let Some(slot) = &identity_slot {
        // One read hold for all of the identity's connections.
        info = info.with_read_hold(slot.shared().clone());
    }
    let info = Arc::new(info);
    let stream = PeerStream::new(
        io,
        info,
        t,
        a.stats.clone(),
        a.summary.clone(),
        a.tls.clone(),
        Held {
            _connection: connection,
            _identity: identity_slot,
        },
    );
    let _ = tx.send(Ok(stream)).await;
}

/// Whether a handshake error is TLS refusing the peer (an alert sent or
/// received), rather than the peer closing or resetting the connection.
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
