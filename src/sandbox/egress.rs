//! Where a sandboxed backend may connect to: nowhere, TCP ports, or named
//! hosts (each relayed through its own loopback address in the backend's
//! network namespace). A spec is read back through the same checks the
//! config applies, so nothing reaches the backend's hosts file that the
//! config would refuse.

use serde::{Deserialize, Serialize};

/// Where a backend may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    /// No network: an empty network namespace (no interface but a down
    /// loopback), no IPv4/IPv6 socket (seccomp), no TCP (Landlock).
    None,
    /// TCP connections to these ports only (any host), no listening socket
    /// (Landlock ABI 4 or later). UDP (DNS) is not restricted.
    TcpPorts(Vec<u16>),
    /// TCP to these host names and ports only, through the gateway: the
    /// backend's own network namespace holds nothing but a loopback on
    /// which the gateway listens, one address per host (see
    /// [`Egress::routes`]); its `/etc/hosts` names those addresses; the
    /// gateway resolves the real host and relays the bytes (TLS stays end
    /// to end). No DNS, no UDP, no other host or port.
    Hosts(Vec<HostPort>),
    /// No network restriction.
    Any,
}

/// One host a backend may reach (`egress = ["host:port"]`). Read back
/// (from a sandbox spec) only through [`HostPort::parse`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawHostPort")]
pub struct HostPort {
    /// A DNS name in lower case (never an IP address).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostPort {
    host: String,
    port: u16,
}

impl TryFrom<RawHostPort> for HostPort {
    type Error = String;
    fn try_from(raw: RawHostPort) -> Result<Self, String> {
        HostPort::parse(&format!("{}:{}", raw.host, raw.port))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The most distinct host names one backend's egress may name: each takes
/// one loopback address, 127.0.0.2 upwards.
pub const MAX_EGRESS_HOSTS: usize = 200;

impl HostPort {
    /// Parses `host:port`: a DNS name (letters, digits, hyphens and dots,
    /// labels of 1 to 63 characters, 253 in all; compared in lower case)
    /// and a port 1-65535. An IP address is refused: the backend reaches a
    /// host by its name, which the gateway resolves.
    pub fn parse(item: &str) -> Result<HostPort, String> {
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?} is not host:port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?}: the port is not 1-65535"))?;
        let host = host.to_ascii_lowercase();
        if host == "udp" {
            return Err(format!(
                "{item:?}: no UDP egress is offered (with host names, the backend's names come from its own /etc/hosts, without DNS)"
            ));
        }
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err(format!(
                "{item:?} is an IP address; name the host (the gateway resolves it and relays the backend's connection)"
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!("{item:?}: {host:?} is not a DNS host name"));
        }
        if !host.contains('.') && host != "localhost" {
            return Err(format!(
                "{item:?}: name the host in full, with its domain (a name without a dot would be looked up under the gateway's search domains)"
            ));
        }
        if host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "{item:?}: {host:?} is not a DNS host name (numeric top label)"
            ));
        }
        Ok(HostPort { host, port })
    }
}

