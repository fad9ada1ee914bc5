//! The audit trail's event records: security events, anomaly actions,
//! refusal summaries, and the bare event body the writer and the sinks
//! fill for their own events. Names, dates, digests and counts only, never
//! an argument value.

use serde::Serialize;

use super::timestamp::now_rfc3339;

/// A security event in the audit trail. Like request records, it holds
/// names and digests only.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityEvent<'a> {
    /// RFC 3339 UTC, millisecond precision.
    pub ts: String,
    /// e.g. `tool_definition_changed`, `tool_added`, `tools_pinned_on_first_use`,
    /// `tools_not_pinned`.
    pub event: &'a str,
    /// The configured name of the backend concerned.
    pub backend: &'a str,
    /// The tool concerned, when the event is about one tool.
    pub tool: Option<&'a str>,
    /// The pinned definition's digest (`sha256:<hex>`), never the definition.
    pub pinned_digest: Option<&'a str>,
    /// The digest of the definition the backend now offers.
    pub offered_digest: Option<&'a str>,
    /// For a summary (`tool_refusals_summarised`): how many refusals it
    /// stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl<'a> SecurityEvent<'a> {
    /// An event stamped now, with no tool or digests yet.
    pub fn new(event: &'a str, backend: &'a str) -> Self {
        SecurityEvent {
            ts: now_rfc3339(),
            event,
            backend,
            tool: None,
            pinned_digest: None,
            offered_digest: None,
            count: None,
        }
    }
}

/// An anomaly detector's action, its expiry, or an operator's unblock. Names
/// and figures only: never argument values.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyEvent<'a> {
    /// RFC 3339 UTC, millisecond precision, on the gateway's clock.
    pub ts: String,
    /// Always `anomaly`.
    pub event: &'static str,
    /// `volume`, `new_tool`, `off_hours`, `denials`, `source_failures`, or
    /// `operator` for an unblock.
    pub detector: &'static str,
    /// `alert`, `throttle`, `block`, `block_expired`, `throttle_expired` or
    /// `unblock`.
    pub action: &'static str,
    /// The identity concerned, when the subject is an identity.
    pub client_id: Option<&'a str>,
    /// The source address concerned, when the subject is a source.
    pub source: Option<&'a str>,
    /// The tool name, for `new_tool` (a validated name, never arguments).
    pub tool: Option<&'a str>,
    /// The figures that fired the detector (counts, rates, thresholds).
    pub figures: std::collections::BTreeMap<&'static str, f64>,
    /// When a throttle or block ends by itself; absent: never (or no
    /// restriction).
    pub until: Option<String>,
    /// The admin who lifted a restriction.
    pub by: Option<&'a str>,
}

/// Repeated admission refusals of one identity (or source) and reason,
/// counted since the previous summary: the first of them has its own full
/// record.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalSummary<'a> {
    /// RFC 3339 UTC, millisecond precision: when the count was taken.
    pub ts: String,
    /// Always `refusal_summary`.
    pub event: &'static str,
    /// The client id, or the source address when no identity was read.
    pub who: &'a str,
    /// The stable reason code.
    pub reason: &'static str,
    /// How many more requests were refused.
    pub count: u64,
    /// The interval counted over, in milliseconds.
    pub interval_ms: u64,
}

/// A new event body: `ts` now and `event`.
pub(crate) fn event(name: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("ts".into(), serde_json::json!(now_rfc3339()));
    m.insert("event".into(), serde_json::json!(name));
    m
}
