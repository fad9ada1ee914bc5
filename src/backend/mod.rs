//! Backends: the MCP servers behind the gateway, and the router that maps
//! each exposed tool to the backend that offers it.
//!
//! A [`Backend`] speaks JSON-RPC to one MCP server with ids of its own: it
//! never sees the client's id, certificate, signature or keys. Kinds:
//! [`EmbeddedBackend`] (built in), [`stdio::StdioBackend`] (a supervised
//! child process) and [`http::HttpBackend`] (Streamable HTTP). The
//! [`router::Router`] pins every tool's definition and refuses changed ones.

pub mod egress;
pub mod embedded;
pub mod http;
pub mod resources;
pub mod router;
pub mod stdio;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

/// What a backend answered to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The JSON-RPC `result` member.
    Result(Value),
    /// The JSON-RPC `error` member: `{code, message, data?}`.
    Error(Value),
}

/// Why a backend could not answer. The detail is for the gateway's log, not
/// for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend cannot take the call: no backend is configured, the
    /// child process is down or restarting, the HTTP connection failed or
    /// answered with an error status, the credential was refused or cannot
    /// be resolved, or the backend refused `initialize`.
    #[error("the backend is unavailable")]
    Unavailable,
    /// No answer arrived within the call's timeout; a stdio child is then
    /// probed with `ping` and restarted if it stays silent.
    #[error("the backend did not answer in time")]
    Timeout,
    /// The answer is not valid MCP: not JSON, larger than the body limit,
    /// without the request's id, or neither a `result` object nor an
    /// `error` with an integer code and a string message.
    #[error("the backend answered with invalid MCP")]
    Protocol,
}

/// An MCP server behind the gateway.
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The configured name, for logs and routing.
    fn name(&self) -> &str;
    /// Sends one JSON-RPC request and waits at most `timeout` for its answer.
    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError>;
    /// Sends a request only to the backend instance of `generation`: the
    /// one whose tools the router listed and checked against the pins. A
    /// backend that restarted, lost its session or announced a changed list
    /// since answers [`BackendError::Unavailable`] without sending anything,
    /// so a call never reaches a definition nobody checked. The default
    /// (a backend whose generation never changes) sends it.
    async fn request_at(
        &self,
        generation: u64,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        let _ = generation;
        self.request(method, params, timeout).await
    }
    /// Changes whenever the backend (re)connected or announced a changed
    /// tool list: the router then re-lists and re-checks its tools.
    fn generation(&self) -> watch::Receiver<u64>;
    /// How many requests reached this backend: an operational counter that
    /// tests also use to prove a denied request never got here.
    fn messages_received(&self) -> u64;
    /// The backend's process id, for backends that run a child process.
    fn process_id(&self) -> Option<u32> {
        None
    }
    /// The sandbox layers in force for a backend child process, as its
    /// helper reported them; `None` for backends without one.
    fn sandbox(&self) -> Option<crate::sandbox::SandboxReport> {
        None
    }
    /// Whether the backend can take a call now (a stdio backend: its child
    /// runs); the metrics and health checks read it.
    fn is_up(&self) -> bool {
        true
    }
    /// How many times the backend's process was restarted.
    fn restarts(&self) -> u64 {
        0
    }
    /// What its egress relay did (a stdio backend with egress by host
    /// name; else all 0).
    fn egress_counts(&self) -> egress::Totals {
        egress::Totals::default()
    }
    /// Stops the backend for good at shutdown (a stdio backend: its whole
    /// process group). The default has nothing to stop.
    fn stop(&self) {}
}

/// The built-in backend: the EP MCP Server's tools over bundled sample
/// data, so the gateway works offline on a fresh machine.
pub struct EmbeddedBackend {
    name: String,
    tools: embedded::EmbeddedTools,
    received: AtomicU64,
    generation: watch::Sender<u64>,
}

impl EmbeddedBackend {
    /// The embedded backend, under the configured `name`.
    pub fn new(name: &str) -> Self {
        EmbeddedBackend {
            name: name.to_string(),
            tools: embedded::EmbeddedTools::new(),
            received: AtomicU64::new(0),
            generation: watch::Sender::new(1),
        }
    }
}

fn invalid_params(message: &str) -> Reply {
    Reply::Error(json!({"code": -32602, "message": message}))
}

#[tonic::async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        _timeout: Duration,
    ) -> Result<Reply, BackendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        let reply = match method {
            "initialize" => Reply::Result(json!({
                "protocolVersion": crate::jsonrpc::PROTOCOL_VERSION,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "sealgate-embedded-ep-sample", "version": env!("CARGO_PKG_VERSION")},
            })),
            "ping" => Reply::Result(json!({})),
            "tools/list" => Reply::Result(json!({"tools": self.tools.tool_definitions()})),
            "tools/call" => {
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return Ok(invalid_params("tools/call needs params.name"));
                };
                let empty = Map::new();
                let arguments = match params.get("arguments") {
                    None => &empty,
                    Some(Value::Object(a)) => a,
                    Some(_) => return Ok(invalid_params("arguments must be an object")),
                };
                Reply::Result(self.tools.call(name, arguments))
            }
            "resources/list" => Reply::Result(json!({"resources": []})),
            "resources/templates/list" => Reply::Result(json!({"resourceTemplates": []})),
            "resources/read" => {
                Reply::Error(json!({"code": -32002, "message": "resource not found"}))
            }
            "prompts/list" => Reply::Result(json!({"prompts": []})),
            "prompts/get" => invalid_params("unknown prompt"),
            _ => Reply::Error(json!({"code": -32601, "message": "method not found"})),
        };
        Ok(reply)
    }

    fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn messages_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Longest backend error message passed on to a client, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// Parses a JSON-RPC response object into a [`Reply`].
pub(crate) fn reply_from_message(msg: &Value) -> Result<Reply, BackendError> {
    match (msg.get("result"), msg.get("error")) {
        (Some(r), None) if r.is_object() => Ok(Reply::Result(r.clone())),
        (None, Some(e))
            if e.get("code").is_some_and(Value::is_i64)
                && e.get("message").is_some_and(Value::is_string) =>
        {
            // Forward only the code and the message (capped): `data` and
            // anything else a backend adds may hold argument values,
            // paths or secrets, and stays out of the client's answer.
            let message: String = e["message"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect();
            if e.get("data").is_some() {
                tracing::debug!("a backend error's data was dropped");
            }
            Ok(Reply::Error(json!({"code": e["code"], "message": message})))
        }
        _ => Err(BackendError::Protocol),
    }
}

/// A JSON-RPC request from the gateway to a backend. The id is the
/// gateway's own, never the client's.
pub(crate) fn request_message(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The `notifications/initialized` the gateway sends once a backend
/// answered `initialize`.
pub(crate) fn initialized_notification() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

/// The `initialize` params the gateway sends to each backend.
pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": crate::jsonrpc::PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "sealgate", "version": env!("CARGO_PKG_VERSION")},
    })
}
