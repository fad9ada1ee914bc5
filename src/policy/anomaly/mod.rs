//! Anomaly detection (mission rule 9): each identity is compared with
//! itself, and sources with what they fail at.
//!
//! Detectors, each with its own action (`alert`, `throttle`, `block`, or
//! `off`) and thresholds:
//! - **volume**: calls in the current window against the identity's own
//!   exponentially weighted baseline, never below a floor;
//! - **new_tool**: a tool the identity never called during its learning
//!   window (a period or a number of calls, whichever ends first);
//! - **off_hours**: a call outside the identity's allowed hours;
//! - **denials**: a burst of refusals (bad signatures, replays, schema or
//!   sanitizer refusals, tools not allowed) from one identity;
//! - **source_failures**: many handshake failures, unknown identities or
//!   unknown key ids from one source address.
//!
//! `throttle` puts the identity on a lower rate for the cool-down; `block`
//! refuses it (`IDENTITY_BLOCKED`) until the cool-down passes or an operator
//! unblocks it. Every action, expiry and unblock is an audit record naming
//! the detector, the identity (or source) and the figures that fired it,
//! never argument values.
//!
//! State is per identity and per source, in bounded maps, and lives in the
//! gateway (not in the registry), so it survives a registry reload. Every
//! function takes the time from the caller: tests drive it with a fixed
//! clock.
//!
//! With a shared state store (`[state] kind = "redis"`, [`crate::state`])
//! the detectors still count per replica, but every block and throttle
//! they impose is also published to the store ([`SharedRestrictions`]), and
//! the store is the authority: a local restriction is a cache that is
//! checked against the store again every [`RECHECK_MS`] while the store
//! answers ([`Anomaly::reconcile`]), so a block imposed on one replica holds
//! on all, and an operator's unblock on any replica lifts it on all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::RateLimitFile;
use crate::audit::{AnomalyEvent, AuditLog};

/// With a shared state store, how long a local block or throttle is
/// enforced on its own before the store is asked again (so an unblock on
/// another replica reaches this one within it).
pub const RECHECK_MS: i64 = 1_000;

/// The shared state store as the detectors see it ([`crate::state`]).
pub trait SharedRestrictions: Send + Sync {
    /// Whether the store answers now; while it does not, local
    /// restrictions are enforced on their own.
    fn live(&self) -> bool;
    /// A restriction imposed on this replica: written to the store in the
    /// background (again when the store returns, if it is away).
    fn publish(&self, restriction: Restriction);
}

/// A restriction as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRestriction {
    /// The detector that imposed it.
    pub detector: String,
    /// When it was imposed, Unix ms.
    pub since_ms: i64,
    /// When it ends, Unix ms; `None`: until an operator lifts it.
    pub until_ms: Option<i64>,
}

impl StoredRestriction {
    /// The store's text form: `<detector> <since_ms> <until_ms or ->`.
    pub fn encode(detector: &str, since_ms: i64, until_ms: Option<i64>) -> String {
        match until_ms {
            Some(u) => format!("{detector} {since_ms} {u}"),
            None => format!("{detector} {since_ms} -"),
        }
    }

    /// Parses [`StoredRestriction::encode`]'s form.
    pub fn decode(text: &str) -> Option<StoredRestriction> {
        let mut parts = text.split(' ');
        let detector = parts.next()?.to_string();
        let since_ms = parts.next()?.parse().ok()?;
        let until_ms = match parts.next()? {
            "-" => None,
            u => Some(u.parse().ok()?),
        };
        Some(StoredRestriction {
            detector,
            since_ms,
            until_ms,
        })
    }
}

/// A detector's name from the store, as one of ours (the audit trail and
/// `admin blocks` name detectors by static strings).
pub fn detector_name(name: &str) -> &'static str {
    [
        "volume",
        "new_tool",
        "off_hours",
        "denials",
        "source_failures",
    ]
    .into_iter()
    .find(|d| *d == name)
    .unwrap_or("shared")
}

/// The default cool-down of a throttle or block: 15 minutes.
const DEFAULT_COOLDOWN_SECS: u64 = 900;

/// The longest window, half-life, learning period or cool-down accepted:
/// a year. Larger values would only overflow time arithmetic.
const MAX_SECS: u64 = 366 * 86_400;

/// What a detector does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The detector is disabled.
    Off,
    /// An audit record and a warning; the call goes on.
    Alert,
    /// The identity gets the `[anomaly] throttle` rate for the cool-down.
    Throttle,
    /// The identity (or source) is refused for the cool-down, or until an
    /// operator unblocks it.
    Block,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Alert => "alert",
            Action::Throttle => "throttle",
            Action::Block => "block",
        }
    }
}

