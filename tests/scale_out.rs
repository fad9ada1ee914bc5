//! Several replicas sharing replay, rate and block state in a real store
//! (issue 11): Debian's redis-server on a free loopback port, two gateway
//! replicas from one folder, and Debian's HAProxy in TCP mode in front of
//! them (mTLS passes through to each replica). scripts/test.sh installs
//! redis-server and haproxy when they are missing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::services::{HaProxy, Redis, RedisTls};
use common::{now_ms, refused, Options, RawClient, TestGateway, GET_MEPS};
use sealgate::audit::AuditLog;
use sealgate::error::{reason_of, retry_after_of};
use serde_json::Value;
use tonic::Code;

/// `[state]` for `redis`, plus `extra` lines in it. The round-trip budget
/// is a second unless `extra` says otherwise: a busy test machine must not
/// pass for a store that went away. `persistent = true`: each test's store
/// is new, nothing was accepted before it, so the first replica need not
/// wait a skew window (tests/state_store_guard.rs tests that wait).
fn state(redis: &Redis, extra: &str) -> String {
    let budget = if extra.contains("timeout_ms") {
        ""
    } else {
        "timeout_ms = 1000\n"
    };
    format!(
        "[state]\nkind = \"redis\"\nurl = \"{}\"\npersistent = true\n{budget}{extra}\n",
        redis.url()
    )
}

fn events(audit: &sealgate::audit::AuditLog, status: &str) -> Vec<Value> {
    audit
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "state_store" && v["status"] == status)
        .collect()
}

fn mode_is(gw: &sealgate::gateway::Gateway, mode: &str) -> bool {
    gw.metrics
        .encode()
        .contains(&format!("sealgate_state_store_mode{{mode=\"{mode}\"}} 1"))
}

