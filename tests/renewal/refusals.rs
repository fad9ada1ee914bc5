//! Renewals refused: each with its reason and nothing issued; revoked,
//! expired, blocked, disabled or unknown identities; CRL grace running out.

use super::*;

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
