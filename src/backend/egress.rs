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
//! Bounds: [`MAX_CONNECTIONS`] at a time per backend (a connection over it
//! waits, accepted, for one to end), [`NEW_PER_SECOND`] new ones per second
//! with a burst of [`MAX_CONNECTIONS`] (more are closed at once), one name
//! lookup per connection inside that limit, [`CONNECT_TIMEOUT`] to reach
//! the host. An address the name resolves to that is not public (loopback,
//! private, link-local, shared, multicast, unspecified; IPv6 likewise) is
//! refused unless the backend's `egress_private = true` says the host is
//! internal, or the name is `localhost` and the address loopback: whoever
//! answers for the name cannot point the relay at the gateway's own host,
//! its network or a cloud metadata service. The relay ends with the
//! backend process: dropping [`Relay`] closes the listeners (and with them
//! the last reference to the old namespace) and every copy.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::sandbox::{Egress, HostPort};

/// Connections relayed at once for one backend.
pub const MAX_CONNECTIONS: usize = 64;

/// How long the gateway tries to reach an allowed host (per address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// New relayed connections per second per backend, after a burst of
/// [`MAX_CONNECTIONS`].
pub const NEW_PER_SECOND: u32 = 20;

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
    /// Connections whose host resolved only to addresses that are not
    /// public (without `egress_private`).
    pub refused: std::sync::atomic::AtomicU64,
    /// Connections closed at once: over [`NEW_PER_SECOND`].
    pub limited: std::sync::atomic::AtomicU64,
}

/// [`Counts`] read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Connections that reached their host.
    pub connected: u64,
    /// Connections whose host could not be resolved or reached in time.
    pub failed: u64,
    /// Connections whose host resolved only to addresses that are not
    /// public.
    pub refused: u64,
    /// Connections closed at once, over [`NEW_PER_SECOND`].
    pub limited: u64,
}

impl Counts {
    /// The counts now.
    pub fn totals(&self) -> Totals {
        use std::sync::atomic::Ordering::Relaxed;
        Totals {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            limited: self.limited.load(Relaxed),
        }
    }
}

