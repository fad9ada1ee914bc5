//! An operator's unblock (`admin unblock`), for every replica: the store
//! deletes the identity's or the source's restrictions and keeps the time,
//! so each replica lifts its own copies imposed before it. The store acts
//! only before a deadline by its own clock, so an unblock the gateway
//! reports as not done never happens behind the operator's back.

use std::time::Duration;

use super::error::StoreError;
use super::mirror::LOG_KEPT;
use super::store::SharedState;

/// How long an operator's unblock time is kept in the store: far longer
/// than any replica takes to re-check its local copy.
pub(super) const UNBLOCK_KEPT_MS: i64 = 7 * 86_400_000;

/// How long after it is sent the store may still apply an operator's
/// unblock: `unblock.lua` compares the store's clock with this deadline
/// and refuses to act after it, so an unblock whose answer came too late
/// never takes effect behind the operator's back.
const UNBLOCK_DEADLINE_MS: i64 = 1_000;

/// How long past that deadline the gateway still waits for the answer:
/// the gap tolerated between the gateway's clock and the store's. With no
/// answer by then, the outcome is reported (and audited) as unconfirmed.
const UNBLOCK_GRACE: Duration = Duration::from_secs(2);

impl SharedState {
    /// An operator's unblock of `target` (a client id or an address) for
    /// every replica. Returns how many (identity, source) restrictions the
    /// store held. The store applies it only up to
    /// [`UNBLOCK_DEADLINE_MS`] after now, by its own clock; an answer
    /// that it came too late is `Timeout` (nothing was lifted anywhere),
    /// no answer at all within the deadline and [`UNBLOCK_GRACE`] is
    /// `Unconfirmed`. Neither marks the store away (the probe judges it).
    pub async fn unblock(&self, target: &str, now_ms: i64) -> Result<(usize, usize), StoreError> {
        if !self.live() {
            return Err(StoreError::NotConnected);
        }
        let source = target
            .trim_end_matches("/64")
            .parse::<std::net::IpAddr>()
            .ok()
            .map(crate::policy::anomaly::source_label);
        let s = source.clone().unwrap_or_default();
        let mut inv = self.scripts.unblock.prepare_invoke();
        inv.key(self.keys.of("b", target))
            .key(self.keys.of("t", target))
            .key(self.keys.of("tr", target))
            .key(self.keys.of("u", target))
            .key(self.keys.of("s", &s))
            .key(self.keys.of("us", &s))
            .key(self.keys.source_blocks())
            .key(self.keys.source_unblocks())
            .key(self.keys.source_seq())
            .key(self.keys.source_log())
            .key(self.keys.source_floor())
            .arg(now_ms)
            .arg(UNBLOCK_KEPT_MS)
            .arg(if source.is_some() { "1" } else { "0" })
            .arg(&s)
            .arg(LOG_KEPT)
            .arg(now_ms.saturating_add(UNBLOCK_DEADLINE_MS));
        let budget = Duration::from_millis(UNBLOCK_DEADLINE_MS.unsigned_abs()) + UNBLOCK_GRACE;
        let (i, s): (i64, i64) = match self.timed(inv, budget).await {
            Err(StoreError::Timeout) => return Err(StoreError::Unconfirmed),
            other => other?,
        };
        match (usize::try_from(i), usize::try_from(s)) {
            (Ok(i), Ok(s)) => Ok((i, s)),
            // Refused by the store: its deadline had passed.
            _ => Err(StoreError::Timeout),
        }
    }
}
