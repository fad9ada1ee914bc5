//! The gateway's side: a receipt for one of the caller's records, from the
//! [`Transparency`] handle the writer fills: the record from the receipt
//! index, the checkpoint from the latest published one, the proof from the
//! stored tree.
//!
//! Which checkpoint: when the gateway has witnesses (`[audit.witness]`),
//! only the latest one a quorum cosigned, and only if it covers the
//! record: otherwise the gateway asks the writer for a checkpoint and
//! waits (up to the caller's `wait_ms`) for the witnesses to cosign one
//! that does, and answers `Pending` when the wait ends (never a merely
//! signed checkpoint: a receipt from a witnessed gateway always carries
//! the quorum's cosignatures). Without witnesses, the latest signed
//! checkpoint that covers the record, waited for the same way. Never an
//! answer that says more about a record that is not the caller's than
//! about one that does not exist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::Receipt;
use crate::audit::transparency::{Published, Transparency, TransparencyError};

/// The longest a caller may ask to wait for a checkpoint.
pub const MAX_WAIT_MS: u32 = 30_000;

/// How often a waiting receipt looks again (the writer stores its leaves
/// and writes demanded checkpoints at its ticks).
const POLL: Duration = Duration::from_millis(20);

/// Why no receipt was built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No record of the caller's bears this digest (none at all, another
    /// client's, or one that left the bounded receipt index).
    #[error("no record of this client's bears this request digest")]
    NotFound,
    /// No checkpoint covers the record yet, or its proof is not stored
    /// yet: ask again shortly.
    #[error("no published checkpoint covers this record yet")]
    Pending,
    /// The stored tree could not answer.
    #[error(transparent)]
    Log(#[from] TransparencyError),
}

/// Which checkpoints a receipt may be built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// The gateway has no witnesses: the log's signed checkpoints.
    Signed,
    /// The gateway has witnesses: only checkpoints a quorum cosigned.
    Cosigned,
}

/// The receipt of `client_id`'s record bound to `digest`, waiting up to
/// `wait` for a checkpoint of the `kind` that covers it (asking the
/// writer for one).
pub async fn receipt_for(
    log: &Transparency,
    digest: &[u8; 32],
    client_id: &str,
    wait: Duration,
    kind: Checkpoints,
) -> Result<Receipt, LookupError> {
    let deadline = Instant::now() + wait;
    let mut demanded = false;
    loop {
        let now = Instant::now();
        let last_try = now >= deadline;
        match attempt(log, digest, client_id, kind) {
            Err(LookupError::Pending) => {}
            other => return other,
        }
        // Asked for even without a wait: the next request finds it.
        if !demanded {
            log.demand_checkpoint();
            demanded = true;
        }
        if last_try {
            return Err(LookupError::Pending);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(now))).await;
    }
}

