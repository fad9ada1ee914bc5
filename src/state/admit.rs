//! Admission with a shared store (the request path's stages 3 and 5): one
//! round trip (`admit.lua`) reads the identity's block, checks the store's
//! epoch, applies a throttle, takes one unit of the client's rate and
//! records the nonce, and says which refused; a dearer tool takes the rest
//! of its cost later (`rate.lua`). While the store is away, calls are
//! refused or decided on this replica's own state, as `on_failure` says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::epoch::fresh_id;
use super::error::StoreError;
use super::scripts::gcra_args;
use super::store::SharedState;
use crate::config::OnFailure;
use crate::envelope::VerifiedEnvelope;
use crate::error::{Denial, Reason};
use crate::identity::{ClientEntry, ClientId};
use crate::policy::anomaly::{Admission, Anomaly, StoredRestriction};
use crate::policy::RateLimitFile;
use crate::replay::ReplayStore;

/// How long an identity's high-water (the newest envelope timestamp the
/// store accepted from it: its replay floor is that minus the hold) outlives
/// its last accepted envelope. A gateway clock stepped back by more than the
/// hold finds it for a week after the client's last call; one key per
/// identity, so it costs nothing worth bounding tighter.
pub const HIGH_WATER_KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What the store said at stage 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: nonce recorded, one unit of the rate taken.
    Accepted,
    /// The identity is blocked (on some replica).
    Blocked(StoredRestriction),
    /// The envelope may predate what the store remembers: retry after.
    Gap {
        /// When a fresh envelope will be accepted, Unix ms.
        until_ms: i64,
    },
    /// Throttled: retry after this long.
    Throttled(Duration),
    /// Over its rate across all replicas: retry after this long.
    RateLimited(Duration),
    /// The nonce was used before (on any replica).
    Replayed,
    /// Signed a replay hold or more before the newest envelope accepted
    /// from this identity: its nonce may have expired, so it cannot be told
    /// from a replay (the gateway's clock went back, or a replica's lags).
    Forgotten,
}

