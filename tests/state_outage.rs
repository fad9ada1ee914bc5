//! What a replica does while its shared state store is away (issue 21):
//! with `on_failure = "local"` it keeps what it accepted through the store
//! and the blocks it holds, and an operator's unblock is never reported
//! done when only one replica could lift it. Debian's redis-server on a
//! free loopback port, frozen with SIGSTOP mid-test.

mod common;

use std::time::{Duration, Instant};

use common::services::Redis;
use common::{Options, TestGateway, GET_MEPS};
use sealgate::client::ClientError;
use sealgate::error::reason_of;
use sealgate::proto::CallResponse;
use tonic::Code;

/// `[state]` for `redis` with `on_failure = "local"` and a short budget,
/// plus `extra` config.
fn local_state(redis: &Redis, extra: &str) -> String {
    format!(
        "[state]\nkind = \"redis\"\nurl = \"{}\"\ntimeout_ms = 200\non_failure = \"local\"\n{extra}\n",
        redis.url()
    )
}

fn refused(result: Result<CallResponse, tonic::Status>, code: Code, reason: &str) -> tonic::Status {
    let status = match result {
        Ok(_) => panic!("expected {reason}, but the request was allowed"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "code for {reason}: {status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
    status
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

/// Three calls with a broken signature: the denials detector (threshold 3,
/// `denials_block`) blocks the client.
async fn break_three_signatures(c: &common::RawClient) {
    for _ in 0..3 {
        let mut env = c.seal(GET_MEPS);
        let mut sig = env.signature.to_vec();
        sig[0] ^= 1;
        env.signature = sig.into();
        refused(
            c.send(env).await,
            Code::Unauthenticated,
            "SIGNATURE_INVALID",
        );
    }
}

const DENIALS_BLOCK: &str = "[anomaly.denials]\nthreshold = 3\ncooldown_secs = 0\n";

#[tokio::test]
async fn in_local_fallback_an_envelope_accepted_through_the_store_is_not_accepted_again() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, "[anomaly.denials]\naction = \"off\"\n"),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    let e1 = to_a.seal(GET_MEPS);
    to_a.send(e1.clone())
        .await
        .expect("accepted through the store");
    assert!(mode_is(&a.gateway, "shared"));
    redis.pause();
    let before = a.backend_calls();
    // The first replay meets the frozen store, falls back, and is refused
    // from what this replica remembers of the store's answers.
    refused(
        to_a.send(e1.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
    );
    assert!(mode_is(&a.gateway, "local"));
    refused(to_a.send(e1).await, Code::Unauthenticated, "REPLAYED_NONCE");
    assert_eq!(a.backend_calls(), before, "no replay reached the backend");
    to_a.send_payload(GET_MEPS)
        .await
        .expect("a fresh envelope is served on local state");
    redis.resume();
}

#[tokio::test]
async fn in_local_fallback_a_blocked_identity_whose_recheck_fails_stays_blocked() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, DENIALS_BLOCK),
        ..Options::default()
    })
    .await;
    let to_a = a.raw(&a.alice).await;
    break_three_signatures(&to_a).await;
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    // Past the re-check interval, the next call asks the store: frozen.
    tokio::time::sleep(Duration::from_millis(
        sealgate::policy::anomaly::RECHECK_MS as u64 + 100,
    ))
    .await;
    redis.pause();
    let before = a.backend_calls();
    let s = refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    assert!(s.message().contains("denials detector"), "{}", s.message());
    assert!(mode_is(&a.gateway, "local"));
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    assert_eq!(a.backend_calls(), before);
    // Another identity is served on local state meanwhile.
    let to_bob = a.raw(&a.bob).await;
    to_bob
        .send_payload(GET_MEPS)
        .await
        .expect("bob is served locally");
    redis.resume();
}

#[tokio::test]
async fn an_unblock_while_the_store_is_away_fails_and_lifts_nothing() {
    let redis = Redis::start();
    let a = TestGateway::start_with(Options {
        config_extra: local_state(&redis, DENIALS_BLOCK),
        ..Options::default()
    })
    .await;
    let root = a.enroll("root", None, &[], true).await;
    let b = a.replica().await;
    let to_a = a.raw(&a.alice).await;
    let to_b = a.raw_to(&a.alice, b.addr).await;
    break_three_signatures(&to_a).await;
    refused(
        to_b.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    let admin_a = a.client_to(&root, a.addr).await;
    redis.pause();
    match admin_a.admin_unblock("alice").await {
        Ok(v) => panic!("an unblock only one replica could apply was reported done: {v}"),
        Err(ClientError::Denied {
            code,
            reason,
            message,
        }) => {
            assert_eq!(code, Code::Unavailable, "{message}");
            assert_eq!(reason.as_deref(), Some("STATE_UNAVAILABLE"), "{message}");
            assert!(message.contains("nothing was unblocked"), "{message}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
    // Still blocked here, where the unblock was asked.
    refused(
        to_a.send_payload(GET_MEPS).await,
        Code::PermissionDenied,
        "IDENTITY_BLOCKED",
    );
    redis.resume();
    eventually(10, "A is shared again", async || {
        mode_is(&a.gateway, "shared")
    })
    .await;
    let lifted = admin_a
        .admin_unblock("alice")
        .await
        .expect("the unblock passes with the store back");
    assert_eq!(lifted["lifted"], 1, "{lifted}");
    to_a.send_payload(GET_MEPS).await.expect("A serves alice");
    eventually(3, "B lifts its copy", async || {
        to_b.send_payload(GET_MEPS).await.is_ok()
    })
    .await;
}