/// One look: the receipt, or why not now.
fn attempt(
    log: &Transparency,
    digest: &[u8; 32],
    client_id: &str,
    kind: Checkpoints,
) -> Result<Receipt, LookupError> {
    let record = log.lookup(digest).ok_or(LookupError::NotFound)?;
    if record.client_id.as_deref() != Some(client_id) {
        return Err(LookupError::NotFound);
    }
    let covers = |p: &Option<Arc<Published>>| p.clone().filter(|p| p.size() > record.seq);
    let latest = match kind {
        Checkpoints::Cosigned => log.subscribe_cosigned().borrow().clone(),
        Checkpoints::Signed => log.subscribe_signed().borrow().clone(),
    };
    let chosen = covers(&latest).ok_or(LookupError::Pending)?;
    let proof = match log.inclusion_proof(record.seq, chosen.size()) {
        Ok(proof) => proof,
        Err(TransparencyError::NotYetStored { .. }) => return Err(LookupError::Pending),
        Err(e) => return Err(e.into()),
    };
    Ok(Receipt {
        leaf_index: record.seq,
        tree_size: chosen.size(),
        record: record.line.as_bytes().to_vec(),
        inclusion_proof: proof,
        checkpoint: chosen.note.to_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::transparency::IndexedRecord;
    use crate::receipt::{verify_receipt, ReceiptError, ReceiptKeys};
    use crate::tlog::{leaf_hash, Frontier};
    use ed25519_dalek::SigningKey;

    const DIGEST: [u8; 32] = [9; 32];

    /// A memory log of `n` lines where line 2 is alice's request record
    /// with [`DIGEST`], all stored; no checkpoint published.
    fn log_with_record(n: u64) -> (Transparency, Frontier) {
        let log = Transparency::memory("sealgate.test/audit", &SigningKey::from_bytes(&[3; 32]))
            .expect("log");
        let mut frontier = Frontier::new();
        for seq in 0..n {
            let line = if seq == 2 {
                format!(
                    "{{\"seq\":2,\"type\":\"request\",\"client_id\":\"alice\",\"request_digest\":\"{}\"}}",
                    hex::encode(DIGEST)
                )
            } else {
                format!("{{\"seq\":{seq},\"type\":\"event\"}}")
            };
            let leaf = leaf_hash(line.as_bytes());
            frontier.push(leaf);
            log.stage(leaf);
            if seq == 2 {
                log.index_request(
                    DIGEST,
                    IndexedRecord {
                        seq,
                        client_id: Some("alice".into()),
                        line: Arc::from(line.as_str()),
                    },
                );
            }
        }
        log.flush().expect("flush");
        (log, frontier)
    }

    fn publish(log: &Transparency, frontier: &Frontier) {
        let p = log.sign(frontier.size(), &frontier.root()).expect("sign");
        log.publish(Arc::new(p));
    }

    #[tokio::test]
    async fn a_published_checkpoint_gives_a_receipt_that_verifies() {
        let (log, frontier) = log_with_record(5);
        publish(&log, &frontier);
        let r = receipt_for(&log, &DIGEST, "alice", Duration::ZERO, Checkpoints::Signed)
            .await
            .expect("receipt");
        assert_eq!((r.leaf_index, r.tree_size), (2, 5));
        let keys = ReceiptKeys::log_only(log.verifier().clone());
        verify_receipt(&r, &DIGEST, &keys).expect("verifies");
        assert_eq!(
            verify_receipt(&r, &[8; 32], &keys),
            Err(ReceiptError::RecordDigest)
        );
    }

    #[tokio::test]
    async fn another_clients_digest_is_not_found_like_an_unknown_one() {
        let (log, frontier) = log_with_record(5);
        publish(&log, &frontier);
        for (digest, who) in [(DIGEST, "bob"), ([1; 32], "alice")] {
            assert!(matches!(
                receipt_for(
                    &log,
                    &digest,
                    who,
                    Duration::from_millis(50),
                    Checkpoints::Signed
                )
                .await,
                Err(LookupError::NotFound)
            ));
        }
        assert!(!log.take_demand(), "a refused lookup asks for nothing");
    }

    #[tokio::test]
    async fn an_uncovered_record_demands_a_checkpoint_and_waits_for_it() {
        let (log, frontier) = log_with_record(3);
        let log = Arc::new(log);
        let waiter = tokio::spawn({
            let log = log.clone();
            async move {
                receipt_for(
                    &log,
                    &DIGEST,
                    "alice",
                    Duration::from_secs(10),
                    Checkpoints::Signed,
                )
                .await
            }
        });
        let start = Instant::now();
        while !log.take_demand() {
            assert!(start.elapsed() < Duration::from_secs(5), "no demand");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publish(&log, &frontier);
        let r = waiter.await.expect("task").expect("receipt");
        assert_eq!(r.tree_size, 3);
    }

    #[tokio::test]
    async fn without_a_covering_checkpoint_the_wait_ends_pending() {
        let (log, _) = log_with_record(3);
        for wait in [Duration::from_millis(60), Duration::ZERO] {
            assert!(matches!(
                receipt_for(&log, &DIGEST, "alice", wait, Checkpoints::Signed).await,
                Err(LookupError::Pending)
            ));
            assert!(log.take_demand(), "a checkpoint is asked for ({wait:?})");
        }
    }

    #[tokio::test]
    async fn a_covering_checkpoint_whose_leaves_are_not_stored_yet_is_pending() {
        let (log, mut frontier) = log_with_record(3);
        // One more line, in the frontier (and a checkpoint over it) but not
        // yet stored by the writer's tick.
        let leaf = leaf_hash(b"{\"seq\":3}");
        frontier.push(leaf);
        log.stage(leaf);
        publish(&log, &frontier);
        assert!(matches!(
            receipt_for(&log, &DIGEST, "alice", Duration::ZERO, Checkpoints::Signed).await,
            Err(LookupError::Pending)
        ));
        log.flush().expect("flush");
        let r = receipt_for(&log, &DIGEST, "alice", Duration::ZERO, Checkpoints::Signed)
            .await
            .expect("receipt once stored");
        assert_eq!(r.tree_size, 4);
    }

    #[tokio::test]
    async fn with_witnesses_only_a_covering_cosigned_checkpoint_serves() {
        let (log, frontier) = log_with_record(4);
        publish(&log, &frontier);
        let old = log.sign(1, &leaf_hash(b"x")).expect("sign");
        log.record_cosigned(Arc::new(old));
        // A signed checkpoint covers the record, but the cosigned one does
        // not: pending, however long the wait, and a checkpoint is asked for.
        for wait in [Duration::from_millis(60), Duration::ZERO] {
            assert!(matches!(
                receipt_for(&log, &DIGEST, "alice", wait, Checkpoints::Cosigned).await,
                Err(LookupError::Pending)
            ));
            assert!(log.take_demand(), "a checkpoint is asked for ({wait:?})");
        }
        let covering = log.sign(frontier.size(), &frontier.root()).expect("sign");
        log.record_cosigned(Arc::new(covering));
        let r = receipt_for(
            &log,
            &DIGEST,
            "alice",
            Duration::ZERO,
            Checkpoints::Cosigned,
        )
        .await
        .expect("receipt");
        assert_eq!(r.tree_size, 4);
    }

    #[tokio::test]
    async fn with_witnesses_none_cosigned_yet_is_pending() {
        let (log, frontier) = log_with_record(4);
        publish(&log, &frontier);
        assert!(matches!(
            receipt_for(
                &log,
                &DIGEST,
                "alice",
                Duration::from_millis(40),
                Checkpoints::Cosigned
            )
            .await,
            Err(LookupError::Pending)
        ));
    }
}
