//! Which URLs the gateway may send credentials to (`https://`, or plain
//! `http://` to loopback only), and which are `https`.

/// Whether the gateway may send credentials to `url`: `https://`, or plain
/// `http://` to a loopback address only (host exactly `localhost` or a
/// loopback IP; no user info). Parsed, not prefix-matched, so
/// `http://localhost.evil.example` and `http://127.0.0.1.nip.io` are refused.
pub fn transport_allowed(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Whether `url` is `https` once parsed (schemes are case-insensitive:
/// `HTTPS://` is https too, and gets the pinned CA and TLS 1.3 like any).
pub fn is_https(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https")
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_only_to_loopback() {
        use super::transport_allowed as ok;
        for good in [
            "https://bao.internal:8200",
            "http://127.0.0.1:8200",
            "http://localhost:1/mcp",
            "http://[::1]:9/x",
            "http://127.9.9.9/",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "http://localhost.evil.example/mcp",
            "http://127.0.0.1.nip.io/",
            "http://localhost@evil.example/",
            "http://user:pw@127.0.0.1/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
