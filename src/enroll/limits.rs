//! What the enrollment listener holds per source address (IPv6: per /64,
//! [`crate::policy::anomaly::source_key`]), with bounded memory: the
//! request rate ([`SourceRate`]) and the handshake and connection slots
//! ([`SourceSlots`]).
//!
//! The listener takes no client certificate before `Enroll`, so anyone may
//! connect: every table here is bounded by a constant, whatever the number
//! of addresses an attacker rotates through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::slots::{Slot, Slots};

/// Sources whose rate state is kept at once. Beyond it, the requests of
/// sources not in the table share one overflow allowance (of the same
/// rate), until entries are forgotten.
pub const MAX_RATE_SOURCES: usize = 16_384;

/// A per-source request rate (`max_requests_per_minute`, a burst of as
/// many), by the generic cell rate algorithm: one instant per source. A
/// source whose allowance has fully refilled is indistinguishable from a
/// new one and is forgotten, so the table holds only sources seen within
/// the last minute or so, and never more than [`MAX_RATE_SOURCES`] (plus
/// the overflow allowance).
#[derive(Debug)]
pub struct SourceRate {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a source's theoretical arrival time may run
    /// (the burst).
    tolerance: Duration,
    max_sources: usize,
    state: Mutex<RateState>,
}

#[derive(Debug, Default)]
struct RateState {
    /// Theoretical arrival time of each source's next request.
    tat: HashMap<IpAddr, Instant>,
    /// The shared allowance of sources that found the table full.
    overflow: Option<Instant>,
    /// The last sweep of refilled entries (at most one per interval).
    swept: Option<Instant>,
}

impl SourceRate {
    /// `per_minute` requests a minute per source (at least one), a burst of
    /// as many, at most `max_sources` sources tracked.
    pub fn new(per_minute: u32, max_sources: usize) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        SourceRate {
            interval,
            tolerance: interval.saturating_mul(per_minute - 1),
            max_sources: max_sources.max(1),
            state: Mutex::new(RateState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RateState> {
        // A few instants that every operation leaves consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request from `ip` at `now` is within its rate (counted if
    /// so).
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        let key = crate::policy::anomaly::source_key(ip);
        let mut s = self.lock();
        if !s.tat.contains_key(&key) && s.tat.len() >= self.max_sources {
            // Forget the sources whose allowance refilled: O(table), at most
            // once per interval.
            if s.swept.is_none_or(|t| now >= t + self.interval) {
                s.swept = Some(now);
                s.tat.retain(|_, tat| *tat > now);
            }
        }
        let tracked = s.tat.contains_key(&key) || s.tat.len() < self.max_sources;
        let slot = if tracked {
            s.tat.entry(key).or_insert(now)
        } else {
            s.overflow.get_or_insert(now)
        };
        let tat = (*slot).max(now);
        if tat > now + self.tolerance {
            return false;
        }
        *slot = tat + self.interval;
        true
    }

    /// Sources tracked now (the overflow allowance not included).
    pub fn tracked(&self) -> usize {
        self.lock().tat.len()
    }
}

/// Counted slots per source or per network: a key is in the map only
/// while it holds a slot, and slots are only held beside a listener-wide
/// permit, so the map is bounded by the listener's caps.
#[derive(Debug)]
pub struct SourceSlots {
    slots: Arc<Slots<IpAddr>>,
    /// Keyed by network ([`network_key`]) rather than source.
    network: bool,
}

/// One taken slot; dropping it frees the slot.
pub type SourceSlot = Slot<IpAddr>;

/// The network of `ip` for the listener's second tier of caps: its IPv4
/// /24, or its IPv6 /48 (an IPv4-mapped address as IPv4). A site or a
/// customer usually holds a whole one, so its addresses share one cap.
pub fn network_key(ip: IpAddr) -> IpAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let v4 = |a: Ipv4Addr| IpAddr::V4(Ipv4Addr::from(u32::from(a) & 0xffff_ff00));
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => v4(m),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 80) - 1))),
        },
    }
}

impl SourceSlots {
    /// An empty table, per source ([`crate::policy::anomaly::source_key`]).
    pub fn new() -> Arc<Self> {
        Arc::new(SourceSlots {
            slots: Slots::new(),
            network: false,
        })
    }

    /// An empty table, per network ([`network_key`]).
    pub fn per_network() -> Arc<Self> {
        Arc::new(SourceSlots {
            slots: Slots::new(),
            network: true,
        })
    }