/// `[anomaly.volume]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    /// What to do when it fires.
    pub action: Action,
    /// Length of the counting window, in seconds.
    pub window_secs: u64,
    /// Half-life of the baseline, in seconds: how fast it follows change.
    pub half_life_secs: u64,
    /// Fires when a window's calls exceed this many times the baseline…
    pub factor: f64,
    /// …and this many calls (so a quiet client is not flagged for three).
    pub floor: u32,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            action: Action::Alert,
            window_secs: 60,
            half_life_secs: 3_600,
            factor: 10.0,
            floor: 120,
            cooldown_secs: None,
        }
    }
}

/// `[anomaly.new_tool]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NewToolConfig {
    /// What to do when it fires.
    pub action: Action,
    /// The learning window ends after this many calls…
    pub learning_calls: u64,
    /// …or this many seconds after the identity's first call, whichever
    /// comes first.
    pub learning_secs: u64,
    /// Tools remembered per identity, at most (memory bound).
    pub max_tools: usize,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for NewToolConfig {
    fn default() -> Self {
        NewToolConfig {
            action: Action::Alert,
            learning_calls: 200,
            learning_secs: 7 * 86_400,
            max_tools: 64,
            cooldown_secs: None,
        }
    }
}

/// `[anomaly.off_hours]`: acts on calls outside a tier's allowed hours.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    /// What to do when it fires.
    pub action: Action,
    /// Cool-down of a throttle or block, in seconds (default: the section's).
    pub cooldown_secs: Option<u64>,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        OffHoursConfig {
            action: Action::Block,
            cooldown_secs: None,
        }
    }
}

macro_rules! burst_config {
    ($(#[$doc:meta])* $name:ident, $action:expr, $window:expr, $threshold:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// What to do when it fires.
            pub action: Action,
            /// Length of the counting window, in seconds.
            pub window_secs: u64,
            /// Fires at this many failures within one window.
            pub threshold: u32,
            /// Cool-down of a throttle or block, in seconds (default: the
            /// section's).
            pub cooldown_secs: Option<u64>,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    action: $action,
                    window_secs: $window,
                    threshold: $threshold,
                    cooldown_secs: None,
                }
            }
        }
    };
}

burst_config!(
    /// `[anomaly.denials]`: refusals of one identity in a window.
    DenialsConfig,
    Action::Block,
    60,
    20
);
burst_config!(
    /// `[anomaly.source_failures]`: handshake failures, unknown identities
    /// and unknown key ids from one source address in a window.
    SourceFailuresConfig,
    Action::Block,
    60,
    50
);

/// `[anomaly]`: the detectors and the limits of their state.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Identities tracked at most; the least recently seen one that is not
    /// throttled or blocked makes room for a new one.
    pub max_identities: usize,
    /// Source addresses tracked at most.
    pub max_sources: usize,
    /// Where blocks are kept across restarts (written atomically, 0600;
    /// read at start). Default: `anomaly-blocks.json` beside the audit file
    /// (or beside the config file when the audit trail is not a file).
    pub blocks_file: Option<std::path::PathBuf>,
    /// Default cool-down of a throttle or block, in seconds; 0 for a block
    /// means "until an operator unblocks".
    pub cooldown_secs: u64,
    /// The rate of a throttled identity.
    pub throttle: RateLimitFile,
    /// Volume spikes.
    pub volume: VolumeConfig,
    /// First use of a tool after learning.
    pub new_tool: NewToolConfig,
    /// Calls outside the allowed hours.
    pub off_hours: OffHoursConfig,
    /// Bursts of refusals of one identity.
    pub denials: DenialsConfig,
    /// Bursts of handshake failures, unknown identities or key ids from one
    /// source address (`throttle` is not available here).
    pub source_failures: SourceFailuresConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            max_identities: 100_000,
            max_sources: 65_536,
            blocks_file: None,
            cooldown_secs: DEFAULT_COOLDOWN_SECS,
            throttle: RateLimitFile {
                per_second: 1,
                burst: 5,
            },
            volume: VolumeConfig::default(),
            new_tool: NewToolConfig::default(),
            off_hours: OffHoursConfig::default(),
            denials: DenialsConfig::default(),
            source_failures: SourceFailuresConfig::default(),
        }
    }
}