impl SharedState {
    /// Stage 3 with a shared store: the envelope's nonce, one unit of the
    /// client's rate and its block, in one round trip (or, while the store
    /// is away, as `on_failure` says).
    pub async fn admit(
        &self,
        client: &ClientEntry,
        env: &VerifiedEnvelope,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<(), Denial> {
        if self.live() {
            match self.store_decides(client, env, now_ms, anomaly).await {
                Ok(decided) => return decided,
                // Not a failure of the store: nothing to fall back on.
                Err(StoreError::Protocol) => return Err(unavailable()),
                Err(_) => {}
            }
        }
        // A block held here holds whatever the store would have said.
        if let Some((detector, until_ms)) = anomaly.blocked_here(client.id.as_str(), now_ms) {
            return Err(crate::error::identity_blocked(detector, until_ms));
        }
        match self.on_own(&client.id, env, now_ms).await {
            Some(decided) => decided,
            // The store came back meanwhile: it decides (and what it
            // accepts is kept for a later fallback, as above).
            None => self
                .store_decides(client, env, now_ms, anomaly)
                .await
                .unwrap_or_else(|_| Err(unavailable())),
        }
    }

    /// The store's verdict, applied; an accepted nonce is also kept for
    /// the local fallback, and one this replica's own recent nonces know
    /// is refused even when the store accepted it (it forgot it). If that client's store here is full, the nonce
    /// cannot be kept, so its floor rises to the envelope's timestamp: in a
    /// fallback that client's envelopes signed up to then are refused (a
    /// replay of this one among them), never accepted.
    async fn store_decides(
        &self,
        client: &ClientEntry,
        env: &VerifiedEnvelope,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<Result<(), Denial>, StoreError> {
        let (verdict, unblocked) = self
            .verdict(&client.id, client.rate, env, now_ms, None)
            .await?;
        let mut verdict = verdict;
        if verdict == Verdict::Accepted {
            match self.recent.check_and_record(&client.id, env, now_ms) {
                Err(crate::replay::ReplayError::Full) => {
                    self.recent.forget_up_to(&client.id, env.timestamp_unix_ms)
                }
                // The store no longer knows a nonce this replica saw
                // accepted (its key expired or the store lost it): still a
                // replay (review-b M1).
                Err(crate::replay::ReplayError::Replayed) => verdict = Verdict::Replayed,
                // Under the local floor only (raised when this store was
                // full): the store's word stands while it is up.
                Err(crate::replay::ReplayError::Forgotten) | Ok(()) => {}
            }
        }
        Ok(self.apply(client, verdict, unblocked, now_ms, anomaly))
    }

    /// The store's verdict on one envelope (`now_us` fixes the GCRA clock,
    /// for tests; `None`: the store's own).
    pub async fn verdict(
        &self,
        client: &ClientId,
        rate: RateLimitFile,
        env: &VerifiedEnvelope,
        now_ms: i64,
        now_us: Option<i64>,
    ) -> Result<(Verdict, i64), StoreError> {
        let id = client.as_str();
        let nonce = crate::replay::nonce_key(&env.nonce);
        let (t, tau) = gcra_args(rate);
        let known = self.epoch.load_full();
        let mut inv = self.scripts.admit.prepare_invoke();
        inv.key(self.keys.epoch())
            .key(self.keys.nonce(id, &nonce))
            .key(self.keys.of("r", id))
            .key(self.keys.of("b", id))
            .key(self.keys.of("t", id))
            .key(self.keys.of("tr", id))
            .key(self.keys.of("u", id))
            .key(self.keys.of("hw", id))
            .key(self.keys.store_clock())
            .arg(known.as_str())
            .arg(fresh_id())
            .arg(now_ms)
            .arg(env.timestamp_unix_ms)
            .arg(self.skew_ms)
            .arg(self.retention_ms)
            .arg(&t)
            .arg(&tau)
            .arg(&self.throttle.0)
            .arg(&self.throttle.1)
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default())
            .arg(self.cold())
            .arg(HIGH_WATER_KEEP_MS);
        let (code, since, epoch, unblocked, extra): (i64, i64, String, i64, String) =
            self.round_trip(inv).await?;
        self.adopt_epoch(&known, epoch, since);
        let wait = || Duration::from_micros(extra.parse::<u64>().unwrap_or(0));
        let verdict = match code {
            0 => Verdict::Accepted,
            1 => Verdict::Blocked(StoredRestriction::decode(&extra).ok_or(StoreError::Protocol)?),
            2 => Verdict::Gap {
                until_ms: since.saturating_add(self.skew_ms),
            },
            3 => Verdict::Throttled(wait()),
            4 => Verdict::RateLimited(wait()),
            5 => Verdict::Replayed,
            6 => Verdict::Forgotten,
            _ => return Err(StoreError::Protocol),
        };
        Ok((verdict, unblocked))
    }

    fn apply(
        &self,
        client: &ClientEntry,
        verdict: Verdict,
        unblocked: i64,
        now_ms: i64,
        anomaly: &Anomaly,
    ) -> Result<(), Denial> {
        let id = client.id.as_str();
        let stored = match &verdict {
            Verdict::Blocked(b) => Some(b.clone()),
            _ => None,
        };
        // The store is the authority on blocks: mirror its block, lift a
        // local one an operator lifted elsewhere.
        if let Admission::Blocked { detector, until_ms } =
            anomaly.reconcile(id, stored, unblocked, now_ms)
        {
            return Err(crate::error::identity_blocked(detector, until_ms));
        }
        match verdict {
            Verdict::Accepted | Verdict::Blocked(_) => Ok(()),
            Verdict::Gap { until_ms } => Err(Denial::new(
                Reason::StateUnavailable,
                format!(
                    "the shared state store was emptied and remembers nonces only since {}; envelopes signed before {} are refused. Retry with a fresh envelope then",
                    crate::audit::rfc3339_ms(until_ms.saturating_sub(self.skew_ms)),
                    crate::audit::rfc3339_ms(until_ms)
                ),
            )
            .retry_after(Duration::from_millis(
                u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0).max(1),
            ))),
            Verdict::Throttled(wait) => Err(Denial::new(
                Reason::RateLimited,
                "this client is throttled after unusual activity; slow down",
            )
            .retry_after(wait)),
            Verdict::RateLimited(wait) => Err(Denial::new(
                Reason::RateLimited,
                "request rate limit exceeded for this client",
            )
            .retry_after(wait)),
            Verdict::Replayed => Err(crate::replay::ReplayError::Replayed.into()),
            Verdict::Forgotten => Err(crate::replay::ReplayError::Forgotten.into()),
        }
    }

