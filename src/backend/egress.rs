//! The egress relay of a stdio backend whose `egress` names hosts: the
//! gateway's side of [`crate::sandbox::Egress::Hosts`].
//!
//! The backend lives in a network namespace of its own with nothing but a
//! loopback, and its `/etc/hosts` names each allowed host at a loopback
//! address ([`crate::sandbox::Egress::routes`]). The gateway enters that
//! namespace from one short-lived thread, binds a listener on each of those
//! addresses and ports, and leaves. For every connection the backend opens
//! to one of them, the gateway resolves the *configured* host name itself,
//! connects from its own network, and copies bytes both ways. TLS stays end
//! to end between the backend and the host: the relay never sees plaintext
//! and holds no key. So the backend reaches exactly the configured
//! `host:port` pairs, by name, and nothing else; it cannot ask DNS anything.
//!
//! Bounds: [`MAX_CONNECTIONS`] at a time per backend (more wait in the
//! listener's backlog), [`CONNECT_TIMEOUT`] to reach the host. The relay
//! ends with the backend process: dropping [`Relay`] closes the listeners
//! (and with them the last reference to the old namespace) and every copy.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::sandbox::{Egress, HostPort};

/// Connections relayed at once for one backend.
pub const MAX_CONNECTIONS: usize = 64;

/// How long the gateway tries to reach an allowed host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a failure to reach a host is logged at `warn` per backend (the
/// backend decides how often it tries; the log must not follow it).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The relay of one backend process; dropping it ends every listener and
/// connection.
pub struct Relay {
    tasks: JoinSet<()>,
}

/// What a backend's relays did (across its restarts), for metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections that reached their host.
    pub connected: std::sync::atomic::AtomicU64,
    /// Connections whose host could not be resolved or reached in time.
    pub failed: std::sync::atomic::AtomicU64,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Listens, inside the network namespace of process `pid`, on every route
/// of `egress` and relays what arrives to the configured hosts, counting
/// into `counts`.
pub async fn start(
    backend: &str,
    pid: u32,
    egress: &Egress,
    counts: Arc<Counts>,
) -> Result<Relay, String> {
    let routes: Vec<(SocketAddrV4, HostPort)> = egress
        .routes()
        .into_iter()
        .map(|(a, hp)| (a, hp.clone()))
        .collect();
    let addrs: Vec<SocketAddrV4> = routes.iter().map(|(a, _)| *a).collect();
    let listeners = bind_in_namespace(pid, addrs).await?;
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let warned = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut tasks = JoinSet::new();
    for (std_listener, (addr, target)) in listeners.into_iter().zip(routes) {
        let listener = TcpListener::from_std(std_listener)
            .map_err(|e| format!("relay listener {addr}: {e}"))?;
        tasks.spawn(serve(
            backend.to_string(),
            listener,
            target,
            limit.clone(),
            counts.clone(),
            warned.clone(),
        ));
    }
    tracing::info!(
        backend,
        egress = %egress,
        "egress relay listening in the backend's network namespace"
    );
    Ok(Relay { tasks })
}

/// Binds the listeners from a thread of its own that enters the backend's
/// network namespace and then ends (a socket keeps the namespace it was
/// made in; no thread of the gateway's pools ever changes namespace).
async fn bind_in_namespace(
    pid: u32,
    addrs: Vec<SocketAddrV4>,
) -> Result<Vec<std::net::TcpListener>, String> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // Never the gateway's own namespace: a relay there would offer the
    // allowed hosts to every local process.
    let theirs = ns.metadata().map_err(|e| format!("{path}: {e}"))?;
    let ours =
        std::fs::metadata("/proc/self/ns/net").map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(format!(
            "process {pid} shares the gateway's network namespace; no relay there"
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sealgate-egress-ns".into())
        .spawn(move || {
            let bound = (|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering the backend's network namespace: {e}"))?;
                addrs
                    .iter()
                    .map(|a| {
                        let l = std::net::TcpListener::bind(a)
                            .map_err(|e| format!("relay listener {a}: {e}"))?;
                        l.set_nonblocking(true)
                            .map_err(|e| format!("relay listener {a}: {e}"))?;
                        Ok(l)
                    })
                    .collect::<Result<Vec<_>, String>>()
            })();
            let _ = tx.send(bound);
        })
        .map_err(|e| format!("relay thread: {e}"))?;
    rx.await
        .map_err(|_| "the relay thread ended without an answer".to_string())?
}

async fn serve(
    backend: String,
    listener: TcpListener,
    target: HostPort,
    limit: Arc<Semaphore>,
    counts: Arc<Counts>,
    warned: Arc<std::sync::Mutex<Option<Instant>>>,
) {
    let mut conns = JoinSet::new();
    loop {
        // Reap finished copies so the set stays as small as the limit.
        while conns.try_join_next().is_some() {}
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(backend, error = %e, "egress relay accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let target = target.clone();
        let counts = counts.clone();
        let backend = backend.clone();
        let warned = warned.clone();
        conns.spawn(async move {
            let _permit = permit;
            let outbound = tokio::time::timeout(
                CONNECT_TIMEOUT,
                TcpStream::connect((target.host.as_str(), target.port)),
            )
            .await;
            let mut outbound = match outbound {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    failed(&backend, &target, &e.to_string(), &counts, &warned);
                    return;
                }
                Err(_) => {
                    failed(&backend, &target, "timed out", &counts, &warned);
                    return;
                }
            };
            counts
                .connected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(backend, host = %target, "egress relay connected");
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

fn failed(
    backend: &str,
    target: &HostPort,
    error: &str,
    counts: &Counts,
    warned: &std::sync::Mutex<Option<Instant>>,
) {
    counts
        .failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut last = warned.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(backend, host = %target, error, "egress relay cannot reach an allowed host");
    } else {
        tracing::debug!(backend, host = %target, error, "egress relay cannot reach an allowed host");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_relay_listens_in_the_gateway_s_own_namespace() {
        let egress = Egress::Hosts(vec![HostPort::parse("localhost:9").expect("valid")]);
        let err = start("t", std::process::id(), &egress, Arc::default())
            .await
            .err()
            .expect("refused");
        assert!(
            err.contains("shares the gateway's network namespace"),
            "{err}"
        );
    }
}
