//! The audit trail as a transparency log (docs/AUDIT.md, "The Merkle
//! log"): every line of the chain is a leaf of an RFC 6962 tree whose
//! leaf index is the line's `seq`; checkpoints sign its head as a C2SP
//! checkpoint note with the audit key under the log's origin.
//!
//! [`Transparency`] is what the writer, the witness task and the
//! `AuditService` share: the tree's stored hashes (tiles on disk, or in
//! memory for a memory trail), the leaves the writer appended but has not
//! stored yet, the latest signed and the latest cosigned checkpoint
//! (watch channels), and a bounded index from a request's digest to its
//! record for receipts. The writer alone appends (it keeps the tree's
//! right edge, a [`crate::tlog::Frontier`], itself); everyone else reads.
//! It never holds a lock across a network call, and never hands out a
//! checkpoint that is not signed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::watch;

use crate::tlog::{
    inclusion_proof, Checkpoint, CheckpointError, Hash, HashSource, KeyError, KeyName, MemoryTree,
    MemoryTreeError, NoteError, SignatureType, SignedNote, SignerKey, TileError, TileStore,
    VerifierKey,
};

/// Records a receipt can be found for without reading the files, at most
/// (the most recent ones), unless configured otherwise.
pub const DEFAULT_RECEIPT_INDEX: usize = 10_000;

/// Staged leaves that make a store due at the next tick: four level-0
/// tiles' worth (well under the staging bound of 4,096).
pub const STORE_LEAVES: usize = 1024;

/// The longest staged leaves wait for a store when no checkpoint needs
/// them sooner.
pub const STORE_EVERY: Duration = Duration::from_secs(1);