    /// While the store is away: refuse, or decide on this replica's own;
    /// `None` if the store came back meanwhile.
    async fn on_own(
        &self,
        client: &ClientId,
        env: &VerifiedEnvelope,
        now_ms: i64,
    ) -> Option<Result<(), Denial>> {
        match self.config.on_failure {
            OnFailure::FailClosed => Some(Err(unavailable())),
            OnFailure::Local => {
                let _deciding = self.switching.read().await;
                if self.live() {
                    return None;
                }
                self.metrics.local_decisions.inc();
                if let Some(refused) = self.before_own_start(env, now_ms) {
                    return Some(Err(refused));
                }
                // What the store accepted through this replica first, then
                // what this replica accepted on its own.
                Some(
                    self.recent
                        .check_and_record(client, env, now_ms)
                        .and_then(|()| self.local.check_and_record(client, env, now_ms))
                        .map_err(Denial::from),
                )
            }
        }
    }

    /// A replica started on its own state: an envelope signed before its
    /// start plus the skew window may have been accepted through the store
    /// (by its previous run too), which it cannot ask now.
    fn before_own_start(&self, env: &VerifiedEnvelope, now_ms: i64) -> Option<Denial> {
        let since = self.own_since_ms.load(Ordering::Acquire);
        let until = since.saturating_add(self.skew_ms);
        if since == 0 || env.timestamp_unix_ms >= until {
            return None;
        }
        Some(
            Denial::new(
                Reason::StateUnavailable,
                format!(
                    "this replica started while the shared state store was away and cannot know which envelopes it accepted; envelopes signed before {} are refused. Retry with a fresh envelope then",
                    crate::audit::rfc3339_ms(until)
                ),
            )
            .retry_after(Duration::from_millis(
                u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0).max(1),
            )),
        )
    }

    /// Stage 5: the rest of a dearer tool's cost (`extra` units beyond the
    /// one stage 3 took), across all replicas.
    pub async fn take_extra(
        &self,
        client: &ClientEntry,
        tool: &str,
        extra: u32,
    ) -> Result<(), Denial> {
        if !self.live() {
            return match self.config.on_failure {
                OnFailure::FailClosed => Err(unavailable()),
                OnFailure::Local => Ok(()),
            };
        }
        let (t, tau) = gcra_args(client.rate);
        let mut inv = self.scripts.rate.prepare_invoke();
        inv.key(self.keys.of("r", client.id.as_str()))
            .arg(&t)
            .arg(&tau)
            .arg(extra)
            .arg("");
        match self.round_trip::<(i64, String)>(inv).await {
            Ok((0, _)) => Ok(()),
            Ok((4, wait)) => Err(Denial::new(
                Reason::RateLimited,
                format!(
                    "tool {tool} costs {} calls of this client's rate; not enough remain now",
                    extra + 1
                ),
            )
            .retry_after(Duration::from_micros(wait.parse::<u64>().unwrap_or(0)))),
            Ok(_) => Err(Denial::new(
                Reason::RateLimited,
                format!(
                    "tool {tool} costs {} calls, more than this client's burst",
                    extra + 1
                ),
            )),
            Err(_) => match self.config.on_failure {
                OnFailure::FailClosed => Err(unavailable()),
                OnFailure::Local => Ok(()),
            },
        }
    }
}

/// The refusal while the store is away and `on_failure = "fail_closed"`.
pub fn unavailable() -> Denial {
    Denial::new(
        Reason::StateUnavailable,
        "the shared state store cannot be reached; nothing was done. Retry later",
    )
    .retry_after(Duration::from_secs(1))
}
