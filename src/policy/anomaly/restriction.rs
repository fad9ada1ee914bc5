//! A block or throttle in its three forms: as imposed on this replica
//! ([`Imposed`]), as `sealgate admin blocks` lists it ([`Restriction`]),
//! and as the shared state store holds it ([`StoredRestriction`], written
//! through [`SharedRestrictions`]).

use serde::Serialize;

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

/// Every detector's name.
pub const DETECTORS: [&str; 5] = [
    "volume",
    "new_tool",
    "off_hours",
    "denials",
    "source_failures",
];

/// A detector's name from the store, as one of ours (the audit trail and
/// `admin blocks` name detectors by static strings).
pub fn detector_name(name: &str) -> &'static str {
    DETECTORS
        .into_iter()
        .find(|d| *d == name)
        .unwrap_or("shared")
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

/// A block or throttle held on this replica.
#[derive(Debug, Clone)]
pub(super) struct Imposed {
    pub(super) detector: &'static str,
    pub(super) since_ms: i64,
    pub(super) until_ms: Option<i64>,
    /// When the shared store last confirmed it (or it was imposed here).
    pub(super) checked_ms: i64,
    /// Learnt from the store (imposed on another replica): its expiry is
    /// that replica's to record, not this one's.
    pub(super) mirrored: bool,
}

impl Imposed {
    pub(super) fn new(detector: &'static str, since_ms: i64, until_ms: Option<i64>) -> Self {
        Imposed {
            detector,
            since_ms,
            until_ms,
            checked_ms: since_ms,
            mirrored: false,
        }
    }
}

/// `i`, imposed on `subject` `id` as `action`, as `admin blocks` lists it.
pub(super) fn restriction(
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
