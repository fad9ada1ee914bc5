//! Where a connection comes from: its IPv4 address or the /64 of its IPv6
//! address, the key of the per-source budgets and of the refusal log.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Where a connection comes from, for the per-source handshake budget and
/// the log: its IPv4 address, or the /64 of its IPv6 address (one host
/// usually holds a whole /64, so counting single IPv6 addresses would give
/// it billions of budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Source(pub(super) IpAddr);

impl Source {
    pub(super) fn of(remote: SocketAddr) -> Source {
        match remote.ip().to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                Source(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Source(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let v4: SocketAddr = "127.0.0.2:5000".parse().expect("v4");
        assert_eq!(Source::of(v4).to_string(), "127.0.0.2");
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:5000".parse().expect("mapped");
        assert_eq!(Source::of(mapped), Source::of(v4));
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:1".parse().expect("v6");
        let b: SocketAddr = "[2001:db8:1:2:bbbb::2]:2".parse().expect("v6");
        let other: SocketAddr = "[2001:db8:1:3::1]:1".parse().expect("v6");
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(other));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    }
}
