//! Renewal against a holder of a client's credentials (review of issue
//! 21, P1, F3, F4, F5): refused renewals spend nothing, a replaced key
//! cannot renew again, renewals per identity are limited, a public key
//! registered anywhere cannot be registered again, and a certificate
//! revoked on a CRL the gateway loads cannot renew.

mod common;
mod enroll_harness;

use common::*;
use ed25519_dalek::{Signer, SigningKey};
use enroll_harness::*;
use sealgate::client::Profile;
use sealgate::identity::ClientId;
use sealgate::proto::RenewRequest;

/// A Renew request for `spiffe`, proved with `current` (registered as
/// `key_id`) and `next`, over a fresh CSR.
fn renew_request(
    spiffe: &str,
    key_id: &str,
    current: &SigningKey,
    next: &SigningKey,
    nonce: &[u8],
) -> RenewRequest {
    let id = spiffe.rsplit('/').next().expect("id");
    let (_, csr) =
        sealgate::ca::client_csr(&ClientId::parse(id).expect("id"), spiffe).expect("csr");
    renew_request_with_csr(spiffe, key_id, current, next, nonce, csr.der())
}

fn renew_request_with_csr(
    spiffe: &str,
    key_id: &str,
    current: &SigningKey,
    next: &SigningKey,
    nonce: &[u8],
    csr: &[u8],
) -> RenewRequest {
    let ts = now_ms();
    let new_public = next.verifying_key().to_bytes();
    let proof = sealgate::enroll::renew_proof_bytes(&sealgate::enroll::RenewProof {
        audience: AUDIENCE,
        spiffe_id: spiffe,
        current_key_id: key_id,
        csr_der: csr,
        new_public_key: &new_public,
        timestamp_unix_ms: ts,
        nonce,
    });
    RenewRequest {
        csr: csr.to_vec().into(),
        new_signing_public_key: new_public.to_vec().into(),
        current_key_id: key_id.into(),
        timestamp_unix_ms: ts,
        nonce: nonce.to_vec().into(),
        current_key_signature: current.sign(&proof).to_bytes().to_vec().into(),
        new_key_signature: next.sign(&proof).to_bytes().to_vec().into(),
    }
}

/// Carol enrolled: her profile and current signing key.
async fn carol(s: &Setup) -> (Profile, SigningKey) {
    let p = Profile::load(&enroll_carol(s).await).expect("profile");
    let key = sealgate::keys::load_signing_key(&p.signing_key).expect("key");
    (p, key)
}

