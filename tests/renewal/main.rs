//! Enrollment and renewal against a real gateway and a real enrollment
//! listener over TLS 1.3: tokens, proofs of possession, CSRs checked
//! against the identity, the key overlap, and every refusal with its exact
//! reason (and nothing issued or registered when refused).

#[path = "../common/mod.rs"]
mod common;
#[path = "../enroll_harness/mod.rs"]
mod enroll_harness;

use std::path::PathBuf;

use common::*;
use ed25519_dalek::Signer;
use enroll_harness::*;
use sealgate::client::{Client, ClientError, Profile};
use sealgate::enroll::client::{RenewOptions, Renewal};
use sealgate::identity::ClientId;
use sealgate::proto::enrollment_service_client::EnrollmentServiceClient;
use sealgate::proto::{EnrollRequest, RenewRequest};
use serde_json::json;

mod enroll;
mod refusals;

/// A copy of `base` whose TLS certificate is one the CA signs from
/// `params` (with a fresh key), written under `dir`, naming the enrollment
/// listener.
fn profile_with_certificate(
    s: &Setup,
    base: &Profile,
    params: &rcgen::CertificateParams,
    dir: &str,
) -> PathBuf {
    let (cert, key) = s.gw.ca.sign(params).expect("sign");
    let dir = s.gw.path(dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (c, k) = (dir.join("client.crt"), dir.join("client.key"));
    sealgate::keys::write_public(&c, cert.as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&k, key.as_bytes(), false).expect("key");
    let text = toml::to_string(&json!({
        "endpoint": base.endpoint, "server_name": base.server_name,
        "ca": base.ca, "cert": c, "key": k,
        "signing_key": base.signing_key, "key_id": base.key_id,
        "audience": base.audience, "spiffe_id": base.spiffe_id,
        "enrollment": s.enroll_addr.to_string(),
        "gateway_key": [{"key_id": base.gateway_keys[0].key_id, "public_key": base.gateway_keys[0].public_key}],
    }))
    .expect("toml");
    let profile = dir.join("profile.toml");
    std::fs::write(&profile, text).expect("profile");
    profile
}

/// The last audit event of the enrollment service for `what` (`renew`).
fn last_refusal(s: &Setup, what: &str) -> serde_json::Value {
    s.gw.audit
        .lines()
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == what)
        .unwrap_or_else(|| panic!("no {what} event"))
}

/// Replaces `ca/crl.pem` with a CRL of the gateway's CA (nothing revoked)
/// whose next update is `next_update`.
fn write_crl_with_next_update(s: &Setup, next_update: time::OffsetDateTime) {
    let dir = ca_dir(s.gw.dir.path());
    let cert_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    let key_pem = std::fs::read_to_string(dir.join("ca.key")).expect("ca.key");
    let key = rcgen::KeyPair::from_pem(&key_pem).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key).expect("issuer");
    let crl = rcgen::CertificateRevocationListParams {
        this_update: next_update - time::Duration::days(1),
        next_update,
        crl_number: rcgen::SerialNumber::from(4242u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("CRL");
    std::fs::write(dir.join("crl.pem"), crl.pem().expect("pem")).expect("write CRL");
}

fn handshake_alert(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Handshake { alert, .. } => Some(alert.as_str()),
        _ => None,
    }
}
