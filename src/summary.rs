//! Counted summaries of repeated events: a flood of refusals becomes a
//! handful of log lines with exact counts, not one line per event.
//!
//! A [`Summary`] tells its user, for each event, whether to log it in full
//! ([`Seen::First`]: the first of its key since that key was last quiet for
//! a whole interval) or only to count it ([`Seen::Repeat`]). Once per
//! interval [`Summary::drain`] (or [`Summary::report`], which runs the
//! interval) hands back each key's repeats, to be logged as one line such
//! as "512 more TLS handshakes refused from 127.0.0.2 in the last 60 s".
//!
//! Counts are exact: every noted event is either a [`Seen::First`] or in
//! exactly one drained count. Memory is bounded: at most `max_keys` keys are
//! tracked at once, and the events of further keys are counted under the one
//! overflow entry [`Tally::Others`] instead of growing the table. A key is
//! forgotten after a whole interval without events, so a quiet key frees its
//! slot and its next event is logged in full again.
//!
//! This module owns no logger and no configuration: it never logs and never
//! spawns a task by itself; its user decides what a line says.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// What the caller should do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a First event is to be logged in full"]
pub enum Seen {
    /// The first event of its key in this run of events (or the first of
    /// the overflow entry): log it in full.
    First,
    /// Counted; it will be part of a count from [`Summary::drain`]: do not
    /// log it.
    Repeat,
}

/// A key of a drained count: one tracked key, or every key that found the
/// table full.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tally<K> {
    /// The repeats of this key.
    Key(K),
    /// Events of keys that were not tracked because `max_keys` keys already
    /// were, all together.
    Others,
}

impl<K: fmt::Display> fmt::Display for Tally<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tally::Key(k) => k.fmt(f),
            Tally::Others => f.write_str("events of other keys (summary table full)"),
        }
    }
}

/// Repeated events, counted per key over an interval; see the module
/// documentation. Shared by reference (`Arc`): every method takes `&self`
/// and holds a lock only for a map operation, never across an await.
#[derive(Debug)]
pub struct Summary<K> {
    interval: Duration,
    max_keys: usize,
    state: Mutex<State<K>>,
}

/// Repeats since the last drain, per tracked key. A key is present from its
/// first event until a drain finds it without repeats.
#[derive(Debug)]
struct State<K> {
    keys: HashMap<K, u64>,
    /// The overflow entry, present like a key while keys overflow.
    others: Option<u64>,
}

impl<K: Eq + Hash + Clone> Summary<K> {
    /// A summary reporting every `interval` and tracking at most `max_keys`
    /// keys (at least one) besides the overflow entry.
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        Summary {
            interval,
            max_keys: max_keys.max(1),
            state: Mutex::new(State {
                keys: HashMap::new(),
                others: None,
            }),
        }
    }

    /// How often the counts are to be drained and logged.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state is a few counters that every operation leaves
        // consistent: a panic elsewhere while holding the lock cannot
        // corrupt it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes one event of `key`.
    pub fn note(&self, key: K) -> Seen {
        let mut state = self.lock();
        if let Some(repeats) = state.keys.get_mut(&key) {
            *repeats = repeats.saturating_add(1);
            return Seen::Repeat;
        }
        if state.keys.len() < self.max_keys {
            state.keys.insert(key, 0);
            return Seen::First;
        }
        match &mut state.others {
            Some(repeats) => {
                *repeats = repeats.saturating_add(1);
                Seen::Repeat
            }
            None => {
                state.others = Some(0);
                Seen::First
            }
        }
    }

    /// The repeats of every key since the last drain (keys without repeats
    /// are left out), and resets them. A key without events since the last
    /// drain is forgotten.
    pub fn drain(&self) -> Vec<(Tally<K>, u64)> {
        let mut state = self.lock();
        let mut out = Vec::new();
        state.keys.retain(|key, repeats| {
            if *repeats == 0 {
                return false;
            }
            out.push((Tally::Key(key.clone()), std::mem::take(repeats)));
            true
        });
        match state.others {
            Some(0) => state.others = None,
            Some(repeats) => {
                out.push((Tally::Others, repeats));
                state.others = Some(0);
            }
            None => {}
        }
        out
    }

    /// How many keys are tracked now (the overflow entry not included).
    pub fn tracked(&self) -> usize {
        self.lock().keys.len()
    }

    /// Drains every interval, forever, handing each count to `log` with the
    /// interval; spawn it beside whatever notes events and abort it with
    /// that (drain once more at the end to lose no count).
    pub async fn report(&self, mut log: impl FnMut(Tally<K>, u64, Duration)) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (key, repeats) in self.drain() {
                log(key, repeats, self.interval);
            }
        }
    }
}

