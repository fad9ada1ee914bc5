//! Rendering: answers and errors as an MCP `CallToolResult` whose single text
//! content is pretty-printed JSON, as the real server renders them. Every
//! rendered body carries `dataSource`; this module must never render a result
//! without it, nor echo more than [`MAX_ECHOED_NAME`] characters of a tool name.

use serde::Serialize;
use serde_json::{json, Value};

use super::dataset::DATA_SOURCE;

/// Longest tool name echoed back in an "Unknown tool" error.
const MAX_ECHOED_NAME: usize = 128;

/// Why a call failed; rendered as the real server does: `{"error", "toolName"}`.
#[derive(Debug)]
pub(super) enum CallError {
    /// No tool of that name.
    UnknownTool,
    /// Argument rejected by the schema: field (JSON path) and Zod-like message.
    InvalidArgument {
        /// The argument's key.
        field: String,
        /// What is wrong with it, in Zod's words.
        message: String,
    },
    /// Valid arguments but nothing to answer (e.g. unknown MEP id).
    Failed {
        /// The tool's failure prefix (e.g. "Failed to retrieve MEP details").
        context: &'static str,
        /// What was not found.
        message: String,
    },
}

impl CallError {
    /// An [`CallError::InvalidArgument`] for `field`.
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        CallError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The `error` text the real server would give for this failure of `tool`.
    fn render(&self, tool: &str) -> String {
        match self {
            CallError::UnknownTool => format!("Unknown tool: {tool}"),
            CallError::InvalidArgument { field, message } => {
                format!("Invalid arguments: {field}: {message}")
            }
            CallError::Failed { context, message } => format!("{context}: {message}"),
        }
    }
}

/// Serializes a dataset record and tags it with `dataSource`.
pub(super) fn tagged<T: Serialize>(record: &T) -> Value {
    match serde_json::to_value(record) {
        Ok(Value::Object(mut map)) => {
            map.insert("dataSource".into(), json!(DATA_SOURCE));
            Value::Object(map)
        }
        Ok(other) => other,
        Err(_) => json!({ "dataSource": DATA_SOURCE }),
    }
}

/// Serializes dataset records for a page (the page itself carries `dataSource`).
pub(super) fn to_values<T: Serialize>(records: Vec<&T>) -> Vec<Value> {
    records
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

/// Pretty-printed JSON, as the real server's `JSON.stringify(x, null, 2)`.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A successful `CallToolResult` holding `result`.
pub(super) fn success(result: &Value) -> Value {
    json!({ "content": [{ "type": "text", "text": pretty(result) }] })
}

/// An `isError: true` `CallToolResult` for `error` in `tool`.
pub(super) fn failure(tool: &str, error: &CallError) -> Value {
    let tool: String = tool.chars().take(MAX_ECHOED_NAME).collect();
    let body = json!({
        "error": error.render(&tool),
        "toolName": tool,
        "dataSource": DATA_SOURCE,
    });
    json!({ "content": [{ "type": "text", "text": pretty(&body) }], "isError": true })
}
