//! Expiry you can see: which of the gateway's credentials end within the
//! `[expiry] warning_days` horizon, said in the log and the audit trail.
//!
//! Scanned at start, on every reload and every hour: the server
//! certificate, the client CA, each CRL's next update and every registered
//! signing key. Client certificates are checked as connections present
//! them (once per certificate serial). This module only reads and reports:
//! it never refuses anything (the TLS layer and the request path do).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use x509_parser::prelude::FromDer;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::identity::Registry;

/// One credential that ends within the horizon (or has ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiring {
    /// `server_certificate`, `client_ca`, `crl`, `signing_key` or
    /// `client_certificate`.
    pub what: &'static str,
    /// The file, the key id (with its client) or the certificate serial.
    pub name: String,
    /// When it ends (a CRL: its next update), Unix milliseconds.
    pub not_after_ms: i64,
}

/// The audit record of an expiring credential.
#[derive(Debug, Serialize)]
struct ExpiryRecord<'a> {
    ts: String,
    event: &'static str,
    what: &'static str,
    name: &'a str,
    not_after: String,
    days_left: i64,
}

/// Every credential of `config` and `registry` that ends before
/// `now_ms + horizon_ms`. Files that cannot be read are skipped: loading
/// them is the TLS layer's job, and its errors say why.
pub fn scan(config: &Config, registry: &Registry, now_ms: i64, horizon_ms: i64) -> Vec<Expiring> {
    let until = now_ms.saturating_add(horizon_ms);
    let mut out = Vec::new();
    for (what, path) in [
        ("server_certificate", &config.tls.cert),
        ("client_ca", &config.tls.client_ca),
    ] {
        if let Some(ms) = first_cert_not_after(path) {
            if ms < until {
                out.push(Expiring {
                    what,
                    name: path.display().to_string(),
                    not_after_ms: ms,
                });
            }
        }
    }
    for path in &config.tls.crls {
        for ms in crl_next_updates(path) {
            if ms < until {
                out.push(Expiring {
                    what: "crl",
                    name: path.display().to_string(),
                    not_after_ms: ms,
                });
            }
        }
    }
    for client in registry.clients() {
        for (key_id, key) in &client.keys {
            if let Some(ms) = key.not_after_ms.filter(|ms| *ms < until) {
                out.push(Expiring {
                    what: "signing_key",
                    name: format!("{key_id} of client {}", client.id),
                    not_after_ms: ms,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.not_after_ms, &a.name).cmp(&(b.not_after_ms, &b.name)));
    out
}

/// The enabled clients' signing keys as the metrics see them at `now_ms`:
/// when the first client that has a valid key now runs out of valid keys
/// (`None`: none does), and how many enabled clients with keys have none
/// valid now. A key a renewal superseded ends soon by design (its overlap)
/// and does not count while its successor covers the time after it; a
/// staged key (`not_before` in the future) counts from its start. Clients
/// without keys (waiting for their enrollment) are not counted.
pub fn client_keys_outlook(registry: &Registry, now_ms: i64) -> (Option<i64>, usize) {
    let mut soonest: Option<i64> = None;
    let mut without = 0;
    for c in registry
        .clients()
        .filter(|c| c.enabled && !c.keys.is_empty())
    {
        let spans: Vec<(i64, i64)> = c
            .keys
            .values()
            .map(|k| {
                (
                    k.not_before_ms.unwrap_or(i64::MIN),
                    k.not_after_ms.unwrap_or(i64::MAX),
                )
            })
            .collect();
        match covered_until(&spans, now_ms) {
            None => without += 1,
            Some(i64::MAX) => {}
            Some(end) => soonest = Some(soonest.map_or(end, |s| s.min(end))),
        }
    }
    (soonest, without)
}

/// The first instant from `now` that no span `[start, end)` covers
/// (`i64::MAX`: never), or `None` when none covers `now`.
fn covered_until(spans: &[(i64, i64)], now: i64) -> Option<i64> {
    let mut t = now;
    loop {
        let next = spans
            .iter()
            .filter(|(start, end)| *start <= t && t < *end)
            .map(|(_, end)| *end)
            .max();
        match next {
            None if t == now => return None,
            None => return Some(t),
            Some(i64::MAX) => return Some(i64::MAX),
            // Each step moves past the end of a span: at most one step a span.
            Some(end) => t = end,
        }
    }
}

/// Logs a warning and writes an audit record for each of `items`.
pub fn report(audit: &AuditLog, items: &[Expiring], now_ms: i64) {
    for item in items {
        let days_left = item
            .not_after_ms
            .saturating_sub(now_ms)
            .div_euclid(86_400_000);
        let not_after = crate::audit::rfc3339_ms(item.not_after_ms);
        tracing::warn!(
            what = item.what,
            name = item.name.as_str(),
            not_after = not_after.as_str(),
            days_left,
            "credential expiring"
        );
        audit.write_event(&ExpiryRecord {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "credential_expiring",
            what: item.what,
            name: &item.name,
            not_after,
            days_left,
        });
    }
}

/// Client certificates already warned about, by serial (bounded: cleared
/// when full, so at worst a certificate is warned about again).
#[derive(Debug, Default)]
pub struct SeenCertificates(Mutex<HashSet<String>>);

/// How many serials [`SeenCertificates`] remembers.
const SEEN_CAP: usize = 10_000;

impl SeenCertificates {
    /// Whether `serial` is new here (and remembers it).
    pub fn first_time(&self, serial: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(serial) {
            return false;
        }
        if seen.len() >= SEEN_CAP {
            seen.clear();
        }
        seen.insert(serial.to_string());
        true
    }
}

fn first_cert_not_after(path: &Path) -> Option<i64> {
    let certs = crate::tls::load_certs(path).ok()?;
    let der = certs.first()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp().saturating_mul(1000))
}

fn crl_next_updates(path: &Path) -> Vec<i64> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateRevocationListDer;
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    CertificateRevocationListDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .filter_map(|der| {
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(&der).ok()?;
            Some(crl.next_update()?.timestamp().saturating_mul(1000))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8, id: &str, not_before: Option<&str>, not_after: Option<&str>) -> String {
        use base64::Engine as _;
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let pk = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
        let start = not_before.map_or(String::new(), |t| format!("not_before = \"{t}\"\n"));
        let end = not_after.map_or("never_expires = true\n".to_string(), |t| {
            format!("not_after = \"{t}\"\n")
        });
        format!("[[client.key]]\nid = \"{id}\"\npublic_key = \"{pk}\"\n{start}{end}")
    }

    fn client(id: &str, enabled: bool, keys: &[String]) -> String {
        format!(
            "[[client]]\nid = \"{id}\"\nenabled = {enabled}\nmethods = [\"tools/list\"]\ntools = []\n{}",
            keys.concat()
        )
    }

    fn outlook(text: &str, now: &str) -> (Option<i64>, usize) {
        let rate = crate::identity::RateLimitFile {
            per_second: 1,
            burst: 1,
        };
        client_keys_outlook(&Registry::parse(text, rate).expect("registry"), ms(now))
    }

    fn ms(t: &str) -> i64 {
        crate::audit::unix_ms(humantime::parse_rfc3339(t).expect("time"))
    }

    const NOW: &str = "2026-01-01T00:30:00Z";

    #[test]
    fn a_superseded_key_ending_soon_does_not_count_while_its_successor_lasts() {
        let renewed = client(
            "a",
            true,
            &[
                key(1, "a-old", None, Some("2026-01-01T01:00:00Z")),
                key(2, "a-new", None, Some("2026-03-01T00:00:00Z")),
            ],
        );
        // a: renewed (old key capped, new key later); b: one key; c: a key
        // without an end; d: disabled with an expired key.
        let text = [
            renewed.clone(),
            client(
                "b",
                true,
                &[key(3, "b-k", None, Some("2026-02-01T00:00:00Z"))],
            ),
            client("c", true, &[key(4, "c-k", None, None)]),
            client(
                "d",
                false,
                &[key(5, "d-k", None, Some("2025-01-01T00:00:00Z"))],
            ),
        ]
        .join("\n");
        assert_eq!(outlook(&text, NOW), (Some(ms("2026-02-01T00:00:00Z")), 0));
        // Without b, a's newest key is the first to end.
        let text = [renewed, client("c", true, &[key(4, "c-k", None, None)])].join("\n");
        assert_eq!(outlook(&text, NOW), (Some(ms("2026-03-01T00:00:00Z")), 0));
        // A key that never ends: no client runs out.
        let never = client("c", true, &[key(4, "c-k", None, None)]);
        assert_eq!(outlook(&never, NOW), (None, 0));
    }

    #[test]
    fn a_gap_before_a_staged_key_is_when_the_client_runs_out() {
        // e's current key ends in 2 days; its next one starts in 30 (and
        // never ends): e has no valid key in between.
        let text = client(
            "e",
            true,
            &[
                key(1, "e-now", None, Some("2026-01-03T00:00:00Z")),
                key(2, "e-next", Some("2026-01-31T00:00:00Z"), None),
            ],
        );
        assert_eq!(outlook(&text, NOW), (Some(ms("2026-01-03T00:00:00Z")), 0));
        // Overlapping keys chain: f is covered until the last one ends.
        let text = client(
            "f",
            true,
            &[
                key(3, "f-1", None, Some("2026-01-03T00:00:00Z")),
                key(
                    4,
                    "f-2",
                    Some("2026-01-02T00:00:00Z"),
                    Some("2026-01-10T00:00:00Z"),
                ),
                key(
                    5,
                    "f-3",
                    Some("2026-01-09T00:00:00Z"),
                    Some("2026-02-10T00:00:00Z"),
                ),
            ],
        );
        assert_eq!(outlook(&text, NOW), (Some(ms("2026-02-10T00:00:00Z")), 0));
    }

    #[test]
    fn a_client_with_no_valid_key_now_is_counted_not_timed() {
        // g's keys all ended; h's only key starts later; i is disabled; j
        // waits for its enrollment (no keys). The soonest end comes from k.
        let text = [
            client(
                "g",
                true,
                &[key(1, "g-k", None, Some("2025-12-01T00:00:00Z"))],
            ),
            client(
                "h",
                true,
                &[key(2, "h-k", Some("2026-02-01T00:00:00Z"), None)],
            ),
            client(
                "i",
                false,
                &[key(3, "i-k", None, Some("2025-12-01T00:00:00Z"))],
            ),
            "[[client]]\nid = \"j\"\nmethods = [\"tools/list\"]\ntools = []\n".to_string(),
            client(
                "k",
                true,
                &[key(4, "k-k", None, Some("2026-01-20T00:00:00Z"))],
            ),
        ]
        .join("\n");
        assert_eq!(outlook(&text, NOW), (Some(ms("2026-01-20T00:00:00Z")), 2));
    }

    #[test]
    fn a_certificate_is_warned_about_once_and_memory_is_bounded() {
        let seen = SeenCertificates::default();
        assert!(seen.first_time("01"));
        assert!(!seen.first_time("01"));
        for i in 0..SEEN_CAP + 5 {
            let _ = seen.first_time(&format!("{i:x}"));
        }
        let len = seen.0.lock().map(|s| s.len()).unwrap_or_default();
        assert!(len <= SEEN_CAP);
    }
}
