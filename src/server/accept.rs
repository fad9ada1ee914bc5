//! The accept loop: takes each TCP connection, refuses it at once (with a
//! TLS alert saying why) when its source is blocked or the handshake
//! budgets are spent, and otherwise hands it, with its handshake slots, to
//! a task of its own: no handshake ever runs on the loop.
//!
//! Out of file descriptors (`EMFILE`/`ENFILE`: a low `ulimit -n`, or
//! connections held open by many peers), `accept` fails while the
//! connection stays queued, so a loop that retried at once would spin. The
//! loop keeps one descriptor in reserve ([`Reserve`]): it frees it, takes
//! the connection queued longest, answers it with an `internal_error` alert
//! (`access_denied` when its source is blocked), closes it and takes the
//! reserve back, so a client learns at once that the gateway is busy
//! instead of waiting on a connection nobody reads. That answer runs on
//! the loop (the descriptor must come back before anything else is
//! accepted), so it never lingers for the peer (`alert::answer_at_once`:
//! at most 50 ms for its first bytes, and only 10 ms once a source's
//! 100 ms of the second, or all sources' 500 ms, are spent
//! (`alert::WaitBudget`); the alert written at once): a peer that trickles its ClientHello, or many silent ones, cannot
//! slow the refusals of the others, nor take another source's alert. When even that fails (another task took the
//! freed descriptor) the loop backs off for [`OUT_OF_FDS_BACKOFF`]: at most
//! a few wake-ups a second, never a busy loop. Connections that close
//! free their descriptors and the loop accepts again by itself.

use std::io;
use std::sync::Arc;
use std::task::Poll;
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
    let mut reserve = Reserve::new();
    let mut waits = alert::WaitBudget::new();
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if out_of_fds(&e) => {
                if !refuse_out_of_fds(&listener, &mut reserve, &mut waits, &admission).await {
                    tokio::time::sleep(OUT_OF_FDS_BACKOFF).await;
                }
                continue;
            }
            Err(e) => {
                // Another accept error (ECONNABORTED, ENOBUFS, …): back off
                // instead of spinning.
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

/// How long the accept loop waits when it is out of file descriptors and
/// could not refuse the queued connection with its reserve.
pub(super) const OUT_OF_FDS_BACKOFF: Duration = Duration::from_millis(100);

/// Whether an accept error means the process (`EMFILE`) or the system
/// (`ENFILE`) has no file descriptor left.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One file descriptor (`/dev/null`) held back so that a connection can
/// still be accepted, told why and closed when every other is in use.
pub(super) struct Reserve(Option<std::fs::File>);

impl Reserve {
    pub(super) fn new() -> Reserve {
        Reserve(std::fs::File::open("/dev/null").ok())
    }

    /// Takes the reserve back if it was spent (fails while no descriptor
    /// is free: tried again at the next refusal).
    fn refill(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
}

/// Out of descriptors with a connection queued: spends the reserve on
/// accepting it, answers it with an `internal_error` alert and closes it,
/// then takes the reserve back. Returns whether a connection was refused
/// (else the caller backs off).
async fn refuse_out_of_fds(
    listener: &TcpListener,
    reserve: &mut Reserve,
    waits: &mut alert::WaitBudget,
    admission: &Admission,
) -> bool {
    if !reserve.refill() {
        return false;
    }
    reserve.0 = None;
    // One try, no wait: the queued connection is there (accept said so).
    let taken = {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match listener.poll_accept(&mut cx) {
            Poll::Ready(Ok(taken)) => Some(taken),
            Poll::Ready(Err(_)) | Poll::Pending => None,
        }
    };
    let refused = taken.is_some();
    if let Some((tcp, remote)) = taken {
        let source = Source::of(remote);
        // A blocked source is told so here too, and counted as such.
        let now_ms = admission.gateway.clock.now_ms();
        if admission
            .gateway
            .anomaly
            .source_blocked(remote.ip(), now_ms)
        {
            alert::answer_at_once(tcp, alert::Alert::AccessDenied, source, waits).await;
            let counter = &admission.stats.connections_from_blocked_sources;
            if admission.refuse(counter, Refusal::BlockedSource(source)) {
                tracing::info!(peer.addr = %remote, "connection closed at accept: its source is blocked by the source_failures detector");
            }
        } else {
            alert::answer_at_once(tcp, alert::Alert::InternalError, source, waits).await;
            let counter = &admission.stats.connections_refused_out_of_fds;
            if admission.refuse(counter, Refusal::OutOfFds(source)) {
                tracing::warn!(peer.addr = %remote, "connection refused at accept: the gateway has no file descriptor left (ulimit -n, or connections held open); see docs/OPERATIONS.md \"Resource limits\"");
            }
        }
    }
    reserve.refill();
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_emfile_and_enfile_are_out_of_fds() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(!out_of_fds(&io::Error::other("x")));
    }
}