impl AnomalyConfig {
    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("anomaly.max_identities", self.max_identities as u64),
            ("anomaly.max_sources", self.max_sources as u64),
            (
                "anomaly.throttle.per_second",
                u64::from(self.throttle.per_second),
            ),
            ("anomaly.throttle.burst", u64::from(self.throttle.burst)),
            ("anomaly.volume.window_secs", self.volume.window_secs),
            ("anomaly.volume.half_life_secs", self.volume.half_life_secs),
            ("anomaly.new_tool.max_tools", self.new_tool.max_tools as u64),
            ("anomaly.denials.window_secs", self.denials.window_secs),
            (
                "anomaly.denials.threshold",
                u64::from(self.denials.threshold),
            ),
            (
                "anomaly.source_failures.window_secs",
                self.source_failures.window_secs,
            ),
            (
                "anomaly.source_failures.threshold",
                u64::from(self.source_failures.threshold),
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("field {name}: must be at least 1"));
            }
        }
        let bounded = [
            ("anomaly.cooldown_secs", Some(self.cooldown_secs)),
            ("anomaly.volume.window_secs", Some(self.volume.window_secs)),
            (
                "anomaly.volume.half_life_secs",
                Some(self.volume.half_life_secs),
            ),
            ("anomaly.volume.cooldown_secs", self.volume.cooldown_secs),
            (
                "anomaly.new_tool.learning_secs",
                Some(self.new_tool.learning_secs),
            ),
            (
                "anomaly.new_tool.cooldown_secs",
                self.new_tool.cooldown_secs,
            ),
            (
                "anomaly.off_hours.cooldown_secs",
                self.off_hours.cooldown_secs,
            ),
            (
                "anomaly.denials.window_secs",
                Some(self.denials.window_secs),
            ),
            ("anomaly.denials.cooldown_secs", self.denials.cooldown_secs),
            (
                "anomaly.source_failures.window_secs",
                Some(self.source_failures.window_secs),
            ),
            (
                "anomaly.source_failures.cooldown_secs",
                self.source_failures.cooldown_secs,
            ),
        ];
        for (name, v) in bounded {
            if v.is_some_and(|v| v > MAX_SECS) {
                return Err(format!("field {name}: at most {MAX_SECS} (a year)"));
            }
        }
        if !(self.volume.factor.is_finite() && self.volume.factor >= 1.0) {
            return Err("field anomaly.volume.factor: must be a number of at least 1".into());
        }
        if self.source_failures.action == Action::Throttle {
            return Err(
                "field anomaly.source_failures.action: a source can be alerted on or blocked, not throttled"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Why an identity is refused or slowed at admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing stands in the way.
    Allow,
    /// Throttled and over the throttle rate: retry after this many ms.
    Throttled {
        /// Milliseconds until the next call would be accepted.
        retry_after_ms: u64,
    },
    /// Blocked by `detector`, until `until_ms` (None: until unblocked).
    Blocked {
        /// The detector that blocked it (`operator` never: operators only
        /// unblock).
        detector: &'static str,
        /// When the block ends by itself, in Unix ms; `None`: never.
        until_ms: Option<i64>,
    },
}

/// One current block or throttle, as `sealgate admin blocks` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restriction {
    /// `identity` or `source`.
    pub subject: &'static str,
    /// The client id or the source address.
    pub id: String,
    /// `block` or `throttle`.
    pub action: &'static str,
    /// The detector that fired.
    pub detector: &'static str,
    /// When it was imposed, Unix ms.
    pub since_ms: i64,
    /// When it ends by itself, Unix ms; `None`: until an operator lifts it.
    pub until_ms: Option<i64>,
}

/// A rate in GCRA form on the caller's clock (governor's limiters run on
/// the system clock; this one must follow the gateway's injectable clock
/// so tests of throttling are deterministic).
#[derive(Debug, Clone)]
struct Gcra {
    interval_ms: f64,
    tolerance_ms: f64,
    tat_ms: f64,
}

impl Gcra {
    fn new(rate: RateLimitFile) -> Self {
        let interval_ms = 1000.0 / f64::from(rate.per_second.max(1));
        Gcra {
            interval_ms,
            tolerance_ms: interval_ms * f64::from(rate.burst.max(1).saturating_sub(1)),
            tat_ms: 0.0,
        }
    }

