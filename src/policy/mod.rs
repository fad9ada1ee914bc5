//! Policy on what a verified request may carry, what its identity may do,
//! and what a backend may answer: pinned tool definitions and their input
//! schemas (`pins`), the sanitizer rules for string arguments (`sanitize`),
//! the checks of tool results (`results`), tiers of allowed methods, tools,
//! rates and hours (`tier`), and anomaly detection per identity and source
//! (`anomaly`).
//!
//! Nothing here holds or verifies a client's keys; everything here refuses
//! with the JSON path and the rule (or the detector and its figures), never
//! with an argument value.

pub mod anomaly;
pub mod pins;
pub mod results;
pub mod sanitize;
mod tier;

pub use anomaly::{Action, Admission, Anomaly, AnomalyConfig, Restriction};
pub use pins::{canonical_json, PinError, PinFile, PinnedTool, ToolDigest};
pub use results::{Findings, ResultError, ResultPolicy};
pub use sanitize::{SanitizeError, SanitizePolicy, SanitizeRules};
pub use tier::{
    quota, AllowedHours, AllowedHoursSpec, Patterns, PolicyFields, RateLimitFile, ToolCost,
};
