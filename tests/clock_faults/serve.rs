//! A real `sealgate serve` whose wall clock jumps while it serves, under
//! Debian's libfaketime (LD_PRELOAD; `FAKETIME_TIMESTAMP_FILE` re-read on
//! every call with `FAKETIME_NO_CACHE=1`, so the test moves the clock of
//! the running process). Only the wall clock moves: an NTP step does not
//! move CLOCK_MONOTONIC, so neither does this test
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`). The client runs in the test process
//! on the real clock and signs with whatever timestamp the step needs: the
//! real time (a client whose clock did not move) or the gateway's faked
//! time (a client on the same host, whose clock moved too).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use sealgate::client::Profile;
use sealgate::envelope::{self, Direction, Seal};
use sealgate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use sealgate::proto::{CallRequest, SignedEnvelope};

use crate::audit_common::{records, requests, wait_until, Setup};

const GET_MEPS: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":1}}}"#;
pub(crate) const MIN: i64 = 60_000;

/// Debian's libfaketime (multi-threaded variant, for tokio's threads).
pub(crate) fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is missing: `apt-get install faketime` (scripts/test.sh installs it)")
}

/// Moves the gateway's wall clock to `offset_ms` from the real time.
pub(crate) fn set_offset(file: &Path, offset_ms: i64) {
    // libfaketime's relative form: "+N" / "-N" seconds.
    let secs = offset_ms / 1000;
    let text = if secs >= 0 {
        format!("+{secs}\n")
    } else {
        format!("{secs}\n")
    };
    std::fs::write(file, text).expect("write the faketime file");
}

pub(crate) fn real_now_ms() -> i64 {
    sealgate::gateway::Clock::now_ms(&sealgate::gateway::SystemClock)
}

/// A client that seals with the timestamp it is told.
pub(crate) struct Raw {
    rpc: McpGatewayServiceClient<tonic::transport::Channel>,
    key: SigningKey,
    key_id: String,
    audience: String,
}

impl Raw {
    pub(crate) async fn connect(profile: &Path) -> Raw {
        let p = Profile::load(profile).expect("profile");
        let tls = sealgate::tls::client_config(&p.ca, &p.cert, &p.key).expect("tls config");
        let channel = sealgate::tls::connect_channel(&p.endpoint, &p.server_name, tls)
            .await
            .expect("connect");
        Raw {
            rpc: McpGatewayServiceClient::new(channel),
            key: sealgate::keys::load_signing_key(&p.signing_key).expect("signing key"),
            key_id: p.key_id.clone(),
            audience: p.audience.clone(),
        }
    }

    pub(crate) fn seal_at(&self, ts: i64) -> SignedEnvelope {
        envelope::seal(
            &self.key,
            Seal {
                direction: Direction::Request,
                audience: &self.audience,
                key_id: &self.key_id,
                timestamp_unix_ms: ts,
                nonce: envelope::random_nonce(),
                payload: Bytes::from_static(GET_MEPS),
                request_digest: None,
            },
        )
        .0
    }

    /// Ok, or the refusal's sealgate reason.
    pub(crate) async fn send(&self, env: SignedEnvelope) -> Result<(), String> {
        match self
            .rpc
            .clone()
            .call(CallRequest {
                envelope: Some(env),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) => Err(sealgate::error::reason_of(&s).unwrap_or_else(|| format!("{s:?}"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_whose_clock_jumps_accepts_no_replay_and_keeps_serving_honest_clients() {
    let lib = libfaketime();
    let s = Setup::new("path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"");
    let clock = s.dir.path().join("faketime.rc");
    set_offset(&clock, 0);
    let lib = lib.display().to_string();
    let clock_path = clock.display().to_string();
    let gw = s.serve_env(
        None,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock_path.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    // One connection for the whole test, made while the clocks agree: the
    // TLS verifier checks certificate validity on the gateway's clock too.
    let c = Raw::connect(&gw.profile).await;

    // 1. The clocks agree: an envelope is served once, its replay refused.
    let first = c.seal_at(real_now_ms());
    c.send(first.clone()).await.expect("served");
    assert_eq!(c.send(first.clone()).await, Err("REPLAYED_NONCE".into()));

    // 2. The gateway's clock goes back five minutes. A client whose clock
    // did not move is refused as from the future (the clocks disagree by
    // more than the skew); one whose clock moved with it is served: no
    // lockout.
    set_offset(&clock, -5 * MIN);
    assert_eq!(
        c.send(c.seal_at(real_now_ms())).await,
        Err("TIMESTAMP_FUTURE".into()),
        "the gateway's clock is really faked"
    );
    c.send(c.seal_at(real_now_ms() - 5 * MIN))
        .await
        .expect("a client on the same clock is served after the step back");

    // 3. Fifteen minutes ahead (past the replay store's hold): a client on
    // that clock is served, and the first envelope's nonce is forgotten.
    set_offset(&clock, 15 * MIN);
    assert_eq!(
        c.send(c.seal_at(real_now_ms())).await,
        Err("TIMESTAMP_STALE".into())
    );
    c.send(c.seal_at(real_now_ms() + 15 * MIN))
        .await
        .expect("a client on the same clock is served after the step ahead");

    // 4. Back to the true time: the first envelope is fresh again and its
    // nonce was forgotten; the replay is still refused. A new envelope is
    // served at once.
    set_offset(&clock, 0);
    assert_eq!(
        c.send(first.clone()).await,
        Err("REPLAYED_NONCE".into()),
        "a replay after the clock came back"
    );
    c.send(c.seal_at(real_now_ms()))
        .await
        .expect("an honest client is served when the clock is right again");

    // The audit trail: four calls allowed, and the two replays denied as
    // replays (at the envelope stage: the backend never saw them).
    let audit = s.path("audit.jsonl");
    assert!(
        wait_until(10, || requests(&records(&audit), "allowed").len() == 4),
        "allowed records: {:?}",
        requests(&records(&audit), "allowed")
    );
    let recs = records(&audit);
    let replays: Vec<_> = requests(&recs, "denied")
        .into_iter()
        .filter(|r| r["reason"] == "REPLAYED_NONCE")
        .collect();
    assert_eq!(replays.len(), 2, "{replays:?}");
    for r in replays {
        assert_eq!(r["stage"], "envelope", "{r}");
    }
    gw.stop();
}