/// Review P1: the nonce was stored before the CSR was checked, so a
/// renewal refused for its CSR spent its nonce (and one identity could fill
/// the global nonce table with refused requests). Only a granted renewal
/// spends its nonce now.
#[tokio::test]
async fn a_refused_renewal_does_not_spend_its_nonce() {
    let s = setup(60).await;
    let (p, current) = carol(&s).await;
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    let next = sealgate::keys::generate_signing_key();
    let nonce = [3u8; 16];
    let alice = ClientId::parse("alice").expect("id");
    let (_, alice_csr) =
        sealgate::ca::client_csr(&alice, "spiffe://sealgate.test/client/alice").expect("csr");
    let bad = renew_request_with_csr(
        &p.spiffe_id,
        &p.key_id,
        &current,
        &next,
        &nonce,
        alice_csr.der(),
    );
    assert_refused(
        rpc.renew(bad).await,
        tonic::Code::InvalidArgument,
        "CSR_IDENTITY_MISMATCH",
    );
    let good = renew_request(&p.spiffe_id, &p.key_id, &current, &next, &nonce);
    rpc.renew(good.clone())
        .await
        .expect("the refused request did not spend the nonce");
    assert_refused(
        rpc.renew(good).await,
        tonic::Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
}

/// Review F3 (A): a key replaced by a renewal kept renewal authority for
/// its overlap, so whoever held it (and the old certificate) could fork
/// the identity with a key of their own. Now only the successor renews.
#[tokio::test]
async fn a_replaced_key_cannot_renew_again() {
    let s = setup(3600).await;
    let (p, k1) = carol(&s).await;
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    let k2 = sealgate::keys::generate_signing_key();
    rpc.renew(renew_request(&p.spiffe_id, &p.key_id, &k1, &k2, &[1u8; 16]))
        .await
        .expect("k1 renews into k2");
    let issued = s.issued_count();
    let enrolled = s.enrolled_text();
    let k3 = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.renew(renew_request(&p.spiffe_id, &p.key_id, &k1, &k3, &[2u8; 16]))
            .await,
        tonic::Code::Unauthenticated,
        "KEY_NOT_VALID_NOW",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
    assert_eq!(s.enrolled_text(), enrolled, "nothing registered");
}

/// Review F3 (B): nothing bounded the renewals of one identity (the rate
/// was per source), so a chain of renewals grew the enrolled-keys file and
/// the registry without end. A few an hour now.
#[tokio::test]
async fn renewals_of_one_identity_are_limited_per_hour() {
    let s = setup(60).await;
    let (p, mut current) = carol(&s).await;
    let mut key_id = p.key_id.clone();
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    let per_hour = sealgate::enroll::renewals::RENEWALS_PER_HOUR;
    for i in 0..per_hour {
        let next = sealgate::keys::generate_signing_key();
        let done = rpc
            .renew(renew_request(
                &p.spiffe_id,
                &key_id,
                &current,
                &next,
                &[i as u8 + 1; 16],
            ))
            .await
            .expect("within the identity's rate")
            .into_inner();
        key_id = done.credentials.expect("credentials").key_id;
        current = next;
    }
    let issued = s.issued_count();
    let next = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.renew(renew_request(
            &p.spiffe_id,
            &key_id,
            &current,
            &next,
            &[99u8; 16],
        ))
        .await,
        tonic::Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
}

/// Review F5 (c): a new key was compared with the registered ones by key
/// id only, and an enrolled key's id is derived from its public key, so an
/// operator-registered key (another id) could be registered again, for
/// another identity or after it was replaced. Compared by public key now.
#[tokio::test]
async fn a_public_key_registered_under_another_id_cannot_be_enrolled_again() {
    let s = setup(60).await;
    let (p, current) = carol(&s).await;
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    // An operator-registered key under a free-form id (never the id a
    // renewal derives from the public key).
    let ops_key = sealgate::keys::generate_signing_key();
    let mut registry = std::fs::read_to_string(s.gw.path("clients.toml")).expect("registry");
    registry.push_str(&format!(
        "\n[[client]]\nid = \"dave\"\nmethods = [\"ping\"]\ntools = []\n[[client.key]]\nid = \"dave-laptop\"\npublic_key = \"{}\"\nnot_before = \"2026-01-01T00:00:00Z\"\nnot_after = \"2030-01-01T00:00:00Z\"\n",
        sealgate::keys::public_key_b64(&ops_key.verifying_key())
    ));
    std::fs::write(s.gw.path("clients.toml"), registry).expect("registry");
    let config = sealgate::config::Config::load(&s.gw.path("sealgate.toml")).expect("config");
    config.load_registry(None).expect("the registry with dave");
    s.reloader.reload().await;
    assert!(
        s.gw.gateway
            .registry
            .load()
            .get(&ClientId::parse("dave").expect("id"))
            .is_some(),
        "reloaded"
    );
    let enrolled = s.enrolled_text();
    assert_refused(
        rpc.renew(renew_request(
            &p.spiffe_id,
            &p.key_id,
            &current,
            &ops_key,
            &[5u8; 16],
        ))
        .await,
        tonic::Code::AlreadyExists,
        "KEY_IN_USE",
    );
    assert_eq!(s.enrolled_text(), enrolled, "nothing registered");
}

fn cert_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

/// Review F4: Renew consulted only the CA's revoked.toml, not the CRLs the
/// gateway loaded, so a certificate revoked only on a CRL renewed on a
/// connection opened before the CRL was loaded, undoing the revocation.
#[tokio::test]
async fn a_certificate_revoked_only_in_a_loaded_crl_cannot_renew() {
    let s = setup(60).await;
    let (p, current) = carol(&s).await;
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    // The connection is open; then a CRL listing the certificate is loaded
    // (what SIGHUP stores), while revoked.toml does not list it.
    let serial = sealgate::identity::identity_from_cert(&cert_der(&p.cert), TRUST_DOMAIN)
        .expect("identity")
        .serial;
    let mut revoked = (**s.gw.gateway.revoked.load()).clone();
    revoked.insert(serial);
    s.gw.gateway.revoked.store(std::sync::Arc::new(revoked));
    let issued = s.issued_count();
    let next = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.renew(renew_request(
            &p.spiffe_id,
            &p.key_id,
            &current,
            &next,
            &[7u8; 16],
        ))
        .await,
        tonic::Code::Unauthenticated,
        "CERTIFICATE_REVOKED",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
}

/// Review F4: Renew took a certificate of any CA in `tls.client_ca` (its
/// serials in another namespace than the enrollment CA's revocations).
/// Only certificates the enrollment CA issued renew now.
#[tokio::test]
async fn a_certificate_of_another_trusted_ca_cannot_renew() {
    let s = setup(60).await;
    let (p, current) = carol(&s).await;
    // A second CA, trusted by the gateway beside the enrollment CA.
    let ca2 = sealgate::ca::init(
        &s.gw.path("ca2"),
        TRUST_DOMAIN,
        sealgate::ca::CaAlgorithm::EcdsaP256,
        30,
        false,
    )
    .expect("ca2");
    ca2.write_crl_now(7).expect("crl2");
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(ca_dir(s.gw.dir.path()).join("ca.crt")).expect("ca"),
        std::fs::read_to_string(s.gw.path("ca2").join("ca.crt")).expect("ca2")
    );
    std::fs::write(s.gw.path("bundle.crt"), bundle).expect("bundle");
    let config = std::fs::read_to_string(s.gw.path("sealgate.toml")).expect("config");
    let config = config
        .replace("client_ca = \"ca/ca.crt\"", "client_ca = \"bundle.crt\"")
        .replace(
            "crls = [\"ca/crl.pem\"]",
            "crls = [\"ca/crl.pem\", \"ca2/crl.pem\"]",
        );
    assert!(config.contains("bundle.crt") && config.contains("ca2/crl.pem"));
    std::fs::write(s.gw.path("sealgate.toml"), config).expect("config");
    s.reloader.reload().await;
    // A CA2 certificate for carol.
    let carol_id = ClientId::parse("carol").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let params = sealgate::ca::client_params_with_validity(
        &s.gw.ca,
        &carol_id,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
    .expect("params");
    let (cert, key) = ca2.sign(&params).expect("sign");
    let (c, k) = (s.gw.path("ca2-carol.crt"), s.gw.path("ca2-carol.key"));
    sealgate::keys::write_public(&c, cert.as_bytes(), false).expect("cert");
    sealgate::keys::write_private(&k, key.as_bytes(), false).expect("key");
    let mut rpc = s.rpc(Some((&c, &k))).await;
    let issued = s.issued_count();
    let next = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.renew(renew_request(
            &p.spiffe_id,
            &p.key_id,
            &current,
            &next,
            &[8u8; 16],
        ))
        .await,
        tonic::Code::Unauthenticated,
        "IDENTITY_INVALID",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
}

/// Review F5 (a): the enrollment service started over a deleted
/// enrolled-keys file as if no key had ever been enrolled (every cap gone,
/// replaced keys valid again). It refuses to start now, naming the file.
#[tokio::test]
async fn the_service_refuses_to_start_when_its_enrolled_keys_file_vanished() {
    let s = setup(60).await;
    let _ = carol(&s).await;
    std::fs::remove_file(s.gw.path("enrolled-keys.toml")).expect("rm");
    let config = sealgate::config::Config::load(&s.gw.path("sealgate.toml")).expect("config");
    let built = sealgate::startup::build_enrollment(
        &config,
        Some(s.gw.gateway.clone()),
        Vec::new(),
        Some(s.gw.audit.clone()),
    )
    .await;
    let Err(e) = built else {
        panic!("the service started without its enrolled-keys file");
    };
    assert!(
        format!("{e:#}").contains("enrolled-keys.toml"),
        "names the file: {e:#}"
    );
}

/// Review F5 (b): the enrolled-keys file was read, changed and written
/// under an in-process lock only, so a second writer (`ca serve` beside a
/// gateway with `[enrollment]`, a replica, an operator's edit) could lose
/// a `[[retire]]` or revive a removed key. Writers now hold an advisory
/// lock on `<file>.lock` (`flock`): a renewal waits while another holds it.
#[tokio::test]
async fn a_renewal_waits_for_the_enrolled_keys_lock() {
    let s = setup(60).await;
    let (p, current) = carol(&s).await;
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;
    let lock_path = s.gw.path("enrolled-keys.toml.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("lock file");
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let next = sealgate::keys::generate_signing_key();
    let request = renew_request(&p.spiffe_id, &p.key_id, &current, &next, &[9u8; 16]);
    let renewal = tokio::spawn(async move { rpc.renew(request).await });
    // While another writer holds the lock, the renewal does not finish.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !renewal.is_finished(),
        "the renewal wrote while another writer held the lock"
    );
    drop(held);
    tokio::time::timeout(std::time::Duration::from_secs(10), renewal)
        .await
        .expect("in time")
        .expect("task")
        .expect("the renewal completes once the lock is free");
}
