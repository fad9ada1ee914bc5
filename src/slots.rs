//! Capped counts per key (per source, per network, per identity), each unit
//! held by a [`Slot`] that frees itself on drop: the per-source and
//! per-identity budgets of the gateway's transport and of the enrollment
//! listener. It never decides a cap; its callers do. Each key with a live
//! slot also has one shared value (`V`, `()` unless asked), which every
//! slot of that key reaches: the identity's read hold, for its
//! connections.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open counts per key, each held by a [`Slot`]. A key is removed when its
/// count drops to zero, so the map never holds more keys than there are
/// live slots, and slots are only held alongside a semaphore permit
/// (the listener's handshake or connection cap): the map is bounded by
/// those.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash + Clone, V = ()> {
    counts: Mutex<HashMap<K, (usize, Arc<V>)>>,
}

impl<K: Eq + Hash + Clone, V: Default> Slots<K, V> {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Slots {
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (usize, Arc<V>)>> {
        // Every operation leaves the counts consistent.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of `cap` slots of `key`, or `None` when all are taken.
    pub fn try_take(self: &Arc<Self>, key: K, cap: usize) -> Option<Slot<K, V>> {
        let mut counts = self.lock();
        let (count, shared) = counts
            .entry(key.clone())
            .or_insert_with(|| (0, Arc::new(V::default())));
        if *count >= cap {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        let shared = shared.clone();
        Some(Slot {
            slots: self.clone(),
            key,
            shared,
        })
    }

    /// Keys holding a slot now.
    pub fn keys(&self) -> usize {
        self.lock().len()
    }
}

/// One taken slot of a key; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone, V = ()> {
    slots: Arc<Slots<K, V>>,
    key: K,
    shared: Arc<V>,
}

impl<K: Eq + Hash + Clone, V> Slot<K, V> {
    /// The value shared by every live slot of this key.
    pub fn shared(&self) -> &Arc<V> {
        &self.shared
    }
}

impl<K: Eq + Hash + Clone, V> Drop for Slot<K, V> {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, _)) = counts.get_mut(&self.key) {
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

    #[test]
    fn the_slots_of_a_key_share_one_value_while_any_is_live() {
        let slots: Arc<Slots<&str, std::sync::atomic::AtomicU32>> = Slots::new();
        let a1 = slots.try_take("a", 2).expect("first");
        let a2 = slots.try_take("a", 2).expect("second");
        let b = slots.try_take("b", 2).expect("another key");
        a1.shared().store(7, std::sync::atomic::Ordering::Relaxed);
        assert!(Arc::ptr_eq(a1.shared(), a2.shared()));
        assert!(!Arc::ptr_eq(a1.shared(), b.shared()));
        drop((a1, a2));
        let a3 = slots.try_take("a", 2).expect("again");
        assert_eq!(
            a3.shared().load(std::sync::atomic::Ordering::Relaxed),
            0,
            "a key with no live slot starts afresh"
        );
    }
}
