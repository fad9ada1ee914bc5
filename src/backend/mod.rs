//! Backends: where a verified, authorized MCP request is answered.
//!
//! A [`Backend`] takes a parsed [`Message`] (never the client's raw bytes and
//! never the client's JSON-RPC id: the gateway owns ids) and returns the
//! JSON-RPC `result` or `error` object. The gateway builds the response
//! with the client's id, signs it and audits it. A backend never sees a
//! client certificate, a signature or a key.

pub mod embedded;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::jsonrpc::{Method, PROTOCOL_VERSION};

/// What a backend answered to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The JSON-RPC `result` member.
    Result(Value),
    /// The JSON-RPC `error` member: `{code, message, data?}`.
    Error(Value),
    /// Notifications have no answer.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("the backend is unavailable")]
    Unavailable,
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the backend answered with invalid MCP")]
    Protocol,
}

/// An MCP server behind the gateway.
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &str;
    /// Answers one request or notification.
    async fn handle(
        &self,
        method: Method,
        params: Option<&Map<String, Value>>,
    ) -> Result<Reply, BackendError>;
    /// How many messages reached this backend: an operational counter that
    /// tests also use to prove a denied request never got here.
    fn messages_received(&self) -> u64;
}

/// The built-in backend: the EP MCP Server's tools over bundled sample
/// data, so the gateway works offline on a fresh machine.
pub struct EmbeddedBackend {
    tools: embedded::EmbeddedTools,
    received: AtomicU64,
}

impl EmbeddedBackend {
    pub fn new() -> Self {
        EmbeddedBackend {
            tools: embedded::EmbeddedTools::new(),
            received: AtomicU64::new(0),
        }
    }
}

impl Default for EmbeddedBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid_params(message: &str) -> Reply {
    Reply::Error(json!({"code": -32602, "message": message}))
}

#[tonic::async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        "embedded"
    }

    async fn handle(
        &self,
        method: Method,
        params: Option<&Map<String, Value>>,
    ) -> Result<Reply, BackendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        let reply = match method {
            Method::Initialize => Reply::Result(json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {
                    "name": "sealgate-embedded-ep-sample",
                    "title": "sealgate embedded backend (EP MCP Server tools over fictional sample data)",
                    "version": env!("CARGO_PKG_VERSION"),
                },
                "instructions": "Answers a subset of the European Parliament MCP Server's tools from a small bundled SAMPLE dataset (fictional, not EP data).",
            })),
            Method::Ping => Reply::Result(json!({})),
            Method::ToolsList => Reply::Result(json!({"tools": self.tools.tool_definitions()})),
            Method::ToolsCall => {
                let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
                    return Ok(invalid_params("tools/call needs params.name"));
                };
                let empty = Map::new();
                let arguments = match params.and_then(|p| p.get("arguments")) {
                    None => &empty,
                    Some(Value::Object(a)) => a,
                    Some(_) => return Ok(invalid_params("arguments must be an object")),
                };
                if !self
                    .tools
                    .tool_definitions()
                    .iter()
                    .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
                {
                    return Ok(invalid_params("unknown tool"));
                }
                Reply::Result(self.tools.call(name, arguments))
            }
            Method::ResourcesList => Reply::Result(json!({"resources": []})),
            Method::ResourcesTemplatesList => Reply::Result(json!({"resourceTemplates": []})),
            Method::ResourcesRead => {
                Reply::Error(json!({"code": -32002, "message": "resource not found"}))
            }
            Method::PromptsList => Reply::Result(json!({"prompts": []})),
            Method::PromptsGet => invalid_params("unknown prompt"),
            Method::NotificationsInitialized | Method::NotificationsCancelled => Reply::None,
        };
        Ok(reply)
    }

    fn messages_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}
