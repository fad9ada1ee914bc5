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
//!
//! Layout: a file per detector (`volume`, `new_tool`, `off_hours`,
//! `denials`, `source_failures`) holds its `[anomaly.<detector>]` section,
//! the state it counts in and its step, and knows nothing of the others;
//! the shared types sit in leaves named after what they own (`action`,
//! `window`, `restriction`, `throttle`, `identity`, `sources`,
//! `blocks_file`, `config`). [`Anomaly`] (`tracker`) holds it all; what runs
//! the detectors is named after when it runs: `admission` (stage 2 and the
//! accept loop), `observe` (stage 7 and refusals), `reconcile` (the shared
//! store), `operator` (`admin blocks`, unblock), `records` (the audit
//! trail), `persist` (the blocks file).

mod action;
mod admission;
mod blocks_file;
mod config;
mod denials;
mod identity;
mod new_tool;
mod observe;
mod off_hours;
mod operator;
mod persist;
mod reconcile;
mod records;
mod restriction;
mod source_failures;
mod sources;
mod throttle;
mod tracker;
mod volume;
mod window;

pub use action::{Action, Admission};
pub use blocks_file::{check_blocks_file, WriteFile};
pub use config::AnomalyConfig;
pub use denials::DenialsConfig;
pub use new_tool::NewToolConfig;
pub use off_hours::OffHoursConfig;
pub use restriction::{
    detector_name, Restriction, SharedRestrictions, StoredRestriction, DETECTORS, RECHECK_MS,
};
pub use source_failures::SourceFailuresConfig;
pub use sources::{source_key, source_label};
pub use tracker::Anomaly;
pub use volume::VolumeConfig;

#[cfg(test)]
mod tests;