impl Egress {
    /// For [`Egress::Hosts`]: each allowed `host:port` with the loopback
    /// address that stands for its host inside the backend's network
    /// namespace (distinct hosts in sorted order get 127.0.0.2, .3, …).
    /// The helper writes the same mapping into the backend's `/etc/hosts`
    /// and the gateway listens on these addresses; both derive it here.
    pub fn routes(&self) -> Vec<(std::net::SocketAddrV4, &HostPort)> {
        let Egress::Hosts(list) = self else {
            return Vec::new();
        };
        let mut hosts: Vec<&str> = list.iter().map(|h| h.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        list.iter()
            .filter_map(|hp| {
                let i = hosts.binary_search(&hp.host.as_str()).ok()?;
                let last = u8::try_from(i + 2).ok().filter(|l| *l < 255)?;
                let ip = std::net::Ipv4Addr::new(127, 0, 0, last);
                Some((std::net::SocketAddrV4::new(ip, hp.port), hp))
            })
            .collect()
    }

    /// The backend's `/etc/hosts` for [`Egress::Hosts`]: `localhost`, and
    /// each allowed host at its relay address.
    pub fn hosts_file(&self) -> String {
        let routes = self.routes();
        let mut out = String::from("# Written by sealgate: the hosts this backend may reach.\n");
        if !routes.iter().any(|(_, hp)| hp.host == "localhost") {
            out.push_str("127.0.0.1\tlocalhost\n");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (addr, hp) in routes {
            if seen.insert(hp.host.as_str()) {
                out.push_str(&format!("{}\t{}\n", addr.ip(), hp.host));
            }
        }
        out
    }

    /// The TCP ports the backend may connect to (`TcpPorts`, or the ports
    /// of `Hosts`), sorted and distinct.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = match self {
            Egress::TcpPorts(p) => p.clone(),
            Egress::Hosts(h) => h.iter().map(|h| h.port).collect(),
            Egress::None | Egress::Any => Vec::new(),
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

impl std::fmt::Display for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Egress::None => f.write_str("none"),
            Egress::Any => f.write_str("any"),
            Egress::TcpPorts(ports) => {
                let p: Vec<String> = ports.iter().map(|p| format!("tcp:{p}")).collect();
                f.write_str(&p.join(","))
            }
            Egress::Hosts(hosts) => {
                let h: Vec<String> = hosts.iter().map(HostPort::to_string).collect();
                f.write_str(&h.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(items: &[&str]) -> Egress {
        Egress::Hosts(
            items
                .iter()
                .map(|i| HostPort::parse(i).expect("valid"))
                .collect(),
        )
    }

    #[test]
    fn each_host_gets_one_loopback_address_and_the_hosts_file_names_it() {
        let e = hosts(&["b.example:443", "a.example:443", "a.example:8443"]);
        let routes: Vec<String> = e
            .routes()
            .iter()
            .map(|(addr, hp)| format!("{addr}={hp}"))
            .collect();
        assert_eq!(
            routes,
            [
                "127.0.0.3:443=b.example:443",
                "127.0.0.2:443=a.example:443",
                "127.0.0.2:8443=a.example:8443"
            ]
        );
        assert_eq!(
            e.hosts_file(),
            "# Written by sealgate: the hosts this backend may reach.\n\
             127.0.0.1\tlocalhost\n127.0.0.3\tb.example\n127.0.0.2\ta.example\n"
        );
        assert_eq!(e.ports(), [443, 8443]);
        // An allowed localhost is the relayed one, not the namespace's own.
        let l = hosts(&["localhost:9000"]);
        assert_eq!(
            l.hosts_file(),
            "# Written by sealgate: the hosts this backend may reach.\n127.0.0.2\tlocalhost\n"
        );
        assert!(Egress::None.routes().is_empty());
        assert!(Egress::TcpPorts(vec![443]).routes().is_empty());
    }

    #[test]
    fn the_last_host_still_gets_an_address_below_broadcast() {
        let items: Vec<String> = (0..MAX_EGRESS_HOSTS)
            .map(|i| format!("h{i:03}.example:443"))
            .collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let e = hosts(&refs);
        let routes = e.routes();
        assert_eq!(routes.len(), MAX_EGRESS_HOSTS);
        assert_eq!(
            routes.last().map(|(a, _)| a.to_string()),
            Some(format!("127.0.0.{}:443", MAX_EGRESS_HOSTS + 1))
        );
    }

    #[test]
    fn a_spec_with_host_egress_survives_its_trip_through_json() {
        let e = hosts(&["data.europarl.europa.eu:443"]);
        let json = serde_json::to_string(&e).expect("json");
        assert_eq!(
            json,
            r#"{"hosts":[{"host":"data.europarl.europa.eu","port":443}]}"#
        );
        assert_eq!(serde_json::from_str::<Egress>(&json).expect("back"), e);
        // A spec is read back through the same checks: nothing reaches the
        // backend's hosts file that the config would refuse.
        for bad in [
            r#"{"hosts":[{"host":"evil\nhost.example","port":443}]}"#,
            r#"{"hosts":[{"host":"10.0.0.1","port":443}]}"#,
            r#"{"hosts":[{"host":"a.example","port":0}]}"#,
        ] {
            assert!(serde_json::from_str::<Egress>(bad).is_err(), "{bad}");
        }
    }
}
