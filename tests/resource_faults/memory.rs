//! Near its memory limit (here `RLIMIT_AS`, set on the running process just
//! above the address space it uses) the gateway refuses new calls with
//! MEMORY_PRESSURE instead of aborting on a failed allocation, records the
//! refusals, reaches no backend, and serves again once the limit is lifted.

use std::time::{Duration, Instant};

use crate::audit_common::{call, records, requests, Setup};
use crate::{prlimit, status_bytes, AUDIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_memory_limit_the_gateway_refuses_new_calls_and_says_so_then_serves_again() {
    let setup = Setup::new(AUDIT);
    let mut gw = setup.serve();
    let pid = gw.pid();
    let client = gw.client().await;
    call(&client).await.expect("served without a limit");
    let allowed_before = requests(&records(&setup.path("audit.jsonl")), "allowed").len();

    // The address space in use is 95% of the new limit: over the 90%
    // watermark, with room left for what a refusal allocates.
    let used = status_bytes(pid, "VmSize:");
    let limit = used / 95 * 100;
    prlimit(pid, &format!("--as={limit}:"));
    // A reading is at most 100 ms old.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..3 {
        let (code, reason) = call(&client).await.expect_err("refused near the limit");
        assert_eq!(code, tonic::Code::Unavailable, "{reason:?}");
        assert_eq!(reason.as_deref(), Some("MEMORY_PRESSURE"));
    }
    assert!(
        gw.child_alive(),
        "the gateway is still running:\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text()
            .contains("new calls are refused with MEMORY_PRESSURE"),
        "the log says so:\n{}",
        gw.log_text()
    );

    // Lifted: served again without a restart.
    prlimit(pid, "--as=unlimited:");
    let start = Instant::now();
    while call(&client).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    gw.stop();
    let recs = records(&setup.path("audit.jsonl"));
    let refused: Vec<_> = recs
        .iter()
        .filter(|r| r["type"] == "request" && r["reason"] == "MEMORY_PRESSURE")
        .collect();
    assert!(!refused.is_empty(), "the first refusal is recorded in full");
    assert_eq!(refused[0]["outcome"], "denied");
    // Nothing refused reached the backend: the only allowed calls are the
    // one before the limit and the one after.
    assert_eq!(
        requests(&recs, "allowed").len(),
        allowed_before + 1,
        "no refused call was served"
    );
    let (code, report) = setup.verify(&[setup.path("audit.jsonl")], false);
    assert_eq!(code, 0, "{report}");
}