/// Why the log could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransparencyError {
    /// The tree of that size is not stored yet (the writer stores its
    /// leaves every tick): ask again shortly.
    #[error("tree size {size} is not stored yet (stored: {stored})")]
    NotYetStored {
        /// The size asked for.
        size: u64,
        /// The size stored.
        stored: u64,
    },
    /// The tile store failed.
    #[error("transparency log store: {0}")]
    Tiles(#[from] TileError),
    /// The in-memory tree failed.
    #[error("transparency log (memory): {0}")]
    Memory(#[from] MemoryTreeError),
    /// The origin is not a valid note key name.
    #[error("audit log origin: {0}")]
    Origin(#[from] KeyError),
    /// A checkpoint could not be built.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// A note could not be signed.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// Where the tree's hashes are kept.
#[derive(Debug)]
pub enum Store {
    /// C2SP tiles in `[audit] tlog_dir` (a gateway).
    Tiles(TileStore),
    /// In memory (a memory trail: tests).
    Memory(MemoryTree),
}

impl Store {
    /// Leaves stored.
    pub fn size(&self) -> u64 {
        match self {
            Store::Tiles(t) => t.size(),
            Store::Memory(m) => m.size(),
        }
    }

    fn append(&mut self, leaves: &[Hash]) -> Result<u64, TransparencyError> {
        match self {
            Store::Tiles(t) => Ok(t.append(leaves)?),
            Store::Memory(m) => {
                for l in leaves {
                    m.push(*l);
                }
                Ok(m.size())
            }
        }
    }
}

/// A signed checkpoint and where it is in the trail.
#[derive(Debug, Clone)]
pub struct Published {
    /// The checkpoint (origin, size, root).
    pub checkpoint: Checkpoint,
    /// Its note: the log's signature, and witnesses' cosignatures once
    /// cosigned.
    pub note: SignedNote,
}

impl Published {
    /// The tree size (the `seq` of the checkpoint line that carries it).
    pub fn size(&self) -> u64 {
        self.checkpoint.size()
    }
}

/// A request's record, as indexed for receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Its `seq`: its leaf index.
    pub seq: u64,
    /// The client id it names (`None`: no valid identity).
    pub client_id: Option<String>,
    /// The record's exact line (the leaf's bytes).
    pub line: Arc<str>,
}

#[derive(Debug, Default)]
struct ReceiptIndex {
    capacity: usize,
    order: VecDeque<[u8; 32]>,
    by_digest: HashMap<[u8; 32], IndexedRecord>,
}

/// The log the writer appends to and the readers prove from.
#[derive(Debug)]
pub struct Transparency {
    signer: SignerKey,
    store: Mutex<Store>,
    pending: Mutex<Vec<Hash>>,
    signed: watch::Sender<Option<Arc<Published>>>,
    cosigned: watch::Sender<Option<Arc<Published>>>,
    index: Mutex<ReceiptIndex>,
    demand: AtomicBool,
    /// The single-writer lock on the tile directory, held while this lives.
    _lock: Option<std::fs::File>,
}

impl Transparency {
    /// A log under `origin` signed with the audit `key`, over `store`
    /// (holding `lock`, if any, as long as it lives).
    pub fn new(
        origin: &str,
        key: &SigningKey,
        store: Store,
        lock: Option<std::fs::File>,
        receipt_index: usize,
    ) -> Result<Transparency, TransparencyError> {
        let signer = SignerKey::from_seed(
            KeyName::new(origin)?,
            SignatureType::Ed25519,
            &key.to_bytes(),
        );
        Ok(Transparency {
            signer,
            store: Mutex::new(store),
            pending: Mutex::new(Vec::new()),
            signed: watch::channel(None).0,
            cosigned: watch::channel(None).0,
            index: Mutex::new(ReceiptIndex {
                capacity: receipt_index,
                ..ReceiptIndex::default()
            }),
            demand: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// A log kept in memory (a memory trail).
    pub fn memory(origin: &str, key: &SigningKey) -> Result<Transparency, TransparencyError> {
        Transparency::new(
            origin,
            key,
            Store::Memory(MemoryTree::new()),
            None,
            DEFAULT_RECEIPT_INDEX,
        )
    }

    /// The log's origin (its checkpoints' first line and key name).
    pub fn origin(&self) -> &str {
        self.signer.verifier().name().as_str()
    }

    /// The note verifier key of the log: what a witness or a client is
    /// configured with (its text is a `vkey`).
    pub fn verifier(&self) -> &VerifierKey {
        self.signer.verifier()
    }

    /// Signs the checkpoint of the tree of `size` leaves with head `root`
    /// (the writer's frontier); does not publish it.
    pub fn sign(&self, size: u64, root: &Hash) -> Result<Published, TransparencyError> {
        let checkpoint = Checkpoint::new(self.origin(), size, root.0)?;
        let note = SignedNote::sign(checkpoint.to_note_text()?, &self.signer)?;
        Ok(Published { checkpoint, note })
    }

    /// Makes `p` the latest signed checkpoint (once its line is in the
    /// trail): the witness task and waiting receipts see it.
    pub fn publish(&self, p: Arc<Published>) {
        self.signed.send_replace(Some(p));
    }

    /// The latest signed checkpoint, as it changes.
    pub fn subscribe_signed(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.signed.subscribe()
    }

    /// The latest checkpoint with a quorum of cosignatures, as it changes.
    pub fn subscribe_cosigned(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.cosigned.subscribe()
    }

    /// Records a checkpoint that reached its quorum (its note carries the
    /// cosignatures); an older one than the latest is ignored.
    pub fn record_cosigned(&self, p: Arc<Published>) {
        self.cosigned.send_if_modified(|latest| {
            if latest.as_ref().is_some_and(|l| l.size() >= p.size()) {
                return false;
            }
            *latest = Some(p);
            true
        });
    }

    /// Asks the writer for a checkpoint at its next tick (a receipt is
    /// waiting for one that covers its record).
    pub fn demand_checkpoint(&self) {
        self.demand.store(true, Ordering::Release);
    }

    /// Whether a checkpoint was asked for since the last call (the writer).
    pub fn take_demand(&self) -> bool {
        self.demand.swap(false, Ordering::AcqRel)
    }

    /// Queues one leaf hash for the store (the writer, per line).
    pub fn stage(&self, leaf: Hash) {
        if let Ok(mut p) = self.pending.lock() {
            p.push(leaf);
        }
    }

    /// Leaves staged and not stored yet.
    pub fn staged(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// Whether the staged leaves are to be stored now, `since` the last
    /// store: when the latest signed checkpoint is larger than the stored
    /// tree (its receipts and its consistency proof for the witnesses
    /// wait for them), when a tile's worth or more is staged
    /// ([`STORE_LEAVES`]), or when [`STORE_EVERY`] has passed. Storing
    /// costs a few files written and fsynced whatever the number of
    /// leaves, so it is not done at every 20 ms tick under load; nothing
    /// waits on it but receipts and witnesses (the trail's lines are
    /// written before their calls are answered, and the tree is rebuilt
    /// from them at start).
    pub fn store_due(&self, since: Duration) -> bool {
        let staged = self.staged();
        if staged == 0 {
            return false;
        }
        staged >= STORE_LEAVES
            || since >= STORE_EVERY
            || self
                .signed
                .borrow()
                .as_ref()
                .is_some_and(|p| p.size() > self.stored_size())
    }

    /// Moves the staged leaves into the store (the writer's thread, off
    /// the request path); on failure they stay staged for the next call.
    pub fn flush(&self) -> Result<u64, TransparencyError> {
        let leaves = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => Vec::new(),
        };
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if leaves.is_empty() {
            return Ok(store.size());
        }
        match store.append(&leaves) {
            Ok(size) => Ok(size),
            Err(e) => {
                drop(store);
                if let Ok(mut p) = self.pending.lock() {
                    let later = std::mem::take(&mut *p);
                    *p = leaves;
                    p.extend(later);
                }
                Err(e)
            }
        }
    }

    /// Leaves stored (proofs are answered up to this size).
    pub fn stored_size(&self) -> u64 {
        self.store.lock().map_or(0, |s| s.size())
    }

    fn with_source<T>(
        &self,
        size: u64,
        f: impl FnOnce(&Store) -> Result<T, TransparencyError>,
    ) -> Result<T, TransparencyError> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if size > store.size() {
            return Err(TransparencyError::NotYetStored {
                size,
                stored: store.size(),
            });
        }
        f(&store)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TransparencyError> {
        self.with_source(size, |s| match s {
            Store::Tiles(t) => Ok(t.inclusion_proof(index, size)?),
            Store::Memory(m) => Ok(inclusion_proof(m, index, size)?),
        })
    }

    /// The consistency proof from the tree of `old` leaves to `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TransparencyError> {
        self.with_source(new, |s| match s {
            Store::Tiles(t) => Ok(t.consistency_proof(old, new)?),
            Store::Memory(m) => Ok(crate::tlog::consistency_proof(m, old, new)?),
        })
    }

    /// The hash of the complete subtree of 2^`height` leaves at `index`
    /// (the writer rebuilding its frontier at start).
    pub fn complete_subtree(&self, height: u8, index: u64) -> Result<Hash, TransparencyError> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        match &*store {
            Store::Tiles(t) => Ok(t.complete_subtree(height, index)?),
            Store::Memory(m) => Ok(m.complete_subtree(height, index)?),
        }
    }

    /// Indexes a request's record by the digest its response is bound to
    /// (the writer, per request record with a digest).
    pub fn index_request(&self, digest: [u8; 32], record: IndexedRecord) {
        let Ok(mut idx) = self.index.lock() else {
            return;
        };
        if idx.capacity == 0 {
            return;
        }
        if idx.by_digest.insert(digest, record).is_none() {
            idx.order.push_back(digest);
        }
        while idx.order.len() > idx.capacity {
            if let Some(old) = idx.order.pop_front() {
                idx.by_digest.remove(&old);
            }
        }
    }

    /// The record bound to `digest`, if still indexed.
    pub fn lookup(&self, digest: &[u8; 32]) -> Option<IndexedRecord> {
        self.index.lock().ok()?.by_digest.get(digest).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaf_hash, verify_consistency, verify_inclusion, Frontier};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    // A store writes and fsyncs files whatever it holds: due when a
    // checkpoint needs its proofs, a tile's worth is staged, or a second
    // passed; never for nothing.
    #[test]
    fn a_store_is_due_for_a_checkpoint_a_full_batch_or_after_a_second() {
        let t = Transparency::memory("example.org/sealgate-audit", &key()).expect("test value");
        let quick = Duration::from_millis(20);
        assert!(
            !t.store_due(STORE_EVERY),
            "nothing staged: nothing to store"
        );
        let mut frontier = Frontier::new();
        for i in 0u8..10 {
            let leaf = leaf_hash(&[i]);
            frontier.push(leaf);
            t.stage(leaf);
        }
        assert!(!t.store_due(quick), "a few leaves wait for the next store");
        assert!(t.store_due(STORE_EVERY), "but not longer than STORE_EVERY");
        // A checkpoint of the 10 leaves is published: its receipts and
        // its witnesses need the proofs now.
        let p = t.sign(10, &frontier.root()).expect("sign");
        t.publish(Arc::new(p));
        assert!(t.store_due(quick), "a checkpoint past the stored tree");
        assert_eq!(t.flush().expect("store"), 10);
        assert!(!t.store_due(STORE_EVERY), "stored: nothing left");
        for i in 0..STORE_LEAVES {
            let leaf = leaf_hash(&i.to_be_bytes());
            t.stage(leaf);
            assert_eq!(
                t.store_due(quick),
                i + 1 >= STORE_LEAVES,
                "at {} staged",
                i + 1
            );
        }
    }

    #[test]
    fn staged_leaves_are_proven_once_flushed() {
        let t = Transparency::memory("example.org/sealgate-audit", &key()).expect("test value");
        let mut frontier = Frontier::new();
        for i in 0u8..10 {
            let leaf = leaf_hash(&[i]);
            frontier.push(leaf);
            t.stage(leaf);
        }
        assert!(matches!(
            t.inclusion_proof(3, 10),
            Err(TransparencyError::NotYetStored {
                size: 10,
                stored: 0
            })
        ));
        assert_eq!(t.flush().expect("test value"), 10);
        let root = frontier.root();
        let proof = t.inclusion_proof(3, 10).expect("test value");
        verify_inclusion(&leaf_hash(&[3]), 3, 10, &proof, &root).expect("test value");
        let mut small = Frontier::new();
        for i in 0u8..4 {
            small.push(leaf_hash(&[i]));
        }
        let c = t.consistency_proof(4, 10).expect("test value");
        verify_consistency(4, 10, &c, &small.root(), &root).expect("test value");
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_the_logs_vkey() {
        let t = Transparency::memory("example.org/sealgate-audit", &key()).expect("test value");
        let p = t.sign(5, &leaf_hash(b"x")).expect("test value");
        let v = p
            .note
            .verify(std::slice::from_ref(t.verifier()))
            .expect("test value");
        assert_eq!(Checkpoint::from_note(&v).expect("test value").size(), 5);
        assert!(t
            .verifier()
            .to_string()
            .starts_with("example.org/sealgate-audit+"));
    }

    #[test]
    fn an_older_cosigned_checkpoint_never_replaces_a_newer_one() {
        let t = Transparency::memory("o", &key()).expect("test value");
        let rx = t.subscribe_cosigned();
        t.record_cosigned(Arc::new(t.sign(9, &leaf_hash(b"a")).expect("test value")));
        t.record_cosigned(Arc::new(t.sign(4, &leaf_hash(b"b")).expect("test value")));
        assert_eq!(rx.borrow().as_ref().map(|p| p.size()), Some(9));
    }

    #[test]
    fn the_receipt_index_keeps_the_most_recent_records() {
        let t = Transparency::new("o", &key(), Store::Memory(MemoryTree::new()), None, 2)
            .expect("test value");
        for i in 0u8..3 {
            t.index_request(
                [i; 32],
                IndexedRecord {
                    seq: u64::from(i),
                    client_id: Some("c".into()),
                    line: Arc::from("{}"),
                },
            );
        }
        assert!(t.lookup(&[0; 32]).is_none());
        assert_eq!(t.lookup(&[2; 32]).map(|r| r.seq), Some(2));
    }

    #[test]
    fn a_demand_is_taken_once() {
        let t = Transparency::memory("o", &key()).expect("test value");
        assert!(!t.take_demand());
        t.demand_checkpoint();
        assert!(t.take_demand());
        assert!(!t.take_demand());
    }
}