    /// Takes one cell at `now_ms`, or says how long to wait.
    fn check(&mut self, now_ms: i64) -> Result<(), u64> {
        let now = now_ms as f64;
        let tat = self.tat_ms.max(now);
        if tat - now > self.tolerance_ms {
            return Err((tat - now - self.tolerance_ms).ceil() as u64);
        }
        self.tat_ms = tat + self.interval_ms;
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Imposed {
    detector: &'static str,
    since_ms: i64,
    until_ms: Option<i64>,
    /// When the shared store last confirmed it (or it was imposed here).
    checked_ms: i64,
    /// Learnt from the store (imposed on another replica): its expiry is
    /// that replica's to record, not this one's.
    mirrored: bool,
}

impl Imposed {
    fn new(detector: &'static str, since_ms: i64, until_ms: Option<i64>) -> Self {
        Imposed {
            detector,
            since_ms,
            until_ms,
            checked_ms: since_ms,
            mirrored: false,
        }
    }
}

/// What is remembered of one identity: fixed-size counters plus at most
/// `new_tool.max_tools` tool names.
#[derive(Debug)]
struct IdentityState {
    first_ms: i64,
    last_ms: i64,
    calls: u64,
    window_start_ms: i64,
    window_calls: u32,
    volume_fired_in_window: bool,
    baseline: f64,
    tools: HashSet<String>,
    /// `tools` is full and an unremembered tool has been reported.
    tools_overflowed: bool,
    denial_window_start_ms: i64,
    denials: u32,
    throttle: Option<(Imposed, Gcra)>,
    block: Option<Imposed>,
}

impl IdentityState {
    fn new(now_ms: i64) -> Self {
        IdentityState {
            first_ms: now_ms,
            last_ms: now_ms,
            calls: 0,
            window_start_ms: now_ms,
            window_calls: 0,
            volume_fired_in_window: false,
            baseline: 0.0,
            tools: HashSet::new(),
            tools_overflowed: false,
            denial_window_start_ms: now_ms,
            denials: 0,
            throttle: None,
            block: None,
        }
    }

    fn restricted(&self) -> bool {
        self.block.is_some() || self.throttle.is_some()
    }
}

#[derive(Debug)]
struct SourceState {
    window_start_ms: i64,
    failures: u32,
    last_ms: i64,
    block: Option<Imposed>,
}

/// The detectors and their state, shared by every connection.
pub struct Anomaly {
    config: AnomalyConfig,
    identities: Mutex<HashMap<String, IdentityState>>,
    sources: Mutex<sources::SourceTable>,
    audit: Arc<AuditLog>,
    /// The shared state store, when replicas share one: every restriction
    /// imposed here is published to it, and local ones are re-checked
    /// against it. Set once at start.
    shared: std::sync::OnceLock<Arc<dyn SharedRestrictions>>,
    /// The blocks file, when blocks are kept across restarts.
    persist: std::sync::OnceLock<Arc<persist::Persist>>,
}

/// The figures behind an action, for the audit record.
type Figures = BTreeMap<&'static str, f64>;

impl Anomaly {
    /// Detectors configured by `config`, writing their actions to `audit`.
    pub fn new(config: AnomalyConfig, audit: Arc<AuditLog>) -> Self {
        Anomaly {
            config,
            identities: Mutex::new(HashMap::new()),
            sources: Mutex::new(sources::SourceTable::default()),
            audit,
            shared: std::sync::OnceLock::new(),
            persist: std::sync::OnceLock::new(),
        }
    }

    /// Links the detectors to the shared state store (once, at start).
    pub fn share_with(&self, store: Arc<dyn SharedRestrictions>) {
        let _ = self.shared.set(store);
    }

    fn publish(&self, restriction: Restriction) {
        if let Some(s) = self.shared.get() {
            s.publish(restriction);
        }
    }

    /// Whether `i` is to be checked against the store before it is
    /// enforced again: the store answers and its last word is old.
    fn recheck_due(&self, i: &Imposed, now_ms: i64) -> bool {
        self.shared.get().is_some_and(|s| s.live())
            && now_ms.saturating_sub(i.checked_ms) >= RECHECK_MS
    }

    /// Stage 3 with a shared store: what the store says of `client_id`'s
    /// block (`stored`) and when an operator last unblocked it
    /// (`unblocked_ms`, 0: never), against what this replica holds.
    /// A stored block is mirrored here (so stage 2 refuses the next calls
    /// without asking); a local restriction imposed before the last unblock
    /// is lifted (the unblock was given on another replica); a local block
    /// the store does not know (written while it was away) still holds and
    /// is published again. Returns the block to enforce, if any.
    pub fn reconcile(
        &self,
        client_id: &str,
        stored: Option<StoredRestriction>,
        unblocked_ms: i64,
        now_ms: i64,
    ) -> Admission {
        let mut map = lock(&self.identities);
        if let Some(b) = stored {
            if !map.contains_key(client_id) && !self.make_room(&mut map) {
                return Admission::Blocked {
                    detector: detector_name(&b.detector),
                    until_ms: b.until_ms,
                };
            }
            let state = map
                .entry(client_id.to_string())
                .or_insert_with(|| IdentityState::new(now_ms));
            let mirrored = state.block.as_ref().is_none_or(|l| l.mirrored);
            let imposed = Imposed {
                detector: detector_name(&b.detector),
                since_ms: b.since_ms,
                until_ms: b.until_ms,
                checked_ms: now_ms,
                mirrored,
            };
            let verdict = Admission::Blocked {
                detector: imposed.detector,
                until_ms: imposed.until_ms,
            };
            state.block = Some(imposed);
            return verdict;
        }
        let Some(state) = map.get_mut(client_id) else {
            return Admission::Allow;
        };
        let mut verdict = Admission::Allow;
        if let Some(b) = state.block.as_mut() {
            if b.since_ms <= unblocked_ms || b.mirrored {
                // Lifted by an operator elsewhere, or ended there.
                tracing::info!(
                    client.id = client_id,
                    "block lifted: the shared state store no longer holds it"
                );
                let detector = b.detector;
                let by_operator = b.since_ms <= unblocked_ms;
                state.block = None;
                state.denials = 0;
                self.blocks_changed();
                self.record_dropped(Some(client_id), None, detector, by_operator, now_ms);
            } else {
                b.checked_ms = now_ms;
                verdict = Admission::Blocked {
                    detector: b.detector,
                    until_ms: b.until_ms,
                };
                let again = restriction("identity", client_id.to_string(), "block", b);
                self.publish(again);
            }
        }
        if let Some((t, _)) = state.throttle.as_mut() {
            if t.since_ms <= unblocked_ms {
                state.throttle = None;
            } else {
                t.checked_ms = now_ms;
            }
        }
        verdict
    }

    /// Before a connection's handshake, with a shared store: what the
    /// store says of the source's block and last unblock, against this
    /// replica's. Returns whether the source is blocked.
    pub fn reconcile_source(
        &self,
        source: IpAddr,
        stored: Option<StoredRestriction>,
        unblocked_ms: i64,
        now_ms: i64,
    ) -> bool {
        let key = source_key(source);
        let mut map = lock(&self.sources);
        match stored {
            Some(b) if b.until_ms.is_none_or(|u| now_ms < u) => {
                if !map.contains_key(&key) && map.len() >= self.config.max_sources {
                    return true;
                }
                let state = map.get_or_insert(key, now_ms);
                let mirrored = state.block.as_ref().is_none_or(|l| l.mirrored);
                state.block = Some(Imposed {
                    detector: "source_failures",
                    since_ms: b.since_ms,
                    until_ms: b.until_ms,
                    checked_ms: now_ms,
                    mirrored,
                });
                true
            }
            _ => {
                let Some(state) = map.get_mut(&key) else {
                    return false;
                };
                match state.block.as_mut() {
                    Some(b) if b.since_ms <= unblocked_ms || b.mirrored => {
                        let by_operator = b.since_ms <= unblocked_ms;
                        state.block = None;
                        state.failures = 0;
                        self.blocks_changed();
                        let text = source_text(key);
                        self.record_dropped(
                            None,
                            Some(&text),
                            "source_failures",
                            by_operator,
                            now_ms,
                        );
                        false
                    }
                    Some(b) => {
                        b.checked_ms = now_ms;
                        let again = restriction("source", source_text(key), "block", b);
                        self.publish(again);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// Whether this source has a block held here that the store need not
    /// be asked about now (see [`Anomaly::reconcile_source`]).
    pub fn source_blocked_locally(&self, source: IpAddr, now_ms: i64) -> bool {
        let key = source_key(source);
        lock(&self.sources)
            .get(&key)
            .and_then(|s| s.block.as_ref())
            .is_some_and(|b| b.until_ms.is_none_or(|u| now_ms < u))
    }

    /// A block of `client_id` held here and not ended, however old its
    /// last check against the shared store: what holds when that check
    /// cannot be made. Returns its detector and end.
    pub fn blocked_here(
        &self,
        client_id: &str,
        now_ms: i64,
    ) -> Option<(&'static str, Option<i64>)> {
        lock(&self.identities)
            .get(client_id)
            .and_then(|s| s.block.as_ref())
            .filter(|b| b.until_ms.is_none_or(|u| now_ms < u))
            .map(|b| (b.detector, b.until_ms))
    }

    /// The configuration in force.
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    fn cooldown(&self, own: Option<u64>) -> u64 {
        own.unwrap_or(self.config.cooldown_secs)
    }

    /// Stage 2: is the identity blocked, or throttled and over its
    /// throttle rate? Expired restrictions are lifted (and recorded) here.
    pub fn admit(&self, client_id: &str, now_ms: i64) -> Admission {
        self.admit_with(client_id, now_ms, true)
    }

    /// [`Anomaly::admit`] on this replica's copy alone, however old (for
    /// what no shared store checks afterwards: renewals).
    pub fn admit_here(&self, client_id: &str, now_ms: i64) -> Admission {
        self.admit_with(client_id, now_ms, false)
    }

    fn admit_with(&self, client_id: &str, now_ms: i64, recheck: bool) -> Admission {
        let mut map = lock(&self.identities);
        let Some(state) = map.get_mut(client_id) else {
            return Admission::Allow;
        };
        if let Some(b) = &state.block {
            if b.until_ms.is_some_and(|u| now_ms >= u) {
                let (detector, mirrored) = (b.detector, b.mirrored);
                state.block = None;
                if !mirrored {
                    self.record(
                        client_id,
                        None,
                        detector,
                        "block_expired",
                        Figures::new(),
                        None,
                        now_ms,
                    );
                }
            } else if recheck && self.recheck_due(b, now_ms) {
                // The shared store decides at stage 3 (Anomaly::reconcile).
            } else {
                return Admission::Blocked {
                    detector: b.detector,
                    until_ms: b.until_ms,
                };
            }
        }
        if let Some((t, gcra)) = &mut state.throttle {
            if t.until_ms.is_some_and(|u| now_ms >= u) {
                let detector = t.detector;
                state.throttle = None;
                self.record(
                    client_id,
                    None,
                    detector,
                    "throttle_expired",
                    Figures::new(),
                    None,
                    now_ms,
                );
            } else if recheck && self.recheck_due(t, now_ms) {
                // The store's throttle applies at stage 3 for every replica.
            } else if let Err(wait) = gcra.check(now_ms) {
                return Admission::Throttled {
                    retry_after_ms: wait,
                };
            }
        }
        Admission::Allow
    }

    /// Stage 7: one call that passed every check so far. Runs the volume,
    /// new-tool and off-hours detectors; returns the block if one of them
    /// just blocked the identity (this call is then refused too).
    pub fn observe_call(
        &self,
        client_id: &str,
        tool: Option<&str>,
        in_allowed_hours: bool,
        now_ms: i64,
    ) -> Admission {
        let c = &self.config;
        let mut map = lock(&self.identities);
        if !map.contains_key(client_id) && !self.make_room(&mut map) {
            tracing::warn!(
                client.id = client_id,
                "anomaly state is full; this identity is not tracked"
            );
            return Admission::Allow;
        }
        let state = map
            .entry(client_id.to_string())
            .or_insert_with(|| IdentityState::new(now_ms));
        state.last_ms = now_ms;
        state.calls += 1;
        let mut fired: Vec<(&'static str, Action, Option<u64>, Figures)> = Vec::new();

        // Volume: close finished windows into the baseline, then count.
        if c.volume.action != Action::Off {
            let window_ms = secs_ms(c.volume.window_secs).max(1);
            let elapsed = now_ms.saturating_sub(state.window_start_ms);
            if elapsed >= window_ms {
                let windows = (elapsed / window_ms).max(1);
                let alpha =
                    1.0 - 0.5f64.powf(c.volume.window_secs as f64 / c.volume.half_life_secs as f64);
                // The finished window, then any empty ones after it.
                state.baseline += alpha * (f64::from(state.window_calls) - state.baseline);
                state.baseline *=
                    (1.0 - alpha).powi(i32::try_from(windows - 1).unwrap_or(i32::MAX));
                state.window_start_ms = state
                    .window_start_ms
                    .saturating_add(windows.saturating_mul(window_ms));
                state.window_calls = 0;
                state.volume_fired_in_window = false;
            }
            state.window_calls = state.window_calls.saturating_add(1);
            let threshold = (c.volume.factor * state.baseline).max(f64::from(c.volume.floor));
            if f64::from(state.window_calls) > threshold && !state.volume_fired_in_window {
                state.volume_fired_in_window = true;
                fired.push((
                    "volume",
                    c.volume.action,
                    c.volume.cooldown_secs,
                    Figures::from([
                        ("calls_in_window", f64::from(state.window_calls)),
                        ("window_secs", c.volume.window_secs as f64),
                        ("baseline", (state.baseline * 100.0).round() / 100.0),
                        ("threshold", (threshold * 100.0).round() / 100.0),
                    ]),
                ));
            }
        }

        // New tool: learn during the window, then flag first uses.
        if let (Some(tool), true) = (tool, c.new_tool.action != Action::Off) {
            let learning = state.calls <= c.new_tool.learning_calls
                && now_ms.saturating_sub(state.first_ms) < secs_ms(c.new_tool.learning_secs);
            let full = state.tools.len() >= c.new_tool.max_tools;
            // Beyond max_tools a tool cannot be remembered: new tools are
            // then reported once, together, rather than on every call.
            let reported = full && state.tools_overflowed;
            if !state.tools.contains(tool) && !reported {
                if full {
                    state.tools_overflowed = true;
                }
                if !learning {
                    fired.push((
                        "new_tool",
                        c.new_tool.action,
                        c.new_tool.cooldown_secs,
                        Figures::from([
                            ("known_tools", state.tools.len() as f64),
                            ("calls_seen", state.calls as f64),
                        ]),
                    ));
                }
                // Remembered either way, so it fires once per tool.
                if state.tools.len() < c.new_tool.max_tools {
                    state.tools.insert(tool.to_string());
                }
            }
        }

        if !in_allowed_hours && c.off_hours.action != Action::Off {
            fired.push((
                "off_hours",
                c.off_hours.action,
                c.off_hours.cooldown_secs,
                Figures::new(),
            ));
        }

        let mut verdict = Admission::Allow;
        for (detector, action, cooldown, figures) in fired {
            let until = self.impose(
                client_id,
                state,
                detector,
                action,
                self.cooldown(cooldown),
                now_ms,
            );
            let tool_name = if detector == "new_tool" { tool } else { None };
            self.record(
                client_id,
                tool_name,
                detector,
                action.as_str(),
                figures,
                until,
                now_ms,
            );
            if action == Action::Block {
                verdict = Admission::Blocked {
                    detector,
                    until_ms: until,
                };
            }
        }
        verdict
    }

    /// A refusal of a registered identity's request for something it did
    /// (signature, replay, message, authorization, arguments). Admission
    /// refusals (rate, blocks) must not be passed here: a block would feed
    /// itself.
    pub fn observe_denial(&self, client_id: &str, reason: &'static str, now_ms: i64) {
        let c = &self.config.denials;
        if c.action == Action::Off {
            return;
        }
        let mut map = lock(&self.identities);
        if !map.contains_key(client_id) && !self.make_room(&mut map) {
            return;
        }
        let state = map
            .entry(client_id.to_string())
            .or_insert_with(|| IdentityState::new(now_ms));
        state.last_ms = now_ms;
        if now_ms.saturating_sub(state.denial_window_start_ms) >= secs_ms(c.window_secs) {
            state.denial_window_start_ms = now_ms;
            state.denials = 0;
        }
        state.denials = state.denials.saturating_add(1);
        if state.denials == c.threshold {
            let figures = Figures::from([
                ("denials_in_window", f64::from(state.denials)),
                ("window_secs", c.window_secs as f64),
            ]);
            let until = self.impose(
                client_id,
                state,
                "denials",
                c.action,
                self.cooldown(c.cooldown_secs),
                now_ms,
            );
            tracing::warn!(client.id = client_id, last_reason = reason, "denial burst");
            self.record(
                client_id,
                None,
                "denials",
                c.action.as_str(),
                figures,
                until,
                now_ms,
            );
        }
    }

    /// A failure from `source`: a refused handshake, an unknown identity or
    /// an unknown key id. Returns whether the source is now blocked.
    pub fn observe_source_failure(&self, source: IpAddr, now_ms: i64) -> bool {
        let c = &self.config.source_failures;
        if c.action == Action::Off {
            return false;
        }
        let source = source_key(source);
        let mut map = lock(&self.sources);
        // Full: forget the least recently seen unblocked source, so a new
        // one is always tracked (an attacker cannot fill the table to switch
        // the detector off), in a bounded number of steps.
        if !map.contains_key(&source) && !map.make_room(self.config.max_sources, now_ms) {
            return false;
        }
        let state = map.seen(source, now_ms);
        if state.block.is_some() {
            return true;
        }
        if now_ms.saturating_sub(state.window_start_ms) >= secs_ms(c.window_secs) {
            state.window_start_ms = now_ms;
            state.failures = 0;
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures < c.threshold {
            return false;
        }
        let figures = Figures::from([
            ("failures_in_window", f64::from(state.failures)),
            ("window_secs", c.window_secs as f64),
        ]);
        let until = match c.action {
            Action::Block => {
                let until = until_of(now_ms, self.cooldown(c.cooldown_secs));
                let imposed = Imposed::new("source_failures", now_ms, until);
                self.publish(restriction(
                    "source",
                    source_text(source),
                    "block",
                    &imposed,
                ));
                state.block = Some(imposed);
                self.blocks_changed();
                until
            }
            _ => None,
        };
        if state.failures == c.threshold || c.action == Action::Block {
            self.record_source(source, c.action.as_str(), figures, until, now_ms);
        }
        c.action == Action::Block
    }

    /// Whether new connections from `source` are refused now.
    pub fn source_blocked(&self, source: IpAddr, now_ms: i64) -> bool {
        let source = source_key(source);
        let mut map = lock(&self.sources);
        let Some(state) = map.get_mut(&source) else {
            return false;
        };
        match &state.block {
            Some(b) if b.until_ms.is_some_and(|u| now_ms >= u) => {
                let mirrored = b.mirrored;
                state.block = None;
                state.failures = 0;
                if !mirrored {
                    self.record_source(source, "block_expired", Figures::new(), None, now_ms);
                }
                false
            }
            // With a shared store, the connection's task asks it first.
            Some(b) if self.recheck_due(b, now_ms) => false,
            Some(_) => true,
            None => false,
        }
    }

    /// Every current block and throttle, identities first, sorted.
    pub fn restrictions(&self, now_ms: i64) -> Vec<Restriction> {
        let mut out = Vec::new();
        for (id, s) in lock(&self.identities).iter() {
            let live = |i: &Imposed| i.until_ms.is_none_or(|u| now_ms < u);
            if let Some(b) = s.block.as_ref().filter(|b| live(b)) {
                out.push(restriction("identity", id.clone(), "block", b));
            }
            if let Some((t, _)) = s.throttle.as_ref().filter(|(t, _)| live(t)) {
                out.push(restriction("identity", id.clone(), "throttle", t));
            }
        }
        for (ip, s) in lock(&self.sources).iter() {
            if let Some(b) = s
                .block
                .as_ref()
                .filter(|b| b.until_ms.is_none_or(|u| now_ms < u))
            {
                out.push(restriction("source", source_text(*ip), "block", b));
            }
        }
        out.sort_by(|a, b| (a.subject, &a.id, a.action).cmp(&(b.subject, &b.id, b.action)));
        out
    }

    /// Lifts every block and throttle of `id` (a client id or a source
    /// address), recording who did it. Returns how many were lifted.
    pub fn unblock(&self, id: &str, by: &str, now_ms: i64) -> usize {
        self.unblock_with(id, by, now_ms, (0, 0))
    }

    /// [`Anomaly::unblock`], where the shared state store lifted `stored`
    /// (identity, source) restrictions too: the count and the audit record
    /// say what was lifted on any replica, each restriction once.
    pub fn unblock_with(&self, id: &str, by: &str, now_ms: i64, stored: (usize, usize)) -> usize {
        let mut of_identity = 0;
        if let Some(s) = lock(&self.identities).get_mut(id) {
            of_identity =
                usize::from(s.block.take().is_some()) + usize::from(s.throttle.take().is_some());
            s.denials = 0;
        }
        let mut of_source = 0;
        let mut source = None;
        if let Some(key) = id
            .trim_end_matches("/64")
            .parse::<IpAddr>()
            .ok()
            .map(source_key)
        {
            if let Some(s) = lock(&self.sources).get_mut(&key) {
                of_source = usize::from(s.block.take().is_some());
                s.failures = 0;
            }
            source = Some(source_text(key));
        }
        let of_identity = of_identity.max(stored.0);
        let of_source = of_source.max(stored.1);
        let lifted = of_identity + of_source;
        if lifted > 0 {
            self.blocks_changed();
            self.audit.anomaly_event(&AnomalyEvent {
                ts: crate::audit::rfc3339_ms(now_ms),
                event: "anomaly",
                detector: "operator",
                action: "unblock",
                client_id: (of_identity > 0).then_some(id),
                source: source.as_deref().filter(|_| of_source > 0),
                tool: None,
                figures: Figures::from([("lifted", lifted as f64)]),
                until: None,
                by: Some(by),
            });
        }
        lifted
    }

    /// Frees one slot in a full identity map by forgetting the least
    /// recently seen identity that is not restricted; false if none can go.
    fn make_room(&self, map: &mut HashMap<String, IdentityState>) -> bool {
        if map.len() < self.config.max_identities {
            return true;
        }
        let victim = map
            .iter()
            .filter(|(_, s)| !s.restricted())
            .min_by_key(|(_, s)| s.last_ms)
            .map(|(id, _)| id.clone());
        match victim {
            Some(id) => {
                map.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Applies `action` to `state`; returns when it ends.
    fn impose(
        &self,
        id: &str,
        state: &mut IdentityState,
        detector: &'static str,
        action: Action,
        cooldown_secs: u64,
        now_ms: i64,
    ) -> Option<i64> {
        let until = until_of(now_ms, cooldown_secs);
        let imposed = Imposed::new(detector, now_ms, until);
        match action {
            Action::Block => {
                self.publish(restriction("identity", id.to_string(), "block", &imposed));
                state.block = Some(imposed);
                self.blocks_changed();
                until
            }
            Action::Throttle => {
                // A throttle always ends: "until unblocked" is for blocks,
                // so a cool-down of 0 means the default here.
                let secs = if cooldown_secs == 0 {
                    DEFAULT_COOLDOWN_SECS
                } else {
                    cooldown_secs
                };
                let until = Some(now_ms.saturating_add(secs_ms(secs)));
                let imposed = Imposed {
                    until_ms: until,
                    ..imposed
                };
                self.publish(restriction(
                    "identity",
                    id.to_string(),
                    "throttle",
                    &imposed,
                ));
                state.throttle = Some((imposed, Gcra::new(self.config.throttle)));
                until
            }
            Action::Alert | Action::Off => None,
        }
    }
}

fn until_of(now_ms: i64, cooldown_secs: u64) -> Option<i64> {
    (cooldown_secs > 0).then(|| now_ms.saturating_add(secs_ms(cooldown_secs)))
}

/// Seconds as milliseconds, saturating (config values are capped anyway).
fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
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
fn source_text(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

fn restriction(
    subject: &'static str,
    id: String,
    action: &'static str,
    i: &Imposed,
) -> Restriction {
    Restriction {
        subject,
        id,
        action,
        detector: i.detector,
        since_ms: i.since_ms,
        until_ms: i.until_ms,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

mod persist;
mod records;
mod sources;

pub use persist::{check_blocks_file, WriteFile};

#[cfg(test)]
mod tests;
