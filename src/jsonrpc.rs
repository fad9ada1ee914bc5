//! Strict MCP JSON-RPC 2.0 parsing and the method table.
//!
//! Runs only on a payload whose signature already verified. It accepts one
//! JSON object with exactly the JSON-RPC 2.0 members, a method from the MCP
//! set the gateway forwards, an id for requests and none for notifications;
//! it refuses batches, unknown members and anything too large or too deep.
//! It never echoes a payload or argument value in an error.

use serde_json::{Map, Value};

/// The MCP protocol version sealgate targets.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Longest tool name accepted (MCP recommends at most 128 characters).
pub const MAX_TOOL_NAME_LEN: usize = 128;
/// Longest string id accepted.
pub const MAX_ID_LEN: usize = 256;

/// The MCP methods the gateway forwards from clients to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `initialize`: answered by the gateway itself, never forwarded.
    Initialize,
    /// `ping`: a liveness check, answered by the gateway.
    Ping,
    /// `tools/list`: the pinned tools this client may call.
    ToolsList,
    /// `tools/call`: routed by tool name; its arguments pass the sanitizer
    /// and the tool's pinned schema before a backend sees them.
    ToolsCall,
    /// `resources/list`: forwarded to the primary backend once its params
    /// passed the sanitizer.
    ResourcesList,
    /// `resources/templates/list`: forwarded to the primary backend once its params
    /// passed the sanitizer.
    ResourcesTemplatesList,
    /// `resources/read`: forwarded to the primary backend once its params
    /// passed the sanitizer.
    ResourcesRead,
    /// `prompts/list`: forwarded to the primary backend once its params
    /// passed the sanitizer.
    PromptsList,
    /// `prompts/get`: forwarded to the primary backend once its params
    /// passed the sanitizer.
    PromptsGet,
    /// `notifications/initialized`: acknowledged, never forwarded (the
    /// gateway initializes each backend itself).
    NotificationsInitialized,
    /// `notifications/cancelled`: acknowledged, never forwarded (a call is
    /// cancelled by cancelling its gRPC call).
    NotificationsCancelled,
}

impl Method {
    /// Every method, so the name table in [`Method::as_str`] is the only
    /// list of wire names.
    pub const ALL: &'static [Method] = &[
        Method::Initialize,
        Method::Ping,
        Method::ToolsList,
        Method::ToolsCall,
        Method::ResourcesList,
        Method::ResourcesTemplatesList,
        Method::ResourcesRead,
        Method::PromptsList,
        Method::PromptsGet,
        Method::NotificationsInitialized,
        Method::NotificationsCancelled,
    ];

    /// The method with wire name `s`, exactly (case-sensitive); `None`
    /// for any method the gateway does not forward.
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.as_str() == s)
    }

    /// The MCP wire name, e.g. `tools/call`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::NotificationsInitialized => "notifications/initialized",
            Method::NotificationsCancelled => "notifications/cancelled",
        }
    }

    /// Notifications carry no id and get no JSON-RPC response.
    pub fn is_notification(self) -> bool {
        matches!(
            self,
            Method::NotificationsInitialized | Method::NotificationsCancelled
        )
    }
}

/// A tool name: 1-128 characters of `[A-Za-z0-9_.-]` (the MCP guidance).
pub fn valid_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOOL_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A parsed, validated message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The request id (a string or an integer), `None` for notifications.
    pub id: Option<Value>,
    /// The method, one the gateway forwards.
    pub method: Method,
    /// The `params` object, `None` when absent; never an array or scalar.
    pub params: Option<Map<String, Value>>,
    /// For `tools/call`: the tool name, checked by [`valid_tool_name`].
    pub tool: Option<String>,
}

