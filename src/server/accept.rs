//! The accept loop: takes each TCP connection, refuses it at once (with a
//! TLS alert saying why) when its source is blocked or the handshake
//! budgets are spent, and otherwise hands it, with its handshake slots, to
//! a task of its own: no handshake ever runs on the loop.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::alert;
use super::budgets::Admission;
use super::handshake::admit;
use super::refusal::Refusal;
use super::source::Source;
use super::stream::PeerStream;

/// Accepts connections on `listener` until `stopping` turns true, sending
/// each one admitted to `tx`.
pub(super) async fn accept_loop(
    listener: TcpListener,
    admission: Arc<Admission>,
    tx: mpsc::Sender<io::Result<PeerStream>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let t = &admission.transport;
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Source::of(remote);
        // A refused connection is told why with one TLS alert record (no
        // cryptography), then closed with zero linger: no TIME_WAIT kept
        // for a peer we did not want.
        let now_ms = admission.gateway.clock.now_ms();
        if admission
            .gateway
            .anomaly
            .source_blocked(remote.ip(), now_ms)
        {
            alert::refuse(
                tcp,
                alert::Alert::AccessDenied,
                source,
                &admission.alerts_per_source,
            );
            let counter = &admission.stats.connections_from_blocked_sources;
            if admission.refuse(counter, Refusal::BlockedSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: its source is blocked by the source_failures detector");
            }
            continue;
        }
        let Some(source_slot) = admission
            .handshakes_per_source
            .try_take(source, t.max_handshakes_per_source)
        else {
            alert::refuse(
                tcp,
                alert::Alert::InternalError,
                source,
                &admission.alerts_per_source,
            );
            let counter = &admission.stats.handshakes_shed_per_source;
            if admission.refuse(counter, Refusal::ShedPerSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: max_handshakes_per_source handshakes of its source in progress");
            }
            continue;
        };
        let Ok(handshake) = admission.handshakes.clone().try_acquire_owned() else {
            alert::refuse(
                tcp,
                alert::Alert::InternalError,
                source,
                &admission.alerts_per_source,
            );
            if admission.refuse(&admission.stats.handshakes_shed, Refusal::Shed(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: max_handshakes handshakes in progress");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(admit(
            admission.clone(),
            tcp,
            remote,
            (handshake, source_slot),
            tx.clone(),
        ));
    }
}
