//! The gateway's side of witnessing (docs/OPERATIONS.md, "Witnessing
//! policy"): a task that has every signed checkpoint of the audit log
//! cosigned by the witnesses of `[audit.witness]`, records the cosigned
//! ones in the trail, and decides, by the quorum policy, whether calls
//! are still served.
//!
//! It must never put a witness on the request path (the request path only
//! loads [`WitnessGate::refusing`]), never count a cosignature that did not
//! verify under its witness's configured key, and never keep the audit
//! trail alive.
//!
//! Layout: `policy` (the quorum policy, the gate and its metrics), then
//! `task` (the task that submits, collects and records).

mod policy;
mod task;

pub use policy::{WitnessCollector, WitnessGate};
pub use task::{start_witnessing, witness_log};
