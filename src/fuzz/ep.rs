//! The European Parliament MCP server's real tool listing (captured once
//! over stdio from european-parliament-mcp-server 1.1.26, the version in
//! node_modules: tests/fixtures/fuzz/ep-tools-list-1.1.26.json), compiled
//! once into the pinned tools the gateway would enforce, plus one sample
//! tool with an outputSchema (the EP server declares none).

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::policy::pins::PinnedTool;

/// The captured `tools/list` response, byte for byte as the server wrote
/// it (one JSON-RPC response).
pub(super) const LISTING: &str =
    include_str!("../../tests/fixtures/fuzz/ep-tools-list-1.1.26.json");

/// The tool definitions of [`LISTING`].
pub(super) fn definitions() -> Vec<Value> {
    let v: Value = serde_json::from_str(LISTING).expect("the committed listing is JSON");
    v["result"]["tools"]
        .as_array()
        .expect("the committed listing has a tools array")
        .clone()
}

/// A tool with an outputSchema, so results are checked against one.
pub(super) fn sample_output_tool() -> Value {
    json!({
        "name": "sample_counts",
        "description": "Counts by country (sample tool with an outputSchema).",
        "inputSchema": {"type": "object", "properties": {"country": {"type": "string"}}},
        "outputSchema": {
            "type": "object",
            "properties": {
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "count": {"type": "integer", "minimum": 0}
            },
            "required": ["country", "count"],
            "additionalProperties": false
        }
    })
}

/// Every EP tool compiled as the router compiles it, then the sample
/// output tool last; built once.
pub(super) fn tools() -> &'static [PinnedTool] {
    static TOOLS: OnceLock<Vec<PinnedTool>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        definitions()
            .into_iter()
            .chain([sample_output_tool()])
            .map(|d| PinnedTool::compile(d).expect("every EP tool compiles"))
            .collect()
    })
}