/// Polls `ok` every 50 ms for at most `secs` seconds.
async fn eventually(secs: u64, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fresh_call_passes(c: &RawClient) -> bool {
    c.send_payload(GET_MEPS).await.is_ok()
}

#[tokio::test]
async fn an_envelope_accepted_by_one_replica_is_refused_by_the_other() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: state(&redis, ""),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;

    let env = to_a.seal(GET_MEPS);
    to_a.send(env.clone()).await.expect("replica A accepts it");
    assert_eq!(a.backend_calls(), 1);
    let before = b.backend_calls();
    refused(
        to_b.send(env.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    assert_eq!(
        b.backend_calls(),
        before,
        "the replay never reached B's backend"
    );
    assert_eq!(b.last_audit()["reason"], "REPLAYED_NONCE");
    assert_eq!(b.last_audit()["outcome"], "denied");
    refused(
        to_a.send(env).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    assert_eq!(a.backend_calls(), 1);

    to_b.send_payload(GET_MEPS)
        .await
        .expect("B accepts a fresh envelope");
    assert_eq!(b.backend_calls(), before + 1);
    let metrics = b.gateway.metrics.encode();
    assert!(mode_is(&b.gateway, "shared"), "{metrics}");
    assert!(
        metrics.contains("sealgate_state_store_round_trip_seconds_count 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_over_its_rate_through_the_balancer_gets_its_rate_once() {
    let redis = Redis::start();
    let (per_second, burst) = (5u32, 10u32);
    let a = TestGateway::start_with(Options {
        config_extra: state(&redis, ""),
        bob_rate_limit: Some((per_second, burst)),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let lb = HaProxy::start(&[a.addr, b.addr]);
    // Round robin spreads connections over the replicas; which one a
    // connection landed on is read from the replicas' audit trails after
    // one call on it (a loaded machine can retry a connection elsewhere),
    // until bob holds one connection to each.
    let served = |audit: &AuditLog| {
        audit
            .lines()
            .iter()
            .filter(|l| {
                l.contains("\"client_id\":\"bob\"") && l.contains("\"outcome\":\"allowed\"")
            })
            .count()
    };
    let mut conns = Vec::new();
    let mut landed = [false, false];
    for _ in 0..8 {
        let on_a = served(&a.audit);
        let c = a.raw_to(&a.bob, lb.addr).await;
        c.send_payload(GET_MEPS).await.expect("within the burst");
        let i = usize::from(served(&a.audit) == on_a);
        if !landed[i] {
            landed[i] = true;
            conns.push(c);
        }
        if landed == [true, true] {
            break;
        }
    }
    assert_eq!(
        landed,
        [true, true],
        "bob holds a connection to each replica"
    );
    // The burst refills (10 calls at 5 a second) before the measured run.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let (mut ok, mut limited) = (0u64, 0u64);
    let mut first_ok = None;
    let mut last = Instant::now();
    let run = Duration::from_millis(2500);
    let started = Instant::now();
    while started.elapsed() < run {
        for c in &conns {
            let sent = Instant::now();
            match c.send_payload(GET_MEPS).await {
                Ok(_) => {
                    ok += 1;
                    first_ok.get_or_insert(sent);
                }
                Err(s) => {
                    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                    assert_eq!(reason_of(&s).as_deref(), Some("RATE_LIMITED"));
                    assert!(retry_after_of(&s).is_some(), "a retry hint");
                    limited += 1;
                }
            }
            last = Instant::now();
        }
    }
    let span = last
        .duration_since(first_ok.expect("some calls passed"))
        .as_secs_f64();
    // GCRA: the burst at once, then one call every 1/rate s, whichever
    // replica takes it: burst + rate * t, once (two unshared replicas would
    // give twice that).
    // Each replica's own limiter stays a first gate at the same rate, so a
    // token of the shared one can wait up to 1/rate for the next call that
    // passes a local gate: at most one call less than the continuous
    // figure, plus the rounding down of the last interval.
    let expected = f64::from(burst) + f64::from(per_second) * span;
    let diff = ok as f64 - expected;
    assert!(
        (-2.0..=1.0).contains(&diff),
        "{ok} calls served in {span:.3} s; burst + rate * t = {expected:.2} ({limited} refused)"
    );
    assert!(
        limited > 100,
        "the client was well over its rate: {limited}"
    );
    // Both replicas served bob in the measured run.
    let served_after = (served(&a.audit), served(&b.audit));
    assert!(served_after.0 > 1 && served_after.1 > 1, "{served_after:?}");
}

#[tokio::test]
async fn a_block_on_one_replica_holds_on_the_other_until_an_admin_unblocks_it() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: format!(
            "{}[anomaly.denials]\nthreshold = 3\ncooldown_secs = 0\n",
            state(&redis, "")
        ),
        ..Options::default()
    })
    .await;
    let root = a.enroll("root", None, &[], true).await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;

    for _ in 0..3 {
        let mut env = to_a.seal(GET_MEPS);
        let mut sig = env.signature.to_vec();
        sig[0] ^= 1;
        env.signature = sig.into();
        refused(
            to_a.send(env).await,
            Code::Unauthenticated,
            "SIGNATURE_INVALID",
        );
    }
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    let before = b.backend_calls();
    // B learns the block from the store (stage 3), then holds it itself.
    for _ in 0..2 {
        let s = refused(
            to_b.send_payload(GET_MEPS).await,
            Code::PermissionDenied,
            "IDENTITY_BLOCKED",
        );
        assert!(s.message().contains("denials detector"), "{}", s.message());
    }
    assert_eq!(b.backend_calls(), before);

    let admin_b = a.client_to(&root, b.addr).await;
    let blocks = admin_b.admin_blocks().await.expect("admin lists on B");
    let listed = blocks["restrictions"].as_array().expect("list");
    assert!(
        listed.iter().any(|r| r["subject"] == "identity"
            && r["id"] == "alice"
            && r["action"] == "block"
            && r["detector"] == "denials"),
        "{blocks}"
    );
    let lifted = admin_b
        .admin_unblock("alice")
        .await
        .expect("admin unblocks on B");
    assert_eq!(lifted["lifted"], 1, "{lifted}");
    to_b.send_payload(GET_MEPS)
        .await
        .expect("B serves alice at once");
    // A, where the detector fired, lifts its own copy at its next re-check.
    let started = Instant::now();
    eventually(3, "A lifts the block", async || {
        match to_a.send_payload(GET_MEPS).await {
            Ok(_) => true,
            Err(s) => {
                assert_eq!(reason_of(&s).as_deref(), Some("IDENTITY_BLOCKED"));
                false
            }
        }
    })
    .await;
    assert!(
        started.elapsed()
            <= Duration::from_millis(sealgate::policy::anomaly::RECHECK_MS as u64 + 1500),
        "{:?}",
        started.elapsed()
    );
    assert!(admin_b.admin_blocks().await.expect("list")["restrictions"]
        .as_array()
        .is_some_and(|l| l.is_empty()));
}

#[tokio::test]
async fn a_source_blocked_on_one_replica_is_refused_by_the_other_before_its_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: format!(
            "{}[anomaly.source_failures]\nthreshold = 2\ncooldown_secs = 0\n",
            state(&redis, "")
        ),
        ..Options::default()
    })
    .await;
    let root = a.enroll("root", None, &[], true).await;
    let b = a.replica().await;
    // Connections from 127.0.0.2 (the attacker); the tests' own come from
    // 127.0.0.1.
    async fn from_attacker(to: std::net::SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        socket.connect(to).await.expect("connect")
    }
    // Not a ClientHello: the handshake fails at once, with an alert.
    const NOT_TLS: &[u8] = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n";
    // Two failed handshakes at A.
    for _ in 0..2 {
        let mut tcp = from_attacker(a.addr).await;
        let _ = tcp.write_all(NOT_TLS).await;
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    }
    // B closes a connection from that source before any TLS byte.
    let attempt = async |to| {
        let mut tcp = from_attacker(to).await;
        let _ = tcp.write_all(NOT_TLS).await;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        }
    };
    // B learns it from its mirror of the store's source blocks (refreshed
    // every PROBE_INTERVAL, never a round trip per connection).
    eventually(3, "B closes 127.0.0.2 without a TLS alert", async || {
        attempt(b.addr).await == 0
    })
    .await;
    assert_eq!(attempt(b.addr).await, 0, "and again, now from B's own copy");
    // The tests' own source is not blocked: an admin lifts the source's
    // block on B, for both.
    let admin_b = a.client_to(&root, b.addr).await;
    let lifted = admin_b.admin_unblock("127.0.0.2").await.expect("unblock");
    assert_eq!(lifted["lifted"], 1, "{lifted}");
    // Now B runs the handshake: garbage gets a TLS alert back (bytes).
    eventually(3, "B handshakes with 127.0.0.2 again", async || {
        attempt(b.addr).await > 0
    })
    .await;
    eventually(3, "A handshakes with 127.0.0.2 again", async || {
        attempt(a.addr).await > 0
    })
    .await;
}

