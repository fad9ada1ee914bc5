//! The reader of a stdio child's stdout: each line routed as it arrives
//! (a response to its caller, a request to the client answered, a
//! notification dropped, a line over the limit skipped), never queued.
//! When the output ends the child is ended too, so the supervisor
//! restarts it: no answer can come any more. What a line changes is done
//! through [`Routes`], which the backend implements for one child.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use super::incoming::{classify, Incoming};
use super::lines::{Line, MessageLines};
use super::stderr_tail;
use crate::backend::{reply_from_message, BackendError, Reply};

/// Where the answer to one pending call goes.
pub(super) type Waiter = oneshot::Sender<Result<Reply, BackendError>>;

/// What the reader of one child's output may change.
pub(super) trait Routes: Send + 'static {
    /// The backend's name, for the log.
    fn backend(&self) -> &str;
    /// The call waiting on `id`, taken: its answer goes to no other.
    fn take_pending(&self, id: u64) -> Option<Waiter>;
    /// Writes a line to the child without waiting (an answer to its
    /// request; dropped when its input is full).
    fn write(&self, line: String);
    /// The child announced a changed tool list.
    fn list_changed(&self);
    /// The sandbox helper's `execv` failed with `errno`.
    fn exec_failed(&self, errno: i32);
    /// Counts a skipped line; the count over all children.
    fn skipped(&self) -> u64;
    /// The output ended: end the child and fail its calls.
    fn ended(&self);
}

/// Reads `lines` until they end or fail, then ends the child.
pub(super) fn spawn(
    routes: impl Routes,
    mut lines: FramedRead<tokio::process::ChildStdout, MessageLines>,
) {
    tokio::spawn(async move {
        while let Some(line) = lines.next().await {
            match line {
                Ok(Line::Message(line)) => on_message(&routes, &line),
                Ok(Line::TooLong { id, bytes }) => on_too_long(&routes, id, bytes),
                Err(e) => {
                    tracing::warn!(backend = routes.backend(), error = %e, "backend output unreadable; restarting it");
                    break;
                }
            }
        }
        // No answer can come any more (even from a child that closed its
        // stdout and runs on): end it, so the supervisor restarts it.
        tracing::warn!(backend = routes.backend(), "backend output ended");
        routes.ended();
    });
}

/// A line over the limit, skipped: the call it names fails alone
/// (BACKEND_PROTOCOL_ERROR, as an HTTP body over its limit); the child and
/// every other call go on.
fn on_too_long(routes: &impl Routes, id: Option<u64>, bytes: u64) {
    let total = routes.skipped();
    let failed = id.and_then(|id| routes.take_pending(id));
    tracing::warn!(
        backend = routes.backend(),
        bytes,
        call_failed = failed.is_some(),
        lines_too_long = total,
        "backend wrote a line over 16 MiB; skipped"
    );
    if let Some(tx) = failed {
        let _ = tx.send(Err(BackendError::Protocol));
    }
}

fn on_message(routes: &impl Routes, line: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<Value>(line) else {
        tracing::warn!(
            backend = routes.backend(),
            "backend wrote a line that is not JSON"
        );
        return;
    };
    match classify(&msg) {
        Incoming::Response(id) => {
            if let Some(tx) = routes.take_pending(id) {
                let _ = tx.send(reply_from_message(&msg));
            }
        }
        Incoming::ForeignId => tracing::warn!(
            backend = routes.backend(),
            "response with an id the gateway never used"
        ),
        // A request from the server to the client: the gateway offers no
        // client capabilities (sampling, roots, elicitation).
        Incoming::Request { id, ping } => {
            let answer = if ping {
                json!({"jsonrpc": "2.0", "id": id, "result": {}})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not supported by the sealgate gateway"}})
            };
            routes.write(answer.to_string());
        }
        Incoming::ListChanged => routes.list_changed(),
        Incoming::Report => {
            if let Some(errno) = msg.get("params").and_then(stderr_tail::exec_failure) {
                routes.exec_failed(errno);
            }
        }
        Incoming::Notification => {}
        Incoming::Neither => tracing::warn!(
            backend = routes.backend(),
            "backend wrote a message that is neither request nor response"
        ),
    }
}
