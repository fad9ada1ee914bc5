//! Embedded MCP backend: a small, offline stand-in for the European Parliament
//! MCP Server (npm package `european-parliament-mcp-server`, v1.1.26).
//!
//! What it owns:
//! - The tool definitions (`name`, `description`, `inputSchema`, `category`) of a
//!   subset of that server's tools, copied verbatim from its `tools/list` answer
//!   into one data file per tool, `tools/<name>.json` (`definitions.rs`).
//! - The argument validation for those tools, mirroring the server's Zod schemas
//!   (types, integer-only `limit`/`offset`, ranges, lengths, patterns, enums)
//!   (`args.rs`, `page.rs`).
//! - The answers, computed with real filtering and pagination (`query.rs`) over the
//!   bundled dataset `sample_data.json` (`dataset.rs`), in the same result format as
//!   the real server: a `CallToolResult` whose single text content is
//!   pretty-printed JSON (`call_result.rs`).
//!
//! The data is SAMPLE DATA: every MEP, e-mail address, committee membership,
//! document, question, plenary session and vote in `sample_data.json` is
//! fictional and invented for offline use, tests and demos. It is NOT real
//! European Parliament data, and every result says so in its `dataSource` field.
//!
//! What it must never do: present its data as real European Parliament data,
//! reach the network, touch the file system at run time (the dataset and the
//! tool definitions are compiled in), or panic on any input: bad arguments and
//! unknown tools become `isError: true` results.

mod args;
mod call_result;
mod dataset;
mod definitions;
mod page;
mod query;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use args::Args;
use call_result::{failure, success, CallError};
use dataset::Dataset;

/// The embedded backend: parsed sample dataset and tool definitions, built once.
pub struct EmbeddedTools {
    /// The MCP Tool objects, in the real server's `tools/list` order.
    tools: Vec<Value>,
    /// The fictional records every tool answers from.
    data: Dataset,
}

impl Default for EmbeddedTools {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedTools {
    /// Loads the bundled sample dataset (`include_str!("sample_data.json")`) and tool definitions.
    pub fn new() -> Self {
        // Both are compiled into the binary and covered by unit tests, so a
        // failure here is a build defect, never a consequence of input.
        Self {
            tools: definitions::load(),
            data: Dataset::bundled(),
        }
    }

    /// MCP Tool objects (`name`, `description`, `inputSchema`, `category`), in the real server's order.
    pub fn tool_definitions(&self) -> &[Value] {
        &self.tools
    }

    /// Runs one tool and returns an MCP `CallToolResult`:
    /// `{"content":[{"type":"text","text":<pretty JSON>}]}` on success, and
    /// `{"content":[{"type":"text","text":<pretty JSON {"error","toolName","dataSource"}>}],"isError":true}`
    /// for an unknown tool, invalid arguments or nothing found. Never panics.
    pub fn call(&self, name: &str, arguments: &Map<String, Value>) -> Value {
        let args = Args::new(arguments);
        let data = &self.data;
        let result = match name {
            "get_meps" => data.get_meps(&args),
            "get_mep_details" => data.get_mep_details(&args),
            "get_plenary_sessions" => data.get_plenary_sessions(&args),
            "get_voting_records" => data.get_voting_records(&args),
            "search_documents" => data.search_documents(&args),
            "get_committee_info" => data.get_committee_info(&args),
            "get_parliamentary_questions" => data.get_parliamentary_questions(&args),
            "get_current_meps" => data.get_current_meps(&args),
            _ => Err(CallError::UnknownTool),
        };
        match result {
            Ok(value) => success(&value),
            Err(error) => failure(name, &error),
        }
    }
}