#[tokio::test]
async fn when_the_store_goes_away_calls_fail_closed_and_no_replay_crosses_the_gap() {
    let mut redis = Redis::start();
    let a = TestGateway::start_with(Options {
        // The replays below must not block alice (denials detector).
        config_extra: format!(
            "{}[envelope]\nclock_skew_secs = 2\n[anomaly.denials]\naction = \"off\"\n",
            state(&redis, "timeout_ms = 200")
        ),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;

    let e1 = to_a.seal(GET_MEPS);
    to_a.send(e1.clone())
        .await
        .expect("accepted before the gap");
    // The store stops answering (frozen: its data stays).
    redis.pause();
    let before = (a.backend_calls(), b.backend_calls());
    for c in [&to_a, &to_b, &to_a] {
        let s = refused(
            c.send_payload(GET_MEPS).await,
            Code::Unavailable,
            "STATE_UNAVAILABLE",
        );
        assert!(retry_after_of(&s).is_some());
    }
    assert_eq!((a.backend_calls(), b.backend_calls()), before);
    assert!(mode_is(&a.gateway, "unavailable"));
    assert!(
        sealgate::health::why_not(&a.gateway).contains("shared state store 127.0.0.1"),
        "not ready while it refuses everything"
    );
    assert_eq!(events(&a.audit, "unavailable").len(), 1);
    assert!(a
        .gateway
        .metrics
        .encode()
        .contains("sealgate_state_store_failures_total{kind=\"timeout\"}"));
    redis.resume();
    eventually(10, "A recovers", async || fresh_call_passes(&to_a).await).await;
    eventually(10, "B recovers", async || fresh_call_passes(&to_b).await).await;
    assert_eq!(events(&a.audit, "recovered").len(), 1);
    assert!(mode_is(&a.gateway, "shared"));
    // The nonce written before the gap is still there.
    refused(
        to_b.send(e1.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    refused(to_a.send(e1).await, Code::Unauthenticated, "REPLAYED_NONCE");

    // The store restarts empty: what was accepted before is forgotten, so
    // until a whole skew window has passed nothing stamped before it is
    // accepted, and the replay of e2 never is.
    let e2 = to_b.seal(GET_MEPS);
    to_b.send(e2.clone())
        .await
        .expect("accepted before the restart");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut gap, mut stale, mut fresh_ok, mut fresh_gap) = (0, 0, false, 0);
    while Instant::now() < deadline {
        for c in [&to_a, &to_b] {
            match c.send(e2.clone()).await {
                Ok(_) => panic!("a replay was accepted across the gap"),
                Err(s) => match reason_of(&s).as_deref() {
                    Some("STATE_UNAVAILABLE") => {
                        assert_eq!(s.code(), Code::Unavailable);
                        gap += 1
                    }
                    Some("TIMESTAMP_STALE") => stale += 1,
                    Some("REPLAYED_NONCE") => {}
                    other => panic!("unexpected refusal {other:?}: {s:?}"),
                },
            }
        }
        match to_a.send_payload(GET_MEPS).await {
            Ok(_) => fresh_ok = true,
            Err(s) => {
                assert_eq!(reason_of(&s).as_deref(), Some("STATE_UNAVAILABLE"), "{s:?}");
                assert!(!fresh_ok, "refused again after recovering");
                fresh_gap += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gap > 0 && stale > 0, "gap {gap}, stale {stale}");
    assert!(
        fresh_gap > 0,
        "fresh envelopes were refused while the store could not vouch"
    );
    assert!(fresh_ok, "fresh envelopes pass once the window has passed");
    assert!(
        !events(&a.audit, "emptied").is_empty(),
        "{:?}",
        a.audit.lines()
    );
}

#[tokio::test]
async fn with_on_failure_local_a_replica_serves_on_its_own_state_and_says_so() {
    let logs = common::logs::capture_logs(tracing::Level::INFO);
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: state(&redis, "on_failure = \"local\"\ntimeout_ms = 200"),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;

    redis.pause();
    let f = to_a.seal(GET_MEPS);
    to_a.send(f.clone()).await.expect("served on A's own state");
    assert!(mode_is(&a.gateway, "local"));
    refused(
        to_a.send(f.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    let fallback = events(&a.audit, "local_fallback");
    assert_eq!(fallback.len(), 1, "{:?}", a.audit.lines());
    assert!(!logs
        .lines_with("serving on this replica's own replay cache")
        .is_empty());
    assert!(a
        .gateway
        .metrics
        .encode()
        .contains("sealgate_state_local_decisions_total 2"));
    redis.resume();
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;
    eventually(10, "B is shared", async || {
        fresh_call_passes(&to_b).await && mode_is(&b.gateway, "shared")
    })
    .await;
    let recovered = events(&a.audit, "recovered");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["nonces_written_back"], 1, "{recovered:?}");
    // What A accepted on its own was written back: B refuses it.
    refused(to_b.send(f).await, Code::Unauthenticated, "REPLAYED_NONCE");
}

/// A CA and a certificate for 127.0.0.1, made with rcgen, as PEM files.
fn store_certs(dir: &std::path::Path) -> RedisTls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test store CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let tls = RedisTls {
        cert: dir.join("redis.crt"),
        key: dir.join("redis.key"),
        ca: dir.join("store-ca.crt"),
    };
    std::fs::write(&tls.cert, cert.pem()).expect("cert");
    std::fs::write(&tls.key, key.serialize_pem()).expect("key");
    std::fs::write(&tls.ca, ca.pem()).expect("ca");
    tls
}

#[tokio::test]
async fn a_store_over_tls_with_a_password_from_a_secret_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = store_certs(dir.path());
    let password = format!("pw-{}", hex::encode(rand::random::<[u8; 12]>()));
    let pass = dir.path().join("redis.pass");
    sealgate::keys::write_private(&pass, format!("{password}\n").as_bytes(), false).expect("pass");
    let redis = Redis::start_with(Some(&tls), Some(&password));
    let section = |pass: &std::path::Path| {
        format!(
            "[state]\nkind = \"redis\"\nurl = \"rediss://127.0.0.1:{}/0\"\nca = \"{}\"\npassword = \"file:{}\"\ntimeout_ms = 1000\npersistent = true\n",
            redis.port,
            tls.ca.display(),
            pass.display()
        )
    };
    let a = TestGateway::start_with(Options {
        config_extra: section(&pass),
        ..Options::default()
    })
    .await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;
    let env = to_a.seal(GET_MEPS);
    to_a.send(env.clone()).await.expect("accepted");
    refused(
        to_b.send(env).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    assert!(mode_is(&b.gateway, "shared"));

    // check-config connects, authenticates and says how.
    let config = sealgate::config::Config::load(&a.path("sealgate.toml")).expect("config");
    let lines = sealgate::startup::check(&config)
        .await
        .expect("check-config passes");
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "state: the shared store at 127.0.0.1:{} answers over TLS 1.3",
            redis.port
        ))),
        "{lines:?}"
    );
    // A wrong password is refused by name of the store, never echoed; the
    // gateway does not start on it (fail_closed).
    let wrong = dir.path().join("wrong.pass");
    sealgate::keys::write_private(&wrong, b"not-the-password", false).expect("pass");
    let text = std::fs::read_to_string(a.path("sealgate.toml"))
        .expect("config")
        .replace(&pass.display().to_string(), &wrong.display().to_string());
    std::fs::write(a.path("wrong.toml"), text).expect("config");
    let config = sealgate::config::Config::load(&a.path("wrong.toml")).expect("config");
    let e = sealgate::startup::check(&config)
        .await
        .expect_err("a wrong password")
        .to_string();
    assert!(
        e.contains(&format!("state store 127.0.0.1:{}", redis.port)),
        "{e}"
    );
    assert!(e.contains("refused the credentials"), "{e}");
    assert!(
        !e.contains("not-the-password") && !e.contains(&password),
        "{e}"
    );
    let e = sealgate::startup::build(&config, None)
        .await
        .err()
        .expect("no start on a wrong password")
        .to_string();
    assert!(e.contains("refused the credentials"), "{e}");
}

#[tokio::test]
async fn the_stores_limiter_computes_exactly_what_the_in_process_one_does() {
    use governor::clock::{Clock as _, FakeRelativeClock};
    use sealgate::state::{SharedState, StateConfig, StateSetup, Verdict};
    let redis = Redis::start();
    let config: StateConfig = toml::from_str(&format!(
        "kind = \"redis\"\nurl = \"{}\"\ntimeout_ms = 2000\npersistent = true",
        redis.url()
    ))
    .expect("config");
    let metrics = sealgate::metrics::Metrics::new(&[]);
    let store = Arc::new(
        SharedState::new(
            &config,
            StateSetup {
                skew_ms: 30_000,
                replay_capacity_per_client: 10,
                throttle: sealgate::policy::RateLimitFile {
                    per_second: 1,
                    burst: 1,
                },
                secrets: Arc::new(
                    sealgate::secrets::Secrets::new(None, Vec::new()).expect("secrets"),
                ),
                audit: Arc::new(sealgate::audit::AuditLog::memory()),
                clock: Arc::new(|| {
                    sealgate::gateway::Clock::now_ms(&sealgate::gateway::SystemClock)
                }),
                metrics: metrics.register_state(),
            },
        )
        .expect("state"),
    );
    store.start().await.expect("connects");
    // Steps between calls, in microseconds: bursts, gaps shorter and
    // longer than the interval, exact interval boundaries.
    let steps: Vec<u64> = (0..400u64)
        .map(|i| match i % 9 {
            0..=2 => 0,
            3 => 1,
            4 => 7_919 * (i % 13),
            5 => 200_000,
            6 => 333_334,
            7 => 50_000 + i * 37,
            _ => 1_000_000 / (1 + i % 5),
        })
        .collect();
    for (per_second, burst) in [(5u32, 10u32), (3, 1), (1000, 2), (7, 3)] {
        let rate = sealgate::policy::RateLimitFile { per_second, burst };
        let clock = FakeRelativeClock::default();
        let limiter = governor::RateLimiter::direct_with_clock(
            sealgate::policy::quota(rate).expect("quota"),
            clock.clone(),
        );
        let client =
            sealgate::identity::ClientId::parse(&format!("gcra-{per_second}-{burst}")).expect("id");
        // The store's clock from now on (the replay floor and the upper
        // bound compare envelopes stamped now with it).
        let mut t_us: i64 = now_ms() * 1000;
        let (mut allowed, mut denied) = (0, 0);
        for (i, step) in steps.iter().enumerate() {
            t_us += *step as i64;
            clock.advance(Duration::from_micros(*step));
            let env = sealgate::envelope::VerifiedEnvelope {
                payload: bytes::Bytes::new(),
                key_id: "k".into(),
                nonce: bytes::Bytes::copy_from_slice(&rand::random::<[u8; 16]>()),
                timestamp_unix_ms: now_ms(),
                digest: [0; 32],
            };
            let (verdict, _) = store
                .verdict(&client, rate, &env, now_ms(), Some(t_us))
                .await
                .expect("verdict");
            match (verdict, limiter.check()) {
                (Verdict::Accepted, Ok(())) => allowed += 1,
                (Verdict::RateLimited(wait), Err(not_until)) => {
                    let local = not_until.wait_time_from(clock.now());
                    let diff = wait.as_micros().abs_diff(local.as_micros());
                    assert!(
                        diff <= 1,
                        "call {i} at {per_second}/s burst {burst}: wait {wait:?} vs {local:?}"
                    );
                    denied += 1;
                }
                (v, l) => panic!(
                    "call {i} at {per_second}/s burst {burst}: store {v:?}, in-process {l:?}"
                ),
            }
        }
        assert!(
            allowed > 0 && denied > 0,
            "{per_second}/{burst}: {allowed} allowed, {denied} denied"
        );
    }
}