/// Why a payload is not a strict MCP JSON-RPC message. The `&'static str`
/// details are fixed texts written here: they never quote the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonRpcError {
    /// The payload is not UTF-8, not JSON, has trailing bytes, or an
    /// object in it repeats a key ([`strict`]).
    #[error("the payload is not valid UTF-8 JSON (or an object in it repeats a key)")]
    Json,
    /// Objects and arrays nest deeper than the limit (carried); found
    /// before the payload is parsed.
    #[error("the payload nests deeper than {0} levels")]
    TooDeep(usize),
    /// The payload is a JSON array, i.e. a JSON-RPC batch.
    #[error("JSON-RPC batches are not supported")]
    Batch,
    /// The envelope of the message is wrong: not an object, an unknown
    /// top-level member, `jsonrpc` not `"2.0"`, no string `method` (a
    /// response), a bad `id`, or an id on a notification or none on a
    /// request.
    #[error("{0}")]
    Invalid(&'static str),
    /// `method` is a string but not one of the [`Method`]s the gateway
    /// forwards.
    #[error("unknown or unsupported method")]
    UnknownMethod,
    /// `params` is not an object, or a `tools/call` lacks a valid tool name,
    /// has an unknown member, or has `arguments` that are not an object.
    #[error("{0}")]
    Params(&'static str),
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of objects and arrays accepted, counting the
    /// top-level object as 1.
    pub max_depth: usize,
}

/// Measures the nesting depth of JSON text without building it, so a deeply
/// nested payload is refused before any allocation proportional to depth.
/// Brackets inside strings are skipped. Returns early once past `max`.
pub fn nesting_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses one MCP JSON-RPC 2.0 request or notification, strictly.
pub fn parse(payload: &[u8], limits: Limits) -> Result<Message, JsonRpcError> {
    if nesting_depth_exceeds(payload, limits.max_depth) {
        return Err(JsonRpcError::TooDeep(limits.max_depth));
    }
    let value: Value = strict::from_slice_unique(payload).map_err(|_| JsonRpcError::Json)?;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(JsonRpcError::Batch),
        _ => {
            return Err(JsonRpcError::Invalid(
                "the payload must be one JSON-RPC object",
            ))
        }
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "jsonrpc" | "id" | "method" | "params") {
            return Err(JsonRpcError::Invalid(
                "unknown top-level member (allowed: jsonrpc, id, method, params)",
            ));
        }
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(JsonRpcError::Invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let method_str = obj
        .get("method")
        .and_then(Value::as_str)
        .ok_or(JsonRpcError::Invalid(
            "\"method\" must be a string (responses are not accepted)",
        ))?;
    let method = Method::parse(method_str).ok_or(JsonRpcError::UnknownMethod)?;
    let id = match obj.get("id") {
        None => None,
        Some(Value::String(s)) if s.len() <= MAX_ID_LEN => Some(Value::String(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n.clone())),
        Some(_) => {
            return Err(JsonRpcError::Invalid(
                "\"id\" must be a string of at most 256 bytes or an integer",
            ))
        }
    };
    match (method.is_notification(), &id) {
        (true, Some(_)) => return Err(JsonRpcError::Invalid("notifications must not carry an id")),
        (false, None) => return Err(JsonRpcError::Invalid("requests must carry an id")),
        _ => {}
    }
    let params = match obj.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p.clone()),
        Some(_) => return Err(JsonRpcError::Params("\"params\" must be an object")),
    };
    let tool = if method == Method::ToolsCall {
        Some(tool_call_name(params.as_ref())?)
    } else {
        None
    };
    if method == Method::ResourcesRead
        && !params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .is_some_and(Value::is_string)
    {
        return Err(JsonRpcError::Params(
            "resources/read params.uri must be a string",
        ));
    }
    Ok(Message {
        id,
        method,
        params,
        tool,
    })
}

fn tool_call_name(params: Option<&Map<String, Value>>) -> Result<String, JsonRpcError> {
    let params = params.ok_or(JsonRpcError::Params("tools/call needs params"))?;
    for key in params.keys() {
        if !matches!(key.as_str(), "name" | "arguments" | "_meta") {
            return Err(JsonRpcError::Params(
                "unknown member in tools/call params (allowed: name, arguments, _meta)",
            ));
        }
    }
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or(JsonRpcError::Params(
            "tools/call params.name must be a string",
        ))?;
    if !valid_tool_name(name) {
        return Err(JsonRpcError::Params(
            "tools/call params.name must be 1-128 characters of [A-Za-z0-9_.-]",
        ));
    }
    match params.get("arguments") {
        None | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(JsonRpcError::Params(
                "tools/call params.arguments must be an object",
            ))
        }
    }
    Ok(name.to_string())
}

/// A JSON-RPC success response.
pub fn response(id: &Value, result: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC error response.
pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

pub mod strict;

#[cfg(test)]
mod tests;
