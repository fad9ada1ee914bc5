//! The per-source table of the `source_failures` detector: a map with an
//! age order beside it, so that making room in a full table costs a
//! bounded number of steps (not a scan of every source) under the mutex
//! the accept loop takes; and the key a source address is tracked by.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::restriction::Imposed;
use super::window::Burst;

/// The most entries one insertion looks at to make room. Blocked sources
/// are never forgotten: one met at the old end is moved to the young end
/// (it is looked at again only after every other entry), so a table full
/// of blocked sources costs this many steps per new source, no more.
pub(super) const MAX_EVICTION_STEPS: usize = 16;

/// Sources by key, and the same keys from least to most recently seen.
#[derive(Debug, Default)]
pub(super) struct SourceTable {
    map: HashMap<IpAddr, (SourceState, u64)>,
    order: BTreeMap<u64, IpAddr>,
    next: u64,
    /// Entries looked at to make room, ever (for tests: the work per
    /// insertion is bounded).
    pub(super) eviction_steps: u64,
}

impl SourceTable {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn contains_key(&self, key: &IpAddr) -> bool {
        self.map.contains_key(key)
    }

    pub(super) fn get(&self, key: &IpAddr) -> Option<&SourceState> {
        self.map.get(key).map(|(s, _)| s)
    }

    /// The entry, without changing its age.
    pub(super) fn get_mut(&mut self, key: &IpAddr) -> Option<&mut SourceState> {
        self.map.get_mut(key).map(|(s, _)| s)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&IpAddr, &SourceState)> {
        self.map.iter().map(|(k, (s, _))| (k, s))
    }

    fn stamp(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }

    /// The entry of `key`, created if missing, now the most recently seen
    /// (its `last_ms` set to `now_ms`).
    pub(super) fn seen(&mut self, key: IpAddr, now_ms: i64) -> &mut SourceState {
        let seq = self.stamp();
        let entry = self.map.entry(key).or_insert_with(|| (fresh(now_ms), 0));
        if entry.1 != 0 {
            self.order.remove(&entry.1);
        }
        entry.1 = seq;
        self.order.insert(seq, key);
        entry.0.last_ms = now_ms;
        &mut entry.0
    }

    /// The entry of `key`, created (as the most recently seen) if missing;
    /// an existing entry keeps its age.
    pub(super) fn get_or_insert(&mut self, key: IpAddr, now_ms: i64) -> &mut SourceState {
        use std::collections::hash_map::Entry;
        let seq = self.next.wrapping_add(1);
        match self.map.entry(key) {
            Entry::Occupied(o) => &mut o.into_mut().0,
            Entry::Vacant(v) => {
                self.next = seq;
                self.order.insert(seq, key);
                &mut v.insert((fresh(now_ms), seq)).0
            }
        }
    }

    /// Frees one slot in a table holding `max` or more by forgetting the
    /// least recently seen source that is not blocked at `now_ms`, looking
    /// at [`MAX_EVICTION_STEPS`] entries at most; false if none could go.
    /// A block whose end has passed counts as not blocked: sources blocked
    /// once and never seen again must not fill the table for good and
    /// switch the detector off for every other source.
    pub(super) fn make_room(&mut self, max: usize, now_ms: i64) -> bool {
        if self.map.len() < max {
            return true;
        }
        for _ in 0..MAX_EVICTION_STEPS {
            let Some((_, key)) = self.order.pop_first() else {
                return false;
            };
            self.eviction_steps += 1;
            let blocked = self.map.get(&key).map(|(s, _)| {
                s.block
                    .as_ref()
                    .is_some_and(|b| b.until_ms.is_none_or(|u| now_ms < u))
            });
            match blocked {
                Some(true) => {
                    let seq = self.stamp();
                    if let Some(e) = self.map.get_mut(&key) {
                        e.1 = seq;
                    }
                    self.order.insert(seq, key);
                }
                Some(false) => {
                    self.map.remove(&key);
                    return true;
                }
                None => {}
            }
        }
        false
    }
}

fn fresh(now_ms: i64) -> SourceState {
    SourceState {
        failures: Burst::new(now_ms),
        last_ms: now_ms,
        block: None,
    }
}

/// What is remembered of one source address.
#[derive(Debug)]
pub(super) struct SourceState {
    /// Its failures in the current window.
    pub(super) failures: Burst,
    pub(super) last_ms: i64,
    pub(super) block: Option<Imposed>,
}

/// The key of a source address: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 /64, since one IPv6 host usually owns a whole /64
/// and could otherwise step around a block.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
    }
}

/// The key of a source address as records, `admin blocks` and the shared
/// state store name it.
pub fn source_label(ip: IpAddr) -> String {
    source_text(source_key(ip))
}

/// A source key as records and `admin blocks` show it.
pub(super) fn source_text(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}
