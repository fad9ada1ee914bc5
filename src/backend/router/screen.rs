//! The pure part of pinning a backend's listing, shared by
//! [`super::Router::sync`] and the `backend_output` fuzz target: which
//! definitions compile and which are refused ([`screen`]: a name listed
//! twice is refused entirely, an invalid definition alone), and what a pin
//! file makes of a compiled tool ([`pin_verdict`]: served only with the
//! digest it was pinned with).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::policy::pins::{PinnedTool, ToolDigest};
use crate::policy::PinFile;

/// One tool refused by [`screen`], in listing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `tool_listed_twice` or `tool_definition_invalid` (the audit event).
    pub kind: &'static str,
    /// The tool's name: for a name listed twice always (bounded and
    /// escaped by the audit event), for an invalid definition only when
    /// the name is a valid one.
    pub tool: Option<String>,
    /// Why its definition did not compile.
    pub error: Option<String>,
}

/// A listing screened: the tools that compiled (names listed once), the
/// valid names refused (kept out of the routing table), and each refusal.
#[derive(Debug, Default)]
pub struct Screened {
    /// Compiled tools, in listing order.
    pub compiled: Vec<PinnedTool>,
    /// Valid names refused: listed twice (once each) or with an invalid
    /// definition.
    pub invalid: Vec<String>,
    /// Every refusal, in listing order (a name listed twice once).
    pub refusals: Vec<Refusal>,
}

/// Compiles each definition of `listed`; a tool whose name is listed twice
/// is refused entirely (neither definition is served), one that does not
/// compile is refused alone.
pub fn screen(listed: Vec<Value>) -> Screened {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for def in &listed {
        if let Some(n) = def.get("name").and_then(Value::as_str) {
            *counts.entry(n.to_string()).or_default() += 1;
        }
    }
    let mut out = Screened::default();
    let mut seen_twice: HashSet<String> = HashSet::new();
    for def in listed {
        let tool_name = def
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if counts.get(&tool_name).copied().unwrap_or(0) > 1 {
            if seen_twice.insert(tool_name.clone()) {
                // Recorded (the audit event bounds and escapes it), but an
                // invalid name is not kept out of the table under its name:
                // it could never be served, and it could clash with another
                // backend's name there.
                let valid = crate::jsonrpc::valid_tool_name(&tool_name);
                out.refusals.push(Refusal {
                    kind: "tool_listed_twice",
                    tool: Some(tool_name.clone()),
                    error: None,
                });
                if valid {
                    out.invalid.push(tool_name);
                }
            }
            continue;
        }
        match PinnedTool::compile(def) {
            Ok(t) => out.compiled.push(t),
            Err(e) => {
                let valid = crate::jsonrpc::valid_tool_name(&tool_name);
                out.refusals.push(Refusal {
                    kind: "tool_definition_invalid",
                    tool: valid.then(|| tool_name.clone()),
                    error: Some(e.to_string()),
                });
                if valid {
                    out.invalid.push(tool_name);
                }
            }
        }
    }
    out
}

/// What the pins make of one compiled tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinVerdict<'a> {
    /// Served: pinned with this very digest, or no pin file applies.
    Serve,
    /// Pinned with another digest: refused (`tool_definition_changed`).
    Changed(&'a ToolDigest),
    /// Not in the pin file: refused until accepted (`tool_added`).
    Added,
}

/// The verdict of `pins` (`None`: built-in tools, no pin file) on `tool`.
pub fn pin_verdict<'a>(pins: Option<&'a PinFile>, tool: &PinnedTool) -> PinVerdict<'a> {
    match pins.map(|p| p.accepted(&tool.name)) {
        Some(Some(pinned)) if *pinned != tool.digest => PinVerdict::Changed(pinned),
        Some(None) => PinVerdict::Added,
        _ => PinVerdict::Serve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_listed_twice_is_refused_and_only_a_valid_one_kept_out_by_name() {
        let tool = |n: &str| json!({"name": n, "inputSchema": {"type": "object"}});
        let s = screen(vec![
            tool("dup"),
            tool("dup"),
            tool("clash:foo"),
            tool("clash:foo"),
            tool("fine"),
        ]);
        let compiled: Vec<&str> = s.compiled.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(compiled, ["fine"]);
        assert_eq!(s.invalid, ["dup"]);
        let recorded: Vec<(&str, Option<&str>)> = s
            .refusals
            .iter()
            .map(|r| (r.kind, r.tool.as_deref()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("tool_listed_twice", Some("dup")),
                ("tool_listed_twice", Some("clash:foo"))
            ]
        );
    }
}