/// An interval as a log line says it: `60 s`, or `500 ms` below a second
/// or when not whole seconds.
pub fn interval_text(interval: Duration) -> String {
    if interval.subsec_nanos() == 0 && interval.as_secs() > 0 {
        format!("{} s", interval.as_secs())
    } else {
        format!("{} ms", interval.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(drained: &[(Tally<&'static str>, u64)]) -> u64 {
        drained.iter().map(|(_, n)| n).sum()
    }

    #[test]
    fn first_event_is_logged_and_repeats_are_counted_exactly() {
        let s = Summary::new(Duration::from_secs(60), 8);
        assert_eq!(s.note("a"), Seen::First);
        for _ in 0..511 {
            assert_eq!(s.note("a"), Seen::Repeat);
        }
        assert_eq!(s.note("b"), Seen::First);
        assert_eq!(s.note("b"), Seen::Repeat);
        let mut drained = s.drain();
        drained.sort_by_key(|(k, _)| format!("{k:?}"));
        assert_eq!(drained, vec![(Tally::Key("a"), 511), (Tally::Key("b"), 1)]);
        // Reset: the next drain has nothing, but the keys are still tracked
        // (they had events in the last interval), so no new First.
        assert_eq!(s.note("a"), Seen::Repeat);
        assert_eq!(s.drain(), vec![(Tally::Key("a"), 1)]);
    }

    #[test]
    fn a_key_quiet_for_an_interval_is_forgotten_and_logged_in_full_again() {
        let s = Summary::new(Duration::from_secs(60), 8);
        assert_eq!(s.note("a"), Seen::First);
        assert_eq!(s.drain(), vec![], "no repeats: nothing to report");
        assert_eq!(s.tracked(), 0, "quiet for an interval: forgotten");
        assert_eq!(s.note("a"), Seen::First);
    }

    #[test]
    fn a_full_table_counts_into_one_overflow_entry() {
        let max = 4;
        let s = Summary::new(Duration::from_secs(60), max);
        let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
        let mut firsts = 0u64;
        let mut events = 0u64;
        for round in 0..3 {
            for k in keys {
                events += 1;
                if s.note(k) == Seen::First {
                    firsts += 1;
                }
            }
            assert!(s.tracked() <= max, "round {round}: bounded");
        }
        // Four keys tracked and the overflow entry: five logged in full.
        assert_eq!(firsts, 5);
        let drained = s.drain();
        assert_eq!(drained.len(), max + 1);
        let others = drained
            .iter()
            .find(|(k, _)| *k == Tally::Others)
            .map(|(_, n)| *n);
        // Six untracked keys, three events each, one of them logged.
        assert_eq!(others, Some(6 * 3 - 1));
        assert_eq!(firsts + total(&drained), events, "every event counted once");
        assert_eq!(
            format!("{}", Tally::<&str>::Others),
            "events of other keys (summary table full)"
        );
    }

    #[test]
    fn counts_add_up_under_concurrent_noting() {
        let s = std::sync::Arc::new(Summary::new(Duration::from_secs(60), 3));
        let keys = ["a", "b", "c", "d", "e"];
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut firsts = 0u64;
                    for i in 0..10_000usize {
                        if s.note(keys[(i + t) % keys.len()]) == Seen::First {
                            firsts += 1;
                        }
                    }
                    firsts
                })
            })
            .collect();
        let mut counted = 0u64;
        for _ in 0..5 {
            counted += total(&s.drain());
        }
        let firsts: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        counted += total(&s.drain());
        assert_eq!(firsts + counted, 40_000);
        assert!(s.tracked() <= 3);
    }

    #[tokio::test]
    async fn report_drains_once_per_interval() {
        let every = Duration::from_millis(50);
        let s = std::sync::Arc::new(Summary::new(every, 8));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn({
            let s = s.clone();
            async move {
                s.report(|key, n, every| {
                    let _ = tx.send((key, n, every));
                })
                .await
            }
        });
        assert_eq!(s.note("x"), Seen::First);
        assert_eq!(s.note("x"), Seen::Repeat);
        assert_eq!(s.note("x"), Seen::Repeat);
        let line = rx.recv().await.expect("a report after one interval");
        assert_eq!(line, (Tally::Key("x"), 2, every));
        task.abort();
        assert_eq!(interval_text(Duration::from_secs(60)), "60 s");
        assert_eq!(interval_text(Duration::from_millis(1500)), "1500 ms");
    }
}
