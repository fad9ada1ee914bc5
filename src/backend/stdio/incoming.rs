//! What a line from a stdio backend is: a response to one of the
//! gateway's requests, a request to the client, a notification, or
//! neither. Pure, so the reader and the `backend_output` fuzz target
//! classify each message the same way.

use serde_json::Value;

use crate::sandbox::REPORT_METHOD;

/// What a JSON message from a stdio backend is, as the reader dispatches it
/// (pure, so the fuzz target classifies exactly as the reader does).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A response to our request `id` (an id and no string `method`).
    Response(u64),
    /// A response whose id is not one the gateway could have sent.
    ForeignId,
    /// A request from the server to the client, answered by the reader.
    Request {
        /// Its id, echoed in the answer.
        id: &'a Value,
        /// `ping`, the one request answered with a result.
        ping: bool,
    },
    /// `notifications/tools/list_changed`: re-list before routing again.
    ListChanged,
    /// The sandbox helper's report (an exec failure's errno).
    Report,
    /// Any other notification: ignored.
    Notification,
    /// Neither an id nor a method.
    Neither,
}

/// Classifies one message from a stdio backend.
pub(crate) fn classify(msg: &Value) -> Incoming<'_> {
    let method = msg.get("method").and_then(Value::as_str);
    match (msg.get("id"), method) {
        (Some(id), None) => id.as_u64().map_or(Incoming::ForeignId, Incoming::Response),
        (Some(id), Some(m)) => Incoming::Request {
            id,
            ping: m == "ping",
        },
        (None, Some("notifications/tools/list_changed")) => Incoming::ListChanged,
        (None, Some(REPORT_METHOD)) => Incoming::Report,
        (None, Some(_)) => Incoming::Notification,
        (None, None) => Incoming::Neither,
    }
}
