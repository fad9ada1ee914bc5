//! Capped counts per key (per source, per network, per identity), each unit
//! held by a [`Slot`] that frees itself on drop: the per-source and
//! per-identity budgets of the gateway's transport and of the enrollment
//! listener. It never decides a cap; its callers do.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open counts per key, each held by a [`Slot`]. A key is removed when its
/// count drops to zero, so the map never holds more keys than there are
/// live slots, and slots are only held alongside a semaphore permit
/// (the listener's handshake or connection cap): the map is bounded by
/// those.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash + Clone> {
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Slots {
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        // Every operation leaves the counts consistent.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of `cap` slots of `key`, or `None` when all are taken.
    pub fn try_take(self: &Arc<Self>, key: K, cap: usize) -> Option<Slot<K>> {
        let mut counts = self.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= cap {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Keys holding a slot now.
    pub fn keys(&self) -> usize {
        self.lock().len()
    }
}

/// One taken slot of a key; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_forgotten_when_free() {
        let slots: Arc<Slots<&str>> = Slots::new();
        let a1 = slots.try_take("a", 2).expect("first");
        let a2 = slots.try_take("a", 2).expect("second");
        assert!(slots.try_take("a", 2).is_none(), "over the cap");
        let b = slots.try_take("b", 2).expect("another key");
        assert!(slots.try_take("c", 0).is_none());
        assert_eq!(slots.keys(), 2, "a refused key leaves no entry");
        drop(a1);
        let a3 = slots.try_take("a", 2).expect("a slot was freed");
        drop((a2, a3, b));
        assert_eq!(slots.keys(), 0, "no live slot, no entry");
    }
}
