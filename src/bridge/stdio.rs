//! The bridge over stdio: the MCP stdio transport (one JSON-RPC message a
//! line on stdin, responses a line each on stdout; logs on stderr only).
//!
//! Requests are handled concurrently (a slow `tools/call` never holds up a
//! `ping`), at most [`MAX_IN_FLIGHT`] at a time; responses are written by
//! one task, a whole line at a time. The bridge ends when stdin closes,
//! after the requests in flight are answered.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::{codes, error_response, to_line, Bridge, MAX_MESSAGE_BYTES};

/// Requests in flight at once; more wait for a slot (stdin is not read
/// meanwhile, so a flooding host is slowed, not buffered).
pub const MAX_IN_FLIGHT: usize = 64;

/// Serves the bridge on `input`/`output` until `input` ends.
pub async fn serve<R, W>(bridge: Arc<Bridge>, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<String>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut lines = FramedRead::new(input, LinesCodec::new_with_max_length(MAX_MESSAGE_BYTES));
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(l) => l,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let e = error_response(
                    &serde_json::Value::Null,
                    codes::INVALID_REQUEST,
                    "message too large for the bridge",
                    None,
                );
                let _ = tx.send(to_line(&e)).await;
                continue;
            }
            Err(LinesCodecError::Io(e)) => {
                tracing::error!(error = %e, "stdin failed");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let bridge = bridge.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(reply) = bridge.handle(line.as_bytes()).await {
                let _ = tx.send(to_line(&reply)).await;
            }
            drop(permit);
        });
    }
    // Every request in flight answers before the bridge ends.
    let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
    drop(tx);
    writer
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}
