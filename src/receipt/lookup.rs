//! The gateway's side: a receipt for one of the caller's records, from the
//! [`Transparency`] handle the writer fills: the record from the receipt
//! index, the checkpoint from the latest published one, the proof from the
//! stored tree.
//!
//! Which checkpoint: the latest cosigned one when it covers the record;
//! otherwise, while witnesses have cosigned none that covers it, the
//! gateway waits (up to the caller's `wait_ms`) for one, having asked the
//! writer for a checkpoint; once witnesses have cosigned any checkpoint it
//! keeps waiting for a cosigned one, and when the wait ends it answers
//! with the latest signed one that covers the record (a receipt the log
//! vouches for, which a client requiring witnesses refuses and asks for
//! again later). Never an answer that says more about a record that is
//! not the caller's than about one that does not exist.

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

/// The receipt of `client_id`'s record bound to `digest`, waiting up to
/// `wait` for a checkpoint that covers it (asking the writer for one).
pub async fn receipt_for(
    log: &Transparency,
    digest: &[u8; 32],
    client_id: &str,
    wait: Duration,
) -> Result<Receipt, LookupError> {
    let deadline = Instant::now() + wait;
    let mut demanded = false;
    loop {
        let now = Instant::now();
        let last_try = now >= deadline;
        match attempt(log, digest, client_id, last_try) {
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

/// One look: the receipt, or why not now. `settle`: the wait is over, so
/// a signed checkpoint does when no cosigned one covers the record.
fn attempt(
    log: &Transparency,
    digest: &[u8; 32],
    client_id: &str,
    settle: bool,
) -> Result<Receipt, LookupError> {
    let record = log.lookup(digest).ok_or(LookupError::NotFound)?;
    if record.client_id.as_deref() != Some(client_id) {
        return Err(LookupError::NotFound);
    }
    let covers = |p: &Option<Arc<Published>>| p.clone().filter(|p| p.size() > record.seq);
    let cosigned = log.subscribe_cosigned().borrow().clone();
    let witnessed = cosigned.is_some();
    let chosen = match covers(&cosigned) {
        Some(p) => p,
        None if witnessed && !settle => return Err(LookupError::Pending),
        None => covers(&log.subscribe_signed().borrow().clone()).ok_or(LookupError::Pending)?,
    };
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
        let r = receipt_for(&log, &DIGEST, "alice", Duration::ZERO)
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
                receipt_for(&log, &digest, who, Duration::from_millis(50)).await,
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
            async move { receipt_for(&log, &DIGEST, "alice", Duration::from_secs(10)).await }
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
                receipt_for(&log, &DIGEST, "alice", wait).await,
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
            receipt_for(&log, &DIGEST, "alice", Duration::ZERO).await,
            Err(LookupError::Pending)
        ));
        log.flush().expect("flush");
        let r = receipt_for(&log, &DIGEST, "alice", Duration::ZERO)
            .await
            .expect("receipt once stored");
        assert_eq!(r.tree_size, 4);
    }

    #[tokio::test]
    async fn a_cosigned_checkpoint_is_preferred_once_witnesses_cosign() {
        let (log, frontier) = log_with_record(4);
        publish(&log, &frontier);
        let old = log.sign(1, &leaf_hash(b"x")).expect("sign");
        log.record_cosigned(Arc::new(old));
        // Witnesses are at work but none covers the record: the signed
        // one only once the wait is over.
        let r = receipt_for(&log, &DIGEST, "alice", Duration::from_millis(60))
            .await
            .expect("receipt");
        assert_eq!(r.tree_size, 4);
        let covering = log.sign(frontier.size(), &frontier.root()).expect("sign");
        log.record_cosigned(Arc::new(covering));
        let r = receipt_for(&log, &DIGEST, "alice", Duration::ZERO)
            .await
            .expect("receipt");
        assert_eq!(r.tree_size, 4);
    }
}
