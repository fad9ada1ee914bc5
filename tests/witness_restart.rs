//! The witness's memory across restarts: killed (SIGKILL) and restarted,
//! it still refuses what it refused before; an unusable state (open to
//! others, corrupt, locked by another witness), or an unusable key,
//! refuses the start with a clear error instead of starting from zero.

#[path = "witness_common/mod.rs"]
mod witness_common;

use sealgate::tlog::Hash;
use witness_common::{chmod, mode, Setup, ORIGIN};

#[tokio::test]
async fn a_killed_witness_restarts_with_what_it_cosigned() {
    let s = Setup::new();
    let client = s.client();
    let w = s.start();
    assert_eq!(w.post(&client, s.good(0, 10)).await.status, 200);
    assert_eq!(w.post(&client, s.good(10, 30)).await.status, 200);
    // The answer came after the state was durable: kill at once.
    w.kill();
    assert_eq!(mode(&s.state_file()), 0o600);

    let w = s.start();
    // A client (or a log) starting from zero is told 30.
    let a = w.post(&client, s.good(0, 12)).await;
    assert_eq!((a.status, a.text()), (409, "30\n".to_owned()));
    // Smaller than 30, claimed from 30.
    let a = w.post(&client, s.body(30, vec![], s.note(20))).await;
    assert_eq!(a.status, 400, "{}", a.text());
    // A fork of the 30 it cosigned.
    let forged = s.note_with(ORIGIN, 40, Hash([0xbb; 32]), &s.log);
    let a = w.post(&client, s.body(30, s.proof(30, 40), forged)).await;
    assert_eq!(a.status, 422, "{}", a.text());
    // The same size with another root: 409 and the size (c2sp.org/
    // tlog-witness: "If they don't match, the witness MUST respond with a
    // 409 Conflict.").
    let rewritten = s.note_with(ORIGIN, 30, Hash([0xbb; 32]), &s.log);
    let a = w.post(&client, s.body(30, vec![], rewritten)).await;
    assert_eq!((a.status, a.text()), (409, "30\n".to_owned()));
    // And the log's real continuation is cosigned.
    assert_eq!(w.post(&client, s.good(30, 40)).await.status, 200);
    w.kill();
    let w = s.start();
    let a = w.post(&client, s.good(30, 50)).await;
    assert_eq!((a.status, a.text()), (409, "40\n".to_owned()));
}

#[tokio::test]
async fn an_unusable_state_refuses_the_start() {
    let s = Setup::new();
    let client = s.client();
    let w = s.start();
    assert_eq!(w.post(&client, s.good(0, 10)).await.status, 200);

    // A second witness on the same state, while the first runs.
    let err = s.start_refused();
    assert!(err.contains("another witness uses the state"), "{err}");
    w.kill();

    let file = s.state_file();
    let good = std::fs::read(&file).expect("state");
    chmod(&file, 0o644);
    let err = s.start_refused();
    assert!(
        err.contains("open to group or others (mode 644)") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&file, 0o600);

    // Corrupt: truncated, emptied, or a state of size 3 not cosigned by
    // this witness (a rollback attempt by someone without its key).
    let rolled_back = s.note(3).to_bytes();
    for (bytes, why) in [
        (good[..good.len() / 2].to_vec(), "not a note"),
        (Vec::new(), "not a note"),
        (rolled_back, "no valid cosignature by this witness's key"),
    ] {
        std::fs::write(&file, &bytes).expect("write");
        let err = s.start_refused();
        assert!(
            err.contains("is unusable") && err.contains(why) && err.contains(ORIGIN),
            "{err}"
        );
    }

    // Restored, it starts and still knows 10.
    std::fs::write(&file, &good).expect("write");
    let w = s.start();
    let a = w.post(&client, s.good(0, 12)).await;
    assert_eq!((a.status, a.text()), (409, "10\n".to_owned()));
}

#[test]
fn the_witness_key_is_private_and_never_overwritten() {
    let s = Setup::new();
    assert_eq!(mode(&s.path("w.skey")), 0o600);
    let text = std::fs::read_to_string(s.path("w.skey")).expect("skey");
    assert!(text.starts_with("PRIVATE+KEY+witness.test/w1+"), "{text}");
    // Not replaced without --force.
    let again = s.sealgate(&[
        "audit",
        "witness-key",
        "--name",
        "witness.test/w1",
        "--out",
        "w.skey",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("w.skey")).expect("skey"),
        text
    );
    let bad = s.sealgate(&[
        "audit",
        "witness-key",
        "--name",
        "a b",
        "--out",
        "other.skey",
    ]);
    assert!(!bad.status.success());
    assert!(!s.path("other.skey").exists());

    // Open to the group: the witness does not start, and says why.
    chmod(&s.path("w.skey"), 0o640);
    let err = s.start_refused();
    assert!(
        err.contains("w.skey") && err.contains("readable by group or others"),
        "{err}"
    );
    assert!(!err.contains(&text[12..]), "the key never appears: {err}");
    chmod(&s.path("w.skey"), 0o600);
    // The TLS key too.
    chmod(&s.path("w.key"), 0o644);
    let err = s.start_refused();
    assert!(err.contains("w.key"), "{err}");
}
