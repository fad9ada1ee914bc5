//! One request's audit record and how it ended (outcome, fault), with the
//! certificate facts it names. Only gateway-derived values and bounded,
//! validated identifiers: the record type has no field that could carry an
//! argument value, a payload, a key or personal data.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use super::timestamp::{rfc3339_ms, unix_ms};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Forwarded, and the backend's answer returned signed.
    Allowed,
    /// Refused by the gateway, or failed in the backend.
    Denied,
    /// The client went away (or the transport's request timeout fired)
    /// before the gateway answered; the backend may have run the call.
    Cancelled,
}

/// Who caused a denial: used in logs and audit so an operator can tell a
/// misbehaving client from a failing backend or gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The caller sent something it should not have, or may not.
    Client,
    /// A backend failed, timed out, or changed its tools.
    Backend,
    /// The gateway itself failed.
    Gateway,
}

/// One request's record. Every field is either gateway-derived or a
/// bounded, validated identifier (client id, key id, method, tool name).
/// `seq`, `type`, `instance` and `prev` are added by the writer.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the request arrived: RFC 3339 UTC, millisecond precision
    /// (formatted by the writer, off the request path).
    #[serde(serialize_with = "ser_time")]
    pub ts: SystemTime,
    /// The client named by the certificate; `None` when the certificate
    /// names no valid identity.
    pub client_id: Option<String>,
    /// The client certificate's serial, lowercase hex.
    pub cert_serial: Option<String>,
    /// SHA-256 of the client certificate's DER, lowercase hex.
    pub cert_fingerprint: Option<String>,
    /// The envelope's signing key id, recorded only once it is known to be
    /// bound to this client.
    pub key_id: Option<String>,
    /// The peer's address (`ip:port`).
    pub peer: Option<SocketAddr>,
    /// SHA-256 of the request's signed bytes (docs/ENVELOPE.md), lowercase
    /// hex: the digest the signed response is bound to; known once the
    /// signature held.
    #[serde(serialize_with = "ser_digest")]
    pub request_digest: Option<[u8; 32]>,
    /// The JSON-RPC method, recorded only after the signature held.
    pub method: Option<&'static str>,
    /// The called tool's name (validated, at most 128 characters); never its
    /// arguments.
    pub tool: Option<String>,
    /// How the request ended; `Denied` until the request is allowed.
    pub outcome: Outcome,
    /// The stable reason code of a denial, as on the wire.
    pub reason: Option<&'static str>,
    /// The stage the request reached (the one that refused it, for a
    /// denial): `transport`, `audit`, `identity`, `admission`, `envelope`,
    /// `message`, `authorization`, `arguments`, `anomaly`, `backend`, `result`,
    /// `seal`; `receipt` (a receipt request past admission).
    pub stage: &'static str,
    /// Who caused a denial: client, backend or gateway.
    pub fault: Option<Fault>,
    /// The configured name of the backend the call was routed to.
    pub backend: Option<String>,
    /// Whether the backend returned a tool error (`isError`) or a JSON-RPC
    /// error object: the call was allowed but did not succeed.
    pub backend_error: bool,
    /// How long the gateway spent on the request, in microseconds.
    pub duration_us: u64,
    /// Stage 1 passed: the certificate's identity is a registered, enabled
    /// client, so `client_id` names a registry entry (what the anomaly
    /// detectors blame and `[metrics] client_labels` counts by). Not written to the trail:
    /// `stage` and `reason` already say how far the request got.
    #[serde(skip)]
    pub identity_passed: bool,
}

/// The facts of a client certificate an audit record names, read once at
/// the handshake, also when the certificate names no valid identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The serial, lowercase hex (`?` when the DER does not parse).
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
}

impl CertFacts {
    /// Serial and fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> CertFacts {
        use sha2::Digest;
        use x509_parser::prelude::FromDer;
        let serial = x509_parser::certificate::X509Certificate::from_der(der)
            .map(|(_, c)| hex::encode(c.raw_serial()))
            .unwrap_or_else(|_| "?".into());
        CertFacts {
            serial,
            fingerprint: hex::encode(sha2::Sha256::digest(der)),
        }
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(unix_ms(*t)))
}

fn ser_digest<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&hex::encode(d)),
        None => s.serialize_none(),
    }
}

impl AuditRecord {
    /// An empty record stamped now, with outcome `Denied` until the request
    /// is allowed: a request that ends early is never recorded as allowed.
    pub fn new() -> Self {
        AuditRecord {
            ts: SystemTime::now(),
            client_id: None,
            cert_serial: None,
            cert_fingerprint: None,
            key_id: None,
            peer: None,
            request_digest: None,
            method: None,
            tool: None,
            outcome: Outcome::Denied,
            reason: None,
            stage: "transport",
            fault: None,
            backend: None,
            backend_error: false,
            duration_us: 0,
            identity_passed: false,
        }
    }

    /// Marks the record denied, with the stable reason code (as on the
    /// wire) and who caused it.
    pub fn deny(&mut self, reason: &'static str, fault: Fault) {
        self.outcome = Outcome::Denied;
        self.reason = Some(reason);
        self.fault = Some(fault);
    }
}

impl Default for AuditRecord {
    fn default() -> Self {
        Self::new()
    }
}
