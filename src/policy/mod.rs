//! Policy on what a verified request may carry: pinned tool definitions and
//! their input schemas, and the sanitizer rules for string arguments.
//!
//! Nothing here sees a client's identity or keys; everything here refuses
//! with the JSON path and the rule, never with an argument value.

pub mod pins;
pub mod results;
pub mod sanitize;

pub use pins::{canonical_json, PinError, PinFile, PinnedTool, ToolDigest};
pub use results::{Findings, ResultError, ResultPolicy};
pub use sanitize::{SanitizeError, SanitizePolicy, SanitizeRules};
pub mod anomaly;
mod tier;
pub use anomaly::{Action, Admission, Anomaly, AnomalyConfig, Restriction};
pub use tier::{
    quota, AllowedHours, AllowedHoursSpec, Patterns, PolicyFields, RateLimitFile, ToolCost,
};
