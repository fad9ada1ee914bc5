//! The reader of a stdio child's stdout: each line routed as it arrives
//! (a response to its caller, a request to the client answered, a
//! notification dropped, a line over the limit skipped), never queued.
//! When the output ends the child is ended too, so the supervisor
//! restarts it: no answer can come any more.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_util::codec::FramedRead;

use super::{classify, stderr_tail, Conn, Incoming, Line, MessageLines, Shared};
use crate::backend::{reply_from_message, BackendError};

/// Reads `lines` until they end or fail, then ends the child and fails
/// its calls.
pub(super) fn spawn(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut lines: FramedRead<tokio::process::ChildStdout, MessageLines>,
) {
    tokio::spawn(async move {
        while let Some(line) = lines.next().await {
            match line {
                Ok(Line::Message(line)) => on_message(&shared, &conn, &line),
                Ok(Line::TooLong { id, bytes }) => on_too_long(&shared, &conn, id, bytes),
                Err(e) => {
                    tracing::warn!(backend = shared.name, error = %e, "backend output unreadable; restarting it");
                    break;
                }
            }
        }
        // No answer can come any more (even from a child that closed its
        // stdout and runs on): end it, so the supervisor restarts it.
        tracing::warn!(backend = shared.name, "backend output ended");
        conn.kill();
        conn.fail_all();
    });
}

/// A line over [`MAX_LINE`], skipped: the call it names fails alone
/// (BACKEND_PROTOCOL_ERROR, as an HTTP body over its limit); the child and
/// every other call go on.
fn on_too_long(shared: &Shared, conn: &Conn, id: Option<u64>, bytes: u64) {
    let total = shared.too_long.fetch_add(1, Ordering::Relaxed) + 1;
    let failed = id.and_then(|id| conn.take_pending(id));
    tracing::warn!(
        backend = shared.name,
        bytes,
        call_failed = failed.is_some(),
        lines_too_long = total,
        "backend wrote a line over 16 MiB; skipped"
    );
    if let Some(tx) = failed {
        let _ = tx.send(Err(BackendError::Protocol));
    }
}

fn on_message(shared: &Shared, conn: &Conn, line: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<Value>(line) else {
        tracing::warn!(
            backend = shared.name,
            "backend wrote a line that is not JSON"
        );
        return;
    };
    match classify(&msg) {
        Incoming::Response(id) => {
            if let Some(tx) = conn.take_pending(id) {
                let _ = tx.send(reply_from_message(&msg));
            }
        }
        Incoming::ForeignId => tracing::warn!(
            backend = shared.name,
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
            let _ = conn.tx.try_send(answer.to_string());
        }
        Incoming::ListChanged => shared.generation.send_modify(|g| *g += 1),
        Incoming::Report => {
            if let Some(errno) = msg.get("params").and_then(stderr_tail::exec_failure) {
                conn.exec_errno
                    .store(errno, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Incoming::Notification => {}
        Incoming::Neither => tracing::warn!(
            backend = shared.name,
            "backend wrote a message that is neither request nor response"
        ),
    }
}
