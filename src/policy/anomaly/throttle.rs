//! The rate of a throttled identity: GCRA on the caller's clock.

use crate::policy::RateLimitFile;

/// A rate in GCRA form on the caller's clock (governor's limiters run on
/// the system clock; this one must follow the gateway's injectable clock
/// so tests of throttling are deterministic).
#[derive(Debug, Clone)]
pub(super) struct Gcra {
    interval_ms: f64,
    tolerance_ms: f64,
    tat_ms: f64,
}

impl Gcra {
    pub(super) fn new(rate: RateLimitFile) -> Self {
        let interval_ms = 1000.0 / f64::from(rate.per_second.max(1));
        Gcra {
            interval_ms,
            tolerance_ms: interval_ms * f64::from(rate.burst.max(1).saturating_sub(1)),
            tat_ms: 0.0,
        }
    }

    /// Takes one cell at `now_ms`, or says how long to wait.
    pub(super) fn check(&mut self, now_ms: i64) -> Result<(), u64> {
        let now = now_ms as f64;
        // On a clock that only moves forward the theoretical arrival time
        // never runs more than one interval past the tolerance; a clock
        // that went back would leave it up to the jump in the future and
        // refuse the identity for as long, so it is held to that bound.
        // Stored, so the bound does not move with `now` on every refusal.
        self.tat_ms = self.tat_ms.min(now + self.tolerance_ms + self.interval_ms);
        let tat = self.tat_ms.max(now);
        if tat - now > self.tolerance_ms {
            return Err((tat - now - self.tolerance_ms).ceil() as u64);
        }
        self.tat_ms = tat + self.interval_ms;
        Ok(())
    }
}
