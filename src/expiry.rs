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

/// When the first enabled client runs out of signing keys: for each
/// enabled client, the end of its key that lasts longest (a key without
/// `not_after` never ends), and the soonest of those. A key a renewal
/// superseded ends soon by design (its overlap) and is not counted while
/// its successor lasts; `None`: no enabled client's keys all end.
pub fn soonest_client_without_keys(registry: &Registry) -> Option<i64> {
    registry
        .clients()
        .filter(|c| c.enabled && !c.keys.is_empty())
        .filter_map(|c| {
            c.keys
                .values()
                .map(|k| k.not_after_ms)
                .try_fold(i64::MIN, |latest, end| end.map(|e| latest.max(e)))
        })
        .min()
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

    fn key(seed: u8, id: &str, not_after: Option<&str>) -> String {
        use base64::Engine as _;
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let pk = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
        let end = not_after.map_or("never_expires = true\n".to_string(), |t| {
            format!("not_after = \"{t}\"\n")
        });
        format!("[[client.key]]\nid = \"{id}\"\npublic_key = \"{pk}\"\n{end}")
    }

    fn client(id: &str, enabled: bool, keys: &[String]) -> String {
        format!(
            "[[client]]\nid = \"{id}\"\nenabled = {enabled}\nmethods = [\"tools/list\"]\ntools = []\n{}",
            keys.concat()
        )
    }

    fn soonest(text: &str) -> Option<i64> {
        let rate = crate::identity::RateLimitFile {
            per_second: 1,
            burst: 1,
        };
        soonest_client_without_keys(&Registry::parse(text, rate).expect("registry"))
    }

    fn ms(t: &str) -> i64 {
        crate::audit::unix_ms(humantime::parse_rfc3339(t).expect("time"))
    }

    #[test]
    fn a_superseded_key_ending_soon_does_not_count_while_its_successor_lasts() {
        // a: renewed (old key capped, new key later); b: one key; c: a key
        // without an end; d: disabled with an expired key.
        let text = [
            client(
                "a",
                true,
                &[
                    key(1, "a-old", Some("2026-01-01T01:00:00Z")),
                    key(2, "a-new", Some("2026-03-01T00:00:00Z")),
                ],
            ),
            client("b", true, &[key(3, "b-k", Some("2026-02-01T00:00:00Z"))]),
            client("c", true, &[key(4, "c-k", None)]),
            client("d", false, &[key(5, "d-k", Some("2025-01-01T00:00:00Z"))]),
        ]
        .join("\n");
        assert_eq!(soonest(&text), Some(ms("2026-02-01T00:00:00Z")));
        // Without b, a's newest key is the first to end.
        let text = [
            client(
                "a",
                true,
                &[
                    key(1, "a-old", Some("2026-01-01T01:00:00Z")),
                    key(2, "a-new", Some("2026-03-01T00:00:00Z")),
                ],
            ),
            client("c", true, &[key(4, "c-k", None)]),
        ]
        .join("\n");
        assert_eq!(soonest(&text), Some(ms("2026-03-01T00:00:00Z")));
        // A key that never ends: no client runs out.
        assert_eq!(soonest(&client("c", true, &[key(4, "c-k", None)])), None);
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
