//! The tool definitions: one data file per tool, `tools/<name>.json`, each an
//! MCP Tool object copied verbatim from the `tools/list` answer of
//! `european-parliament-mcp-server` v1.1.26. They are compiled in and parsed
//! once, when the backend is built; this module must never edit a definition
//! (the router pins them, and clients rely on them matching the real server).

use serde_json::Value;

/// Pairs each tool name with its definition file, so a name and its file
/// cannot drift apart.
macro_rules! tool_files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("tools/", $name, ".json")))),*]
    };
}

/// Every tool's name and the text of its definition file, in the real
/// server's `tools/list` order.
pub(super) const TOOL_FILES: [(&str, &str); 8] = tool_files![
    "get_meps",
    "get_mep_details",
    "get_plenary_sessions",
    "get_voting_records",
    "search_documents",
    "get_committee_info",
    "get_parliamentary_questions",
    "get_current_meps",
];

/// Parses every definition file, in order. The files are compiled in and
/// checked by the unit tests, so a failure is a build defect, never a
/// consequence of input.
pub(super) fn load() -> Vec<Value> {
    TOOL_FILES
        .iter()
        .map(|(name, text)| {
            serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("embedded tool definition tools/{name}.json: {e}"))
        })
        .collect()
}