/// Whether the relay may connect to `ip` for `host`: a public address,
/// any address with `allow_private`, or loopback for `localhost`.
pub fn address_allowed(host: &str, ip: std::net::IpAddr, allow_private: bool) -> bool {
    use std::net::IpAddr;
    if allow_private {
        return true;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() {
        return host == "localhost";
    }
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

/// An IPv4 address reachable on the public internet: none of the special
/// purpose ranges (RFC 6890 and its updates).
fn v4_public(v4: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

/// An IPv6 address reachable on the public internet. An address that
/// carries an IPv4 address (6to4, well-known NAT64) is judged by it; the
/// deprecated and tunnelling forms (IPv4-compatible `::a.b.c.d`,
/// site-local, Teredo and the other IETF protocol assignments of
/// 2001::/23, local-use NAT64) are refused whatever they carry.
fn v6_public(v6: std::net::Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    if s[0] == 0x2002 {
        // 6to4: 2002:aabb:ccdd::/48 stands for a.b.c.d.
        return v4_public(embedded(s[1], s[2]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // Well-known NAT64 prefix 64:ff9b::/96.
        return v4_public(embedded(s[6], s[7]));
    }
    !(v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        // ::/64 but the IPv4-mapped addresses unwrapped above:
        // IPv4-compatible (deprecated), IPv4-translated ::ffff:0:0/96.
        || s[..4] == [0, 0, 0, 0]
        // 64:ff9b:1::/48 local-use NAT64, and the rest of 64:ff9b::/32.
        || (s[0] == 0x64 && s[1] == 0xff9b)
        // 100::/64 discard-only.
        || s[..4] == [0x100, 0, 0, 0]
        // 2001::/23 IETF protocol assignments: Teredo 2001::/32,
        // benchmarking, ORCHID, …
        || (s[0] == 0x2001 && s[1] < 0x200)
        // 2001:db8::/32 and 3fff::/20 documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] < 0x1000)
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0)
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
    allow_private: bool,
    counts: Arc<Counts>,
) -> Result<Relay, String> {
    let routes: Vec<(SocketAddrV4, HostPort)> = egress
        .routes()
        .into_iter()
        .map(|(a, hp)| (a, hp.clone()))
        .collect();
    let addrs: Vec<SocketAddrV4> = routes.iter().map(|(a, _)| *a).collect();
    let listeners = bind_in_namespace(pid, addrs).await?;
    let shared = Arc::new(Limits {
        backend: backend.to_string(),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        new: governor::RateLimiter::direct(
            governor::Quota::per_second(
                std::num::NonZeroU32::new(NEW_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN),
            )
            .allow_burst(
                std::num::NonZeroU32::new(MAX_CONNECTIONS as u32)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            ),
        ),
        allow_private,
        counts,
        warned: std::sync::Mutex::new(None),
    });
    let mut tasks = JoinSet::new();
    for (std_listener, (addr, target)) in listeners.into_iter().zip(routes) {
        let listener = TcpListener::from_std(std_listener)
            .map_err(|e| format!("relay listener {addr}: {e}"))?;
        tasks.spawn(serve(listener, target, shared.clone()));
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

/// What every route of one backend's relay shares.
struct Limits {
    backend: String,
    /// [`MAX_CONNECTIONS`] permits.
    connections: Arc<Semaphore>,
    /// [`NEW_PER_SECOND`].
    new: governor::DefaultDirectRateLimiter,
    allow_private: bool,
    counts: Arc<Counts>,
    /// When a failure was last logged at `warn`.
    warned: std::sync::Mutex<Option<Instant>>,
}

impl Limits {
    fn count(&self, what: &std::sync::atomic::AtomicU64) {
        what.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A failure to reach `target`: counted, and logged at `warn` at most
    /// once per [`WARN_EVERY`] (the backend decides how often it tries).
    fn failed(&self, target: &HostPort, error: &str, counter: &std::sync::atomic::AtomicU64) {
        self.count(counter);
        let backend = self.backend.as_str();
        let mut last = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(backend, host = %target, error, "egress relay cannot reach an allowed host");
        } else {
            tracing::debug!(backend, host = %target, error, "egress relay cannot reach an allowed host");
        }
    }
}

async fn serve(listener: TcpListener, target: HostPort, limits: Arc<Limits>) {
    let mut conns = JoinSet::new();
    loop {
        // Reap finished copies so the set stays as small as the limit.
        while conns.try_join_next().is_some() {}
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(backend = limits.backend, error = %e, "egress relay accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if limits.new.check().is_err() {
            limits.count(&limits.counts.limited);
            drop(inbound);
            continue;
        }
        // Accepted first, then a permit: an idle route holds none.
        let Ok(permit) = limits.connections.clone().acquire_owned().await else {
            return;
        };
        let target = target.clone();
        let limits = limits.clone();
        conns.spawn(async move {
            let _permit = permit;
            let Some(mut outbound) = connect(&target, &limits).await else {
                return;
            };
            limits.count(&limits.counts.connected);
            tracing::debug!(backend = limits.backend, host = %target, "egress relay connected");
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// Resolves the configured name (to completion, inside the caller's
/// permit: lookups never pile up beyond [`MAX_CONNECTIONS`]) and connects
/// to the first allowed address that answers.
async fn connect(target: &HostPort, limits: &Limits) -> Option<TcpStream> {
    // As written, without a trailing dot: the C library's hosts file would
    // not match "name." (an internal host named there would never
    // resolve). Names carry a domain (HostPort::parse), so the resolver
    // tries them as written first.
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                limits.failed(target, &e.to_string(), &limits.counts.failed);
                return None;
            }
        };
    let allowed: Vec<_> = addrs
        .iter()
        .filter(|a| address_allowed(&target.host, a.ip(), limits.allow_private))
        .collect();
    if allowed.is_empty() {
        let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        limits.failed(
            target,
            &format!(
                "resolves to {} only, which is not public (set egress_private = true for an internal host)",
                shown.join(", ")
            ),
            &limits.counts.refused,
        );
        return None;
    }
    let mut last = String::from("no address");
    for addr in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Some(s),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    limits.failed(target, &last, &limits.counts.failed);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_relay_listens_in_the_gateway_s_own_namespace() {
        let egress = Egress::Hosts(vec![HostPort::parse("localhost:9").expect("valid")]);
        let err = start("t", std::process::id(), &egress, false, Arc::default())
            .await
            .err()
            .expect("refused");
        assert!(
            err.contains("shares the gateway's network namespace"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod address_tests {
    use super::address_allowed;

    #[test]
    fn only_public_addresses_unless_the_host_is_internal() {
        let ok =
            |h: &str, ip: &str, private: bool| address_allowed(h, ip.parse().expect("ip"), private);
        for public in ["136.173.4.10", "8.8.8.8", "2a00:1450:4001::200e"] {
            assert!(ok("data.europarl.europa.eu", public, false), "{public}");
        }
        for inner in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
        ] {
            assert!(!ok("data.europarl.europa.eu", inner, false), "{inner}");
            assert!(
                ok("data.europarl.europa.eu", inner, true),
                "{inner} with egress_private"
            );
        }
        assert!(ok("localhost", "127.0.0.1", false));
        assert!(ok("localhost", "::1", false));
        assert!(
            !ok("localhost", "::7f00:1", false),
            "IPv4-compatible loopback"
        );
        assert!(!ok("localhost", "10.0.0.1", false));
    }

    /// Each special-purpose range, IPv6 forms that carry an IPv4 address
    /// included: refused without `egress_private`, allowed with it.
    #[test]
    fn every_special_purpose_range_is_refused() {
        let host = "data.europarl.europa.eu";
        let refused = [
            // IPv4
            ("0.0.0.0/8", "0.1.2.3"),
            ("10/8", "10.255.0.1"),
            ("100.64/10", "100.127.255.254"),
            ("127/8", "127.8.8.8"),
            ("169.254/16", "169.254.0.1"),
            ("172.16/12", "172.31.0.1"),
            ("192.0.0/24", "192.0.0.9"),
            ("192.0.2/24 documentation", "192.0.2.200"),
            ("192.88.99/24 6to4 relay", "192.88.99.1"),
            ("192.168/16", "192.168.0.1"),
            ("198.18/15 benchmarking", "198.19.255.1"),
            ("198.51.100/24 documentation", "198.51.100.7"),
            ("203.0.113/24 documentation", "203.0.113.7"),
            ("multicast", "239.255.255.250"),
            ("240/4 reserved", "250.1.1.1"),
            ("broadcast", "255.255.255.255"),
            // IPv6
            ("::1", "::1"),
            ("::", "::"),
            ("IPv4-compatible private", "::10.0.0.1"),
            ("IPv4-compatible public", "::8.8.8.8"),
            ("IPv4-mapped private", "::ffff:10.0.0.1"),
            ("IPv4-mapped metadata", "::ffff:169.254.169.254"),
            ("IPv4-translated", "::ffff:0:10.0.0.1"),
            ("NAT64 private", "64:ff9b::10.0.0.1"),
            ("NAT64 metadata", "64:ff9b::a9fe:a9fe"),
            ("NAT64 local-use", "64:ff9b:1::8.8.8.8"),
            ("discard-only", "100::1"),
            ("Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("benchmarking", "2001:2::1"),
            ("ORCHIDv2", "2001:20::1"),
            ("documentation", "2001:db8::1"),
            ("documentation 3fff::/20", "3fff:fff::1"),
            ("6to4 private", "2002:0a00:0001::1"),
            ("6to4 loopback", "2002:7f00:0001::1"),
            ("6to4 metadata", "2002:a9fe:a9fe::1"),
            ("unique local", "fd12:3456::1"),
            ("unique local fc", "fc00::1"),
            ("link-local", "fe80::1"),
            ("site-local", "fec0::1"),
            ("site-local high", "feff::1"),
            ("multicast", "ff02::1"),
        ];
        for (range, ip) in refused {
            let addr: std::net::IpAddr = ip.parse().expect(ip);
            assert!(!address_allowed(host, addr, false), "{range}: {ip}");
            assert!(
                address_allowed(host, addr, true),
                "{range}: {ip} with egress_private"
            );
        }
        for ip in [
            "136.173.4.10",
            "8.8.8.8",
            "2a00:1450:4001::200e",
            "2606:4700::1111",
            // 6to4 and NAT64 of a public address.
            "2002:0808:0808::1",
            "64:ff9b::8.8.8.8",
            "::ffff:8.8.8.8",
        ] {
            assert!(address_allowed(host, ip.parse().expect(ip), false), "{ip}");
        }
    }
}
