//! Enrollment and the first renewals: tokens used once, CSRs for their own
//! identity only, keys a running gateway picks up.

use super::*;

#[tokio::test]
async fn enroll_call_renew_and_the_old_key_works_until_its_overlap_ends() {
    let s = setup(2).await;
    let before = s.issued_count();
    let profile_path = enroll_carol(&s).await;
    assert_eq!(s.issued_count(), before + 1, "one certificate issued");
    // Her private keys were made here and written 0600.
    for f in ["carol.key", "carol.signing.key"] {
        assert_eq!(common::cli::mode(&s.gw.path("carol").join(f)), 0o600, "{f}");
    }
    let first = Profile::load(&profile_path).expect("profile");
    // The gateway accepts the new certificate and key at once, no restart.
    call_get_meps(&first).await.expect("enrolled client calls");
    let audit = s.gw.audit.lines().join("\n");
    assert!(audit.contains("\"event\":\"enrolled\""), "{audit}");

    // Keep the old credentials to show the overlap.
    let old = s.gw.path("carol-old");
    std::fs::create_dir_all(&old).expect("dir");
    for f in [&first.cert, &first.key, &first.signing_key] {
        std::fs::copy(f, old.join(f.file_name().expect("name"))).expect("copy");
    }

    let renewed = sealgate::enroll::client::renew(
        &profile_path,
        RenewOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect("renew");
    let Renewal::Renewed {
        key_id,
        previous_key_not_after_ms,
        ..
    } = renewed
    else {
        panic!("forced renewal did not renew: {renewed:?}");
    };
    assert_ne!(key_id, first.key_id);
    // `ca list` shows both keys; the replaced one ends with its overlap.
    let listed =
        s.gw.ca
            .list(time::OffsetDateTime::now_utc())
            .expect("ca list");
    let row = |kid: &str| {
        listed
            .iter()
            .find(|c| c.kind == sealgate::ca::CertKind::Key && c.serial == kid)
            .unwrap_or_else(|| panic!("{kid} not listed"))
            .clone()
    };
    assert_eq!(row(&key_id).name, "carol");
    assert_eq!(
        row(&first.key_id).not_after,
        sealgate::audit::rfc3339_ms(previous_key_not_after_ms / 1000 * 1000).replace(".000Z", "Z")
    );
    let second = Profile::load(&profile_path).expect("profile");
    assert_eq!(second.key_id, key_id, "the profile names the new key");
    assert_ne!(second.cert, first.cert, "new certificate file");
    assert!(!first.signing_key.exists(), "the old key file is removed");
    assert_eq!(common::cli::mode(&second.signing_key), 0o600);
    call_get_meps(&second).await.expect("renewed client calls");
    // Not due again right after a renewal.
    let again = sealgate::enroll::client::renew(&profile_path, RenewOptions::default())
        .await
        .expect("renew check");
    assert!(matches!(again, Renewal::NotDue { .. }), "{again:?}");

    // The old certificate and key still work during the overlap ...
    let mut old_profile = first.clone();
    old_profile.cert = old.join(first.cert.file_name().expect("name"));
    old_profile.key = old.join(first.key.file_name().expect("name"));
    old_profile.signing_key = old.join(first.signing_key.file_name().expect("name"));
    call_get_meps(&old_profile)
        .await
        .expect("the old key works during the overlap");
    // ... and stop when it ends.
    let wait = previous_key_not_after_ms - now_ms() + 300;
    tokio::time::sleep(std::time::Duration::from_millis(wait.max(0) as u64)).await;
    let backend_before = s.gw.backend_calls();
    let err = call_get_meps(&old_profile)
        .await
        .expect_err("the old key is refused after its overlap");
    assert_eq!(denied_reason(&err), Some("KEY_NOT_VALID_NOW"), "{err}");
    assert_eq!(s.gw.backend_calls(), backend_before, "backend not reached");
    call_get_meps(&second)
        .await
        .expect("the new key keeps working");
}

#[tokio::test]
async fn a_token_is_used_once_and_unknown_or_expired_tokens_are_refused() {
    let s = setup(60).await;
    let token = s.token("carol", 600, now_ms());
    sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol"), &token)
        .await
        .expect("first use");
    let issued = s.issued_count();
    let enrolled = s.enrolled_text();
    let again = sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol2"), &token)
        .await
        .expect_err("second use");
    assert_eq!(denied_reason(&again), Some("TOKEN_USED"), "{again}");

    let expired = s.token("carol", 1, now_ms() - 60_000);
    let e = sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol3"), &expired)
        .await
        .expect_err("expired");
    assert_eq!(denied_reason(&e), Some("TOKEN_EXPIRED"), "{e}");

    let unknown = format!("sgt1_{}", "A".repeat(43));
    let e = sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol4"), &unknown)
        .await
        .expect_err("unknown");
    assert_eq!(denied_reason(&e), Some("TOKEN_UNKNOWN"), "{e}");
    assert_eq!(
        s.issued_count(),
        issued,
        "nothing issued for a refused token"
    );
    assert_eq!(s.enrolled_text(), enrolled, "nothing registered");
    let audit = s.gw.audit.lines().join("\n");
    assert!(audit.contains("\"reason\":\"TOKEN_USED\""), "{audit}");
    // No token ever reaches the audit trail.
    assert!(!audit.contains(&token[5..]), "token in audit");
}

/// A CSR for "alice" with carol's token: refused, and the token is not
/// spent, so carol can still enroll with it.
#[tokio::test]
async fn enroll_refuses_a_csr_for_another_identity_and_keeps_the_token() {
    let s = setup(60).await;
    let token = s.token("carol", 600, now_ms());
    let alice = ClientId::parse("alice").expect("id");
    let (_, csr) =
        sealgate::ca::client_csr(&alice, "spiffe://sealgate.test/client/alice").expect("csr");
    let csr = csr.der().to_vec();
    let key = sealgate::keys::generate_signing_key();
    let public = key.verifying_key().to_bytes();
    let ts = now_ms();
    let proof = sealgate::enroll::enroll_proof_bytes(AUDIENCE, &token, &csr, &public, ts);
    let request = |sig: Vec<u8>, csr: Vec<u8>, token: &str| EnrollRequest {
        token: token.into(),
        csr: csr.into(),
        signing_public_key: public.to_vec().into(),
        timestamp_unix_ms: ts,
        new_key_signature: sig.into(),
    };
    let mut rpc = s.rpc(None).await;
    let issued = s.issued_count();
    assert_refused(
        rpc.enroll(request(
            key.sign(&proof).to_bytes().to_vec(),
            csr.clone(),
            &token,
        ))
        .await,
        tonic::Code::InvalidArgument,
        "CSR_IDENTITY_MISMATCH",
    );
    // A proof by another key than the one being registered.
    let other = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.enroll(request(
            other.sign(&proof).to_bytes().to_vec(),
            csr.clone(),
            &token,
        ))
        .await,
        tonic::Code::Unauthenticated,
        "PROOF_INVALID",
    );
    // Garbage for a CSR, correctly proven.
    let junk = b"not a csr".to_vec();
    let junk_proof = sealgate::enroll::enroll_proof_bytes(AUDIENCE, &token, &junk, &public, ts);
    assert_refused(
        rpc.enroll(request(
            key.sign(&junk_proof).to_bytes().to_vec(),
            junk,
            &token,
        ))
        .await,
        tonic::Code::InvalidArgument,
        "CSR_INVALID",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
    // The token was not spent by the refusals.
    sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol"), &token)
        .await
        .expect("the token still enrolls carol");
}

/// `sealgate ca serve` in another process writes the enrolled-keys file;
/// a gateway without `[enrollment]` picks the key up by itself.
#[tokio::test]
async fn a_gateway_picks_up_keys_enrolled_elsewhere_without_a_restart() {
    let s = setup(60).await;
    // Start the reloader's watcher on the gateway (what `serve` runs).
    let config = sealgate::config::Config::load(&s.gw.path("sealgate.toml")).expect("config");
    let reloader = sealgate::reload::Reloader::new(&config, &server_parts(&s.gw, &config));
    reloader.spawn();
    // A key registered by "another process": written to the file directly.
    let key = sealgate::keys::generate_signing_key();
    let mut file = sealgate::identity::EnrolledKeys::default();
    file.keys.push(sealgate::identity::enrolled::EnrolledKey {
        client: "carol".into(),
        id: sealgate::identity::key_id_for(&key.verifying_key()),
        public_key: sealgate::keys::public_key_b64(&key.verifying_key()),
        not_before: sealgate::audit::rfc3339_ms(now_ms() - 60_000),
        not_after: sealgate::audit::rfc3339_ms(now_ms() + 3_600_000),
    });
    sealgate::enroll::service::store_enrolled(&file, &s.gw.path("enrolled-keys.toml"))
        .expect("store");
    let carol = ClientId::parse("carol").expect("id");
    let kid = sealgate::identity::key_id_for(&key.verifying_key());
    let mut seen = false;
    for _ in 0..50 {
        let reg = s.gw.gateway.registry.load();
        if reg.get(&carol).is_some_and(|e| e.keys.contains_key(&kid)) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the gateway did not pick up the enrolled key");
}

/// The remaining Enroll refusals: a malformed or weak new key, a timestamp
/// from the future, and a source over its rate.
#[tokio::test]
async fn enroll_refuses_bad_keys_future_timestamps_and_floods() {
    let s = setup(60).await;
    let token = s.token("carol", 600, now_ms());
    let carol = ClientId::parse("carol").expect("id");
    let (_, csr) =
        sealgate::ca::client_csr(&carol, "spiffe://sealgate.test/client/carol").expect("csr");
    let csr = csr.der().to_vec();
    let key = sealgate::keys::generate_signing_key();
    let request = |public: Vec<u8>, ts: i64| {
        let proof = sealgate::enroll::enroll_proof_bytes(AUDIENCE, &token, &csr, &public, ts);
        EnrollRequest {
            token: token.clone(),
            csr: csr.clone().into(),
            signing_public_key: public.into(),
            timestamp_unix_ms: ts,
            new_key_signature: key.sign(&proof).to_bytes().to_vec().into(),
        }
    };
    let mut rpc = s.rpc(None).await;
    let issued = s.issued_count();
    assert_refused(
        rpc.enroll(request(vec![1u8; 31], now_ms())).await,
        tonic::Code::InvalidArgument,
        "KEY_INVALID",
    );
    // The identity point: a small-order (weak) key.
    let mut weak = vec![0u8; 32];
    weak[0] = 1;
    assert_refused(
        rpc.enroll(request(weak, now_ms())).await,
        tonic::Code::InvalidArgument,
        "KEY_INVALID",
    );
    assert_refused(
        rpc.enroll(request(
            key.verifying_key().to_bytes().to_vec(),
            now_ms() + 120_000,
        ))
        .await,
        tonic::Code::Unauthenticated,
        "TIMESTAMP_FUTURE",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
    // 30 a minute per source by default: the flood is cut off.
    let mut limited = false;
    for _ in 0..40 {
        if let Err(st) = rpc.enroll(request(vec![1u8; 31], now_ms())).await {
            if reason(&st) == "RATE_LIMITED" {
                assert_eq!(st.code(), tonic::Code::ResourceExhausted);
                limited = true;
                break;
            }
        }
    }
    assert!(limited, "40 requests in a burst were never rate limited");
}
