//! Enrollment and renewal against a real gateway and a real enrollment
//! listener over TLS 1.3: tokens, proofs of possession, CSRs checked
//! against the identity, the key overlap, and every refusal with its exact
//! reason (and nothing issued or registered when refused).

mod common;
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

/// Hand-made renewals of an enrolled client, each wrong in one way.
#[tokio::test]
async fn renewal_refusals_name_their_reason_and_issue_nothing() {
    let s = setup(60).await;
    let profile_path = enroll_carol(&s).await;
    let p = Profile::load(&profile_path).expect("profile");
    let current = sealgate::keys::load_signing_key(&p.signing_key).expect("key");
    let carol = ClientId::parse("carol").expect("id");
    let (_, csr) = sealgate::ca::client_csr(&carol, &p.spiffe_id).expect("csr");
    let csr = csr.der().to_vec();
    let next = sealgate::keys::generate_signing_key();
    let next_pub = next.verifying_key().to_bytes();

    struct R<'a> {
        csr: &'a [u8],
        ts: i64,
        nonce: Vec<u8>,
        key_id: &'a str,
        current: &'a ed25519_dalek::SigningKey,
        next: &'a ed25519_dalek::SigningKey,
        spiffe: &'a str,
    }
    let build = |r: R<'_>| {
        let proof = sealgate::enroll::renew_proof_bytes(&sealgate::enroll::RenewProof {
            audience: AUDIENCE,
            spiffe_id: r.spiffe,
            current_key_id: r.key_id,
            csr_der: r.csr,
            new_public_key: &r.next.verifying_key().to_bytes(),
            timestamp_unix_ms: r.ts,
            nonce: &r.nonce,
        });
        RenewRequest {
            csr: r.csr.to_vec().into(),
            new_signing_public_key: r.next.verifying_key().to_bytes().to_vec().into(),
            current_key_id: r.key_id.into(),
            timestamp_unix_ms: r.ts,
            nonce: r.nonce.into(),
            current_key_signature: r.current.sign(&proof).to_bytes().to_vec().into(),
            new_key_signature: r.next.sign(&proof).to_bytes().to_vec().into(),
        }
    };
    let good = || R {
        csr: &csr,
        ts: now_ms(),
        nonce: vec![7u8; 16],
        key_id: &p.key_id,
        current: &current,
        next: &next,
        spiffe: &p.spiffe_id,
    };
    let issued = s.issued_count();
    let mut rpc = s.rpc(Some((&p.cert, &p.key))).await;

    // A CSR for alice.
    let alice = ClientId::parse("alice").expect("id");
    let (_, alice_csr) =
        sealgate::ca::client_csr(&alice, "spiffe://sealgate.test/client/alice").expect("csr");
    let alice_csr = alice_csr.der().to_vec();
    assert_refused(
        rpc.renew(build(R {
            csr: &alice_csr,
            nonce: vec![1u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::InvalidArgument,
        "CSR_IDENTITY_MISMATCH",
    );
    // Signed by another key than the registered current one.
    let stranger = sealgate::keys::generate_signing_key();
    assert_refused(
        rpc.renew(build(R {
            current: &stranger,
            nonce: vec![2u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::Unauthenticated,
        "SIGNATURE_INVALID",
    );
    // The next key's proof made by another key.
    let mut req = build(R {
        nonce: vec![3u8; 16],
        ..good()
    });
    req.new_key_signature = stranger.sign(b"something else").to_bytes().to_vec().into();
    assert_refused(
        rpc.renew(req).await,
        tonic::Code::Unauthenticated,
        "PROOF_INVALID",
    );
    // A key id that is not carol's (alice's).
    let alice_key = s.gw.profile(&s.gw.alice).key_id;
    assert_refused(
        rpc.renew(build(R {
            key_id: &alice_key,
            nonce: vec![4u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::Unauthenticated,
        "KEY_NOT_BOUND",
    );
    // Stale, and a proof for another identity than the certificate's.
    assert_refused(
        rpc.renew(build(R {
            ts: now_ms() - 120_000,
            nonce: vec![5u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::Unauthenticated,
        "TIMESTAMP_STALE",
    );
    assert_refused(
        rpc.renew(build(R {
            spiffe: "spiffe://sealgate.test/client/alice",
            nonce: vec![6u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::Unauthenticated,
        "SIGNATURE_INVALID",
    );
    assert_refused(
        rpc.renew(build(R {
            nonce: vec![1u8; 8],
            ..good()
        }))
        .await,
        tonic::Code::InvalidArgument,
        "NONCE_INVALID",
    );
    assert_eq!(s.issued_count(), issued, "nothing issued for refusals");

    // The same request twice: the second is a replay.
    let ok = build(good());
    rpc.renew(ok.clone()).await.expect("a good renewal");
    assert_eq!(s.issued_count(), issued + 1);
    assert_refused(
        rpc.renew(ok).await,
        tonic::Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    // Registering a key that is already registered.
    assert_refused(
        rpc.renew(build(R {
            nonce: vec![9u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::AlreadyExists,
        "KEY_IN_USE",
    );
    let _ = next_pub;

    // Without a client certificate.
    let mut anon = s.rpc(None).await;
    assert_refused(
        anon.renew(build(R {
            nonce: vec![10u8; 16],
            ..good()
        }))
        .await,
        tonic::Code::Unauthenticated,
        "CERTIFICATE_REQUIRED",
    );
}

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

#[tokio::test]
async fn a_revoked_or_expired_certificate_cannot_renew() {
    let s = setup(60).await;
    let profile_path = enroll_carol(&s).await;
    let p = Profile::load(&profile_path).expect("profile");
    let issued = s.issued_count();
    // Revoked at the CA: refused at once, before any CRL is re-read.
    s.gw.ca.revoke(&p.cert, 7).expect("revoke");
    let err = sealgate::enroll::client::renew(
        &profile_path,
        RenewOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect_err("revoked");
    assert_eq!(denied_reason(&err), Some("CERTIFICATE_REVOKED"), "{err}");
    // After SIGHUP the listener's CRL refuses it at the handshake too.
    s.reloader.reload().await;
    let err = sealgate::enroll::client::renew(
        &profile_path,
        RenewOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect_err("revoked after reload");
    assert!(
        matches!(&err, ClientError::Handshake { alert, .. } if alert == "certificate_revoked"),
        "{err:?}"
    );

    // An expired certificate of a registered client (alice).
    let id = ClientId::parse("alice").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let params = sealgate::ca::client_params_with_validity(
        &s.gw.ca,
        &id,
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .expect("params");
    let alice = s.gw.profile(&s.gw.alice);
    let expired_profile = profile_with_certificate(&s, &alice, &params, "expired");
    let err = sealgate::enroll::client::renew(
        &expired_profile,
        RenewOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .expect_err("expired");
    assert!(
        matches!(&err, ClientError::Handshake { alert, .. } if alert == "certificate_expired"),
        "{err:?}"
    );
    assert_eq!(s.issued_count(), issued, "nothing issued");
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

/// Renew refusals that concern the identity rather than the request: a
/// certificate naming no identity of this trust domain, a current key
/// outside its validity, an identity blocked by an anomaly detector, one
/// disabled, one no longer in the registry. Each names its reason, is
/// audited, and issues and registers nothing.
#[tokio::test]
async fn renew_refuses_an_identity_that_is_invalid_blocked_disabled_or_unknown() {
    let s = setup_with(
        60,
        "\n[anomaly.denials]\naction = \"block\"\nwindow_secs = 60\nthreshold = 3\ncooldown_secs = 0\n",
    )
    .await;
    let profile_path = enroll_carol(&s).await;
    let p = Profile::load(&profile_path).expect("profile");
    let issued = s.issued_count();
    let enrolled = s.enrolled_text();
    let renew = |path: PathBuf| async move {
        sealgate::enroll::client::renew(
            &path,
            RenewOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .expect_err("refused")
    };
    let expect = |err: ClientError, code: tonic::Code, reason: &str| {
        match &err {
            ClientError::Denied { code: c, .. } => assert_eq!(*c, code, "{err:?}"),
            other => panic!("expected {reason}, got {other:?}"),
        }
        assert_eq!(denied_reason(&err), Some(reason), "{err:?}");
        let event = last_refusal(&s, "renew");
        assert_eq!(event["outcome"], "denied", "{event}");
        assert_eq!(event["reason"], reason, "{event}");
        assert_eq!(s.issued_count(), issued, "{reason}: nothing issued");
        assert_eq!(s.enrolled_text(), enrolled, "{reason}: nothing registered");
    };

    // A certificate from our CA whose SPIFFE ID is of another trust domain.
    let carol = ClientId::parse("carol").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let mut params = sealgate::ca::client_params_with_validity(
        &s.gw.ca,
        &carol,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
    .expect("params");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://elsewhere.test/client/carol").expect("uri"),
    )];
    let foreign = profile_with_certificate(&s, &p, &params, "foreign");
    expect(
        renew(foreign).await,
        tonic::Code::Unauthenticated,
        "IDENTITY_INVALID",
    );

    // Her current key not valid yet (its not_before moved a day ahead).
    let tomorrow = sealgate::audit::rfc3339_ms(now_ms() + 86_400_000);
    let moved = enrolled
        .lines()
        .map(|l| {
            if l.starts_with("not_before") {
                format!("not_before = \"{tomorrow}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(moved, enrolled, "the file names a not_before");
    std::fs::write(s.gw.path("enrolled-keys.toml"), &moved).expect("edit");
    s.gw.reloader.reload().await;
    let err = renew(profile_path.clone()).await;
    match &err {
        ClientError::Denied { code, .. } => assert_eq!(*code, tonic::Code::Unauthenticated),
        other => panic!("{other:?}"),
    }
    assert_eq!(denied_reason(&err), Some("KEY_NOT_VALID_NOW"), "{err:?}");
    assert_eq!(s.issued_count(), issued);
    std::fs::write(s.gw.path("enrolled-keys.toml"), &enrolled).expect("restore");
    s.gw.reloader.reload().await;

    // Three bad signatures at the gateway: the denials detector blocks her.
    let raw =
        s.gw.raw_with(&p.cert, &p.key, &p.signing_key, &p.key_id)
            .await;
    for _ in 0..3 {
        let mut env = raw.seal(GET_MEPS);
        env.payload = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec().into();
        let status = raw.send(env).await.expect_err("tampered");
        assert_eq!(reason(&status), "SIGNATURE_INVALID");
    }
    let status = raw.send_payload(GET_MEPS).await.expect_err("blocked");
    assert_eq!(reason(&status), "IDENTITY_BLOCKED");
    expect(
        renew(profile_path.clone()).await,
        tonic::Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );

    // Disabled in the registry (checked before blocks).
    let registry = s.gw.path("clients.toml");
    let text = std::fs::read_to_string(&registry).expect("registry");
    let disabled = text.replace("id = \"carol\"\n", "id = \"carol\"\nenabled = false\n");
    assert_ne!(disabled, text);
    std::fs::write(&registry, &disabled).expect("registry");
    s.gw.reloader.reload().await;
    expect(
        renew(profile_path.clone()).await,
        tonic::Code::Unauthenticated,
        "CLIENT_DISABLED",
    );

    // Gone from the registry.
    std::fs::write(&registry, text.replace(CAROL, "")).expect("registry");
    s.gw.reloader.reload().await;
    expect(
        renew(profile_path.clone()).await,
        tonic::Code::Unauthenticated,
        "CLIENT_UNKNOWN",
    );
}

/// Issue 21: the handshake checks the certificate's dates once; a
/// connection opened while it was valid must not renew after it expired.
#[tokio::test]
async fn a_certificate_that_expires_on_an_open_connection_cannot_renew() {
    let s = setup(60).await;
    let alice = ClientId::parse("alice").expect("id");
    let now = time::OffsetDateTime::now_utc();
    let params = sealgate::ca::client_params_with_validity(
        &s.gw.ca,
        &alice,
        now - time::Duration::hours(1),
        now + time::Duration::seconds(2),
    )
    .expect("params");
    let base = s.gw.profile(&s.gw.alice);
    let short =
        Profile::load(&profile_with_certificate(&s, &base, &params, "short")).expect("profile");
    let not_after_ms = {
        let der = sealgate::ca::read_cert_der(&short.cert).expect("der");
        sealgate::identity::identity_from_cert(&der, TRUST_DOMAIN)
            .expect("identity")
            .not_after_ms
    };
    let mut rpc = s.rpc(Some((&short.cert, &short.key))).await;
    // The connection is up and the certificate accepted while it is valid:
    // a junk request gets past the certificate to a later check.
    let junk = || RenewRequest {
        current_key_id: short.key_id.clone(),
        nonce: vec![7u8; 4].into(),
        ..Default::default()
    };
    assert_refused(
        rpc.renew(junk()).await,
        tonic::Code::InvalidArgument,
        "NONCE_INVALID",
    );
    // Wait (bounded) until the certificate has expired, then renew on the
    // same connection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while now_ms() <= not_after_ms + 200 {
        assert!(std::time::Instant::now() < deadline, "clock stuck");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let issued = s.issued_count();
    assert_refused(
        rpc.renew(junk()).await,
        tonic::Code::Unauthenticated,
        "CERTIFICATE_EXPIRED",
    );
    let event = last_refusal(&s, "renew");
    assert_eq!(event["reason"], "CERTIFICATE_EXPIRED", "{event}");
    assert_eq!(event["client_id"], "alice", "{event}");
    assert_eq!(s.issued_count(), issued, "nothing issued");
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

/// Issue 21: a CRL whose next update plus `crl_grace_secs` passes while
/// the gateway runs refuses clients from then on, without a SIGHUP: new
/// handshakes on both listeners, and requests on connections already open.
#[tokio::test]
async fn a_crl_whose_grace_runs_out_while_serving_refuses_clients_without_a_reload() {
    let s = setup(60).await;
    let profile_path = enroll_carol(&s).await;
    let carol = Profile::load(&profile_path).expect("profile");
    // One second of grace, and a CRL whose next update is two seconds away.
    let config_path = s.gw.path("sealgate.toml");
    let text = std::fs::read_to_string(&config_path).expect("config");
    let graced = text.replace(
        "crls = [\"ca/crl.pem\"]\n",
        "crls = [\"ca/crl.pem\"]\ncrl_grace_secs = 1\n",
    );
    assert_ne!(graced, text, "the config lists the CRL");
    std::fs::write(&config_path, graced).expect("config");
    let next_update = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    write_crl_with_next_update(&s, next_update);
    // SIGHUP: the gateway's listener, and the enrollment listener.
    s.gw.reloader.reload().await;
    s.reloader.reload().await;
    // Served now, on a connection that stays open.
    let open = Client::connect(&carol).await.expect("connect");
    open.call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("served while the CRL is current");
    let mut rpc = s.rpc(Some((&carol.cert, &carol.key))).await;
    assert_refused(
        rpc.renew(RenewRequest::default()).await,
        tonic::Code::InvalidArgument,
        "NONCE_INVALID",
    );
    // Wait (bounded) until next update + grace has passed.
    let deadline_ms = (next_update.unix_timestamp() + 1) * 1000;
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while now_ms() <= deadline_ms + 1000 {
        assert!(std::time::Instant::now() < limit, "clock stuck");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A new handshake is refused: the revocation state cannot be known.
    let err = call_get_meps(&carol).await.expect_err("new connection");
    assert_eq!(handshake_alert(&err), Some("unknown_ca"), "{err:?}");
    // The open connection is no longer served (it is closed; its client's
    // reconnection is refused the same way).
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        match open
            .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
            .await
        {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < limit,
                    "the open connection is still served past the CRL's grace"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(handshake_alert(&err), Some("unknown_ca"), "{err:?}");
    // The enrollment listener refuses the certificate too (an anonymous
    // Enroll still reaches the service).
    let ca = ca_dir(s.gw.dir.path()).join("ca.crt");
    let tls = sealgate::tls::client_config(&ca, &carol.cert, &carol.key).expect("tls");
    let refused =
        match sealgate::tls::connect_channel(&s.enroll_addr.to_string(), "localhost", tls).await {
            Err(e) => format!("{e:?}"),
            Ok(channel) => format!(
                "{:?}",
                EnrollmentServiceClient::new(channel)
                    .renew(RenewRequest::default())
                    .await
                    .expect_err("refused")
            ),
        };
    assert!(
        refused.contains("UnknownCA") || refused.contains("unknown_ca"),
        "{refused}"
    );
    let mut anonymous = s.rpc(None).await;
    assert_refused(
        anonymous.enroll(EnrollRequest::default()).await,
        tonic::Code::Unauthenticated,
        "TOKEN_UNKNOWN",
    );
    // The operator re-issues the CRL and reloads: served again.
    s.gw.ca.write_crl_now(7).expect("re-issue");
    s.gw.reloader.reload().await;
    s.reloader.reload().await;
    call_get_meps(&carol).await.expect("served after re-issue");
}
