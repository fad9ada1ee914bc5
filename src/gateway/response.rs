//! The answer to a call: the gateway's own `initialize` result, the
//! JSON-RPC response bytes built from a reply, and the security event
//! written when stage 9 filtered what a backend answered.

use serde_json::{json, Value};

use super::parts::Gateway;
use crate::audit::AuditRecord;
use crate::backend::Reply;
use crate::error::{Denial, Reason};
use crate::jsonrpc::{self, Method};

/// Protocol versions the gateway speaks to clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The gateway's own answer to `initialize`: it is the MCP server its
/// clients talk to; the backends were initialized by the gateway.
pub(super) fn initialize_result(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(SUPPORTED_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}, "resources": {}, "prompts": {}},
        "serverInfo": {"name": "sealgate", "title": "sealgate MCP gateway", "version": env!("CARGO_PKG_VERSION")},
    })
}

impl Gateway {
    /// Records that stage 9 changed a result (pattern names and counts,
    /// never the text): a security event, warned in the log.
    pub(super) fn record_filtered(
        &self,
        record: &AuditRecord,
        key: &str,
        findings: &crate::policy::Findings,
    ) {
        let backend = record.backend.as_deref().unwrap_or("-");
        tracing::warn!(
            backend,
            tool = key,
            redacted = ?findings.redacted,
            stripped = findings.stripped,
            "a backend's result was filtered"
        );
        self.audit.write_event(&json!({
            "ts": crate::audit::rfc3339_ms(self.clock.now_ms()),
            "event": "result_filtered",
            "backend": backend,
            "tool": key,
            "client_id": record.client_id,
            "request_digest": record.request_digest.map(hex::encode),
            "redacted": findings.redacted,
            "stripped": findings.stripped,
        }));
    }

    /// Turns the reply into the JSON-RPC response bytes.
    pub(super) fn response_payload(
        &self,
        message: &jsonrpc::Message,
        reply: Option<Reply>,
        record: &mut AuditRecord,
    ) -> Result<Vec<u8>, Denial> {
        let (Some(id), Some(reply)) = (message.id.as_ref(), reply) else {
            // A notification: nothing to answer but the signed acknowledgement.
            return Ok(Vec::new());
        };
        let body = match reply {
            Reply::Result(result) => {
                if message.method == Method::ToolsCall {
                    record.backend_error =
                        result.get("isError").and_then(Value::as_bool) == Some(true);
                }
                jsonrpc::response(id, result)
            }
            Reply::Error(error) => {
                record.backend_error = true;
                json!({"jsonrpc": "2.0", "id": id, "error": error})
            }
        };
        serde_json::to_vec(&body)
            .map_err(|_| Denial::new(Reason::Internal, "response could not be encoded"))
    }
}
