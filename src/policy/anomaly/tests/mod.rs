//! Every detector driven with a fixed clock: the figure at which it fires,
//! the action, the audit record, the cool-down and the unblock; and a
//! second identity that is never affected.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::sources;
use super::tracker::lock;
use super::*;
use crate::audit::AuditLog;
use crate::policy::RateLimitFile;

mod bounds;
mod clock_jumps;
mod config;
mod denials;
mod new_tool;
mod off_hours;
mod shared_store;
mod source_failures;
mod volume;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn anomaly(config: AnomalyConfig) -> (Anomaly, Arc<AuditLog>) {
    let audit = Arc::new(AuditLog::memory());
    (Anomaly::new(config, audit.clone()), audit)
}

/// The anomaly records written so far, parsed.
fn events(audit: &AuditLog) -> Vec<Value> {
    audit
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["event"] == "anomaly")
        .collect()
}

fn quiet() -> AnomalyConfig {
    let mut c = AnomalyConfig::default();
    c.volume.action = Action::Off;
    c.new_tool.action = Action::Off;
    c.off_hours.action = Action::Off;
    c.denials.action = Action::Off;
    c.source_failures.action = Action::Off;
    c
}