    /// One of `cap` slots of `ip`'s source, or `None` when all are taken.
    pub fn try_take(&self, ip: IpAddr, cap: usize) -> Option<SourceSlot> {
        let key = if self.network {
            network_key(ip)
        } else {
            crate::policy::anomaly::source_key(ip)
        };
        self.slots.try_take(key, cap)
    }

    /// Sources holding a slot now.
    pub fn sources(&self) -> usize {
        self.slots.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v6(prefix: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from((u128::from(prefix) << 64) | 1))
    }

    #[test]
    fn the_rate_allows_the_burst_then_the_sustained_rate() {
        let rate = SourceRate::new(30, 16);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(rate.check(ip, t0), "request {i} of the burst");
        }
        assert!(!rate.check(ip, t0), "over the burst");
        // Another source is not affected.
        assert!(rate.check(IpAddr::V4(Ipv4Addr::LOCALHOST), t0));
        // Two seconds later, one more (30 a minute).
        assert!(rate.check(ip, t0 + Duration::from_secs(2)));
        assert!(!rate.check(ip, t0 + Duration::from_secs(2)));
        // Addresses of one IPv6 /64 share an allowance.
        let a = IpAddr::V6(Ipv6Addr::from((7u128 << 64) | 1));
        let b = IpAddr::V6(Ipv6Addr::from((7u128 << 64) | 2));
        let one = SourceRate::new(1, 16);
        assert!(one.check(a, t0));
        assert!(!one.check(b, t0));
    }

    /// Issue 21: the limiter never forgot a source, so rotating IPv6 /64s
    /// grew its memory without end.
    #[test]
    fn the_rate_table_is_bounded_and_forgets_refilled_sources() {
        let max = 1_000;
        let rate = SourceRate::new(30, max);
        let t0 = Instant::now();
        for p in 0..100_000u64 {
            let _ = rate.check(v6(p), t0 + Duration::from_micros(p));
            assert!(
                rate.tracked() <= max,
                "source {p}: the table grew past its bound"
            );
        }
        assert_eq!(rate.tracked(), max);
        // Beyond the table, new sources share one allowance: a flood of new
        // addresses is limited as a whole.
        let later = t0 + Duration::from_millis(200);
        let allowed = (200_000..200_100u64)
            .filter(|p| rate.check(v6(*p), later))
            .count();
        assert_eq!(allowed, 0, "the overflow allowance is spent");
        // A minute on, every allowance has refilled: the old sources are
        // forgotten at the next new source, which is tracked again.
        let minute = t0 + Duration::from_secs(61);
        assert!(rate.check(v6(300_000), minute));
        assert_eq!(rate.tracked(), 1, "refilled sources are forgotten");
    }

    #[test]
    fn networks_are_ipv4_slash_24_and_ipv6_slash_48() {
        let a: IpAddr = "192.0.2.77".parse().expect("ip");
        assert_eq!(network_key(a), "192.0.2.0".parse::<IpAddr>().expect("ip"));
        let b: IpAddr = "2001:db8:1:ffff:1:2:3:4".parse().expect("ip");
        assert_eq!(
            network_key(b),
            "2001:db8:1::".parse::<IpAddr>().expect("ip")
        );
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().expect("ip");
        assert_eq!(network_key(mapped), network_key(a));
        let slots = SourceSlots::per_network();
        let one = slots.try_take("192.0.2.1".parse().expect("ip"), 1);
        assert!(one.is_some());
        assert!(
            slots
                .try_take("192.0.2.2".parse().expect("ip"), 1)
                .is_none(),
            "another address of the /24 shares the cap"
        );
        assert!(slots
            .try_take("192.0.3.2".parse().expect("ip"), 1)
            .is_some());
    }

    #[test]
    fn slots_are_capped_per_source_and_forgotten_when_free() {
        let slots = SourceSlots::new();
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let held: Vec<_> = (0..4).filter_map(|_| slots.try_take(ip, 4)).collect();
        assert_eq!(held.len(), 4);
        assert!(slots.try_take(ip, 4).is_none(), "cap reached");
        let other = slots.try_take(IpAddr::V4(Ipv4Addr::LOCALHOST), 4);
        assert!(other.is_some(), "another source is not affected");
        assert_eq!(slots.sources(), 2);
        drop(held);
        drop(other);
        assert_eq!(slots.sources(), 0, "free sources are forgotten");
    }
}
