//! An MCP server over Streamable HTTP (the transport of the current MCP
//! specification): each JSON-RPC message is POSTed; the answer comes back as
//! JSON or as a Server-Sent Events stream; the session is carried in the
//! `Mcp-Session-Id` header. HTTPS with a configured CA (TLS 1.3 only), and a
//! bearer credential from the secrets source, read fresh for every request
//! so a refreshed secret takes effect without a restart. Bodies are read up
//! to a bound; the credential never appears in a log line or an error.
//! Redirects are never followed: one could carry the request, and its
//! credential, to another server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::{watch, Mutex};

use super::{
    initialize_params, initialized_notification, reply_from_message, request_message, Backend,
    BackendError, Reply,
};
use crate::jsonrpc::PROTOCOL_VERSION;
use crate::secrets::{SecretRef, Secrets};

/// Largest response body accepted from a backend (and largest SSE event).
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;
/// Most bytes read from one SSE stream in all, events handled and dropped
/// included: over a 100 MB flood of notifications before the answer, and
/// a bound on the work of a stream that never ends besides the deadline.
pub(crate) const MAX_SSE_STREAM: usize = 8 * MAX_BODY;

/// Where and how to reach a Streamable HTTP backend, from the config.
pub struct HttpSpec {
    /// The MCP endpoint: `https://`, or `http://` on loopback only.
    pub url: String,
    /// CA of the backend's server certificate; `None` only for plain http
    /// on loopback.
    pub ca: Option<std::path::PathBuf>,
    /// The secret sent as `Authorization: Bearer`, resolved per request;
    /// never logged.
    pub bearer_token: Option<SecretRef>,
}

/// A Streamable HTTP MCP backend: one session, shared by all calls and
/// renewed when the server forgets it.
pub struct HttpBackend {
    name: String,
    url: String,
    http: reqwest::Client,
    token: Option<SecretRef>,
    secrets: Arc<Secrets>,
    /// The negotiated session, `None` before initialize or after expiry.
    session: Mutex<Option<Session>>,
    next_id: AtomicU64,
    received: AtomicU64,
    generation: watch::Sender<u64>,
}

#[derive(Clone)]
struct Session {
    id: Option<String>,
    protocol_version: String,
}

impl HttpBackend {
    /// Builds the HTTP client; connects lazily, on the first call. Fails on
    /// an https URL without `ca`, an unusable CA, or plain http off loopback.
    pub fn new(name: &str, spec: HttpSpec, secrets: Arc<Secrets>) -> Result<HttpBackend, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            // HTTP(S)_PROXY / ALL_PROXY must not reroute backend traffic.
            .no_proxy();
        if crate::tls::is_https(&spec.url) {
            let ca = spec.ca.as_ref().ok_or("an https backend needs `ca`")?;
            builder = builder.tls_backend_preconfigured(
                crate::tls::backend_client_config(ca).map_err(|e| e.to_string())?,
            );
        } else if !crate::tls::transport_allowed(&spec.url) {
            return Err("url must be https:// (plain http only on loopback)".into());
        }
        Ok(HttpBackend {
            name: name.to_string(),
            url: spec.url,
            http: builder.build().map_err(|e| format!("HTTP client: {e}"))?,
            token: spec.bearer_token,
            secrets,
            session: Mutex::new(None),
            next_id: AtomicU64::new(1),
            received: AtomicU64::new(0),
            generation: watch::Sender::new(1),
        })
    }

    /// POSTs one message; returns the matching response for requests, and
    /// the session id the server assigned, if any.
    async fn post(
        &self,
        session: Option<&Session>,
        msg: &Value,
        id: Option<u64>,
        timeout: Duration,
    ) -> Result<(Option<Value>, Option<String>), PostError> {
        let mut rb = self
            .http
            .post(&self.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .body(msg.to_string());
        if let Some(s) = session {
            rb = rb.header("MCP-Protocol-Version", &s.protocol_version);
            if let Some(sid) = &s.id {
                rb = rb.header("Mcp-Session-Id", sid);
            }
        }
        if let Some(r) = &self.token {
            let token = self
                .secrets
                .get(r)
                .ok_or(PostError::Fatal(BackendError::Unavailable))?;
            rb = rb.bearer_auth(token.expose_secret());
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                PostError::Fatal(BackendError::Timeout)
            } else {
                tracing::warn!(
                    backend = self.name,
                    cause = if e.is_connect() { "connect" } else { "request" },
                    "backend request failed"
                );
                PostError::Fatal(BackendError::Unavailable)
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && session.and_then(|s| s.id.as_ref()).is_some()
        {
            return Err(PostError::SessionExpired);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            tracing::warn!(
                backend = self.name,
                http.status = status.as_u16(),
                "backend refused the gateway's credential"
            );
            return Err(PostError::Fatal(BackendError::Unavailable));
        }
        if !status.is_success() {
            tracing::warn!(
                backend = self.name,
                http.status = status.as_u16(),
                "backend answered with an HTTP error"
            );
            return Err(PostError::Fatal(BackendError::Unavailable));
        }
        let session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(id) = id else {
            return Ok((None, session_id)); // a notification: 202, no body to read
        };
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let message = if content_type.starts_with("text/event-stream") {
            read_sse_response(resp, id).await?
        } else {
            json_body_message(&read_bounded(resp).await?, id)?
        };
        Ok((Some(message), session_id))
    }

    async fn initialize(&self, timeout: Duration) -> Result<Session, BackendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = request_message(id, "initialize", initialize_params());
        let (resp, session_id) = self
            .post(None, &msg, Some(id), timeout)
            .await
            .map_err(PostError::into_backend)?;
        let resp = resp.ok_or(BackendError::Protocol)?;
        let Reply::Result(result) = reply_from_message(&resp)? else {
            return Err(BackendError::Unavailable);
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION)
            .to_string();
        let session = Session {
            id: session_id,
            protocol_version: version,
        };
        self.post(Some(&session), &initialized_notification(), None, timeout)
            .await
            .map_err(PostError::into_backend)?;
        Ok(session)
    }

    async fn session(&self, timeout: Duration) -> Result<Session, BackendError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = self.initialize(timeout).await?;
        *guard = Some(s.clone());
        self.generation.send_modify(|g| *g += 1);
        Ok(s)
    }
}

pub(crate) enum PostError {
    SessionExpired,
    Fatal(BackendError),
}

impl PostError {
    fn into_backend(self) -> BackendError {
        match self {
            PostError::SessionExpired => BackendError::Unavailable,
            PostError::Fatal(e) => e,
        }
    }
}

/// A failure while reading a response body: the call's deadline, or a
/// broken connection.
fn body_error(e: &reqwest::Error) -> PostError {
    PostError::Fatal(if e.is_timeout() {
        BackendError::Timeout
    } else {
        BackendError::Unavailable
    })
}

async fn read_bounded(resp: reqwest::Response) -> Result<Vec<u8>, PostError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(PostError::Fatal(BackendError::Protocol));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JSON-RPC response with `id` in a JSON body; anything else (not
/// JSON, another id) is a protocol error.
pub(crate) fn json_body_message(body: &[u8], id: u64) -> Result<Value, PostError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| PostError::Fatal(BackendError::Protocol))?;
    (v.get("id").and_then(Value::as_u64) == Some(id))
        .then_some(v)
        .ok_or(PostError::Fatal(BackendError::Protocol))
}

/// Where the first complete SSE event in `buf` ends, given that none ends
/// within `buf[..scanned]`. A line ends at `\r\n`, `\n` or `\r` (WHATWG
/// SSE: CR-only and mixed line ends are legal), and an event at a blank
/// line: a line end right after another. The event ends after the blank
/// line's first byte; a `\n` completing its `\r\n` begins the next event
/// as an empty line, which carries nothing. So where an event ends depends
/// only on the bytes up to it (never on one not yet received: an open
/// stream's `\r\r` is answered at once) and not on how the body was cut
/// into chunks; and since it looks at a byte and the one before, only the
/// new bytes are searched: each byte costs one look, not one per chunk.
pub(crate) fn event_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let eol = |b: u8| b == b'\r' || b == b'\n';
    (scanned.max(1)..buf.len())
        .find(|&i| eol(buf[i]) && eol(buf[i - 1]) && buf[i - 1..=i] != *b"\r\n")
        .map(|i| i + 1)
}

/// Reads an SSE body event by event until the response with `id` arrives:
/// the server may keep the stream open after it. Each byte is searched and
/// moved a bounded number of times, however the server cuts its events
/// into chunks: a flood of small events costs linear time.
async fn read_sse_response(resp: reqwest::Response, id: u64) -> Result<Value, PostError> {
    let mut events = SseEvents::new(id);
    let mut stream = resp.bytes_stream();
    loop {
        if let Some(v) = events.take() {
            return Ok(v);
        }
        match stream.next().await {
            Some(Ok(chunk)) => events.push(&chunk)?,
            Some(Err(e)) => return Err(body_error(&e)),
            None => return events.finish(),
        }
    }
}

/// An SSE response body read as it arrives: each complete event is searched
/// for the response with the request's id. Pure, so the fuzz target drives
/// it over any split of a body into chunks.
pub(crate) struct SseEvents {
    buf: Vec<u8>,
    /// Events before `start` were handled.
    start: usize,
    /// `buf[start..scanned]` holds no end of an event.
    scanned: usize,
    /// Bytes pushed in all (at most [`MAX_SSE_STREAM`]).
    total: usize,
    id: u64,
}

impl SseEvents {
    /// A reader for the response to request `id`.
    pub(crate) fn new(id: u64) -> Self {
        SseEvents {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            total: 0,
            id,
        }
    }

    /// Handles every complete event that has arrived: the response, when
    /// one of them is it.
    pub(crate) fn take(&mut self) -> Option<Value> {
        while let Some(end) = event_end(&self.buf[self.start..], self.scanned - self.start) {
            let found = find_in_sse(&self.buf[self.start..self.start + end], self.id).ok();
            self.start += end;
            self.scanned = self.start;
            if found.is_some() {
                return found;
            }
        }
        self.scanned = self.buf.len();
        None
    }

    /// Adds a chunk; handled events go once per chunk, not once per event.
    /// An event over [`MAX_BODY`], or a stream over [`MAX_SSE_STREAM`] in
    /// all, is a protocol error.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), PostError> {
        self.buf.drain(..self.start);
        self.scanned -= self.start;
        self.start = 0;
        self.total = self.total.saturating_add(chunk.len());
        if self.buf.len() + chunk.len() > MAX_BODY || self.total > MAX_SSE_STREAM {
            return Err(PostError::Fatal(BackendError::Protocol));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The body ended: the response is in its last, unterminated event or
    /// nowhere.
    pub(crate) fn finish(&self) -> Result<Value, PostError> {
        find_in_sse(&self.buf[self.start..], self.id)
    }
}

/// Finds the JSON-RPC response with `id` among the `data:` events of an SSE
/// body (other events, such as notifications, are skipped).
pub(crate) fn find_in_sse(body: &[u8], id: u64) -> Result<Value, PostError> {
    let text = std::str::from_utf8(body).map_err(|_| PostError::Fatal(BackendError::Protocol))?;
    let mut data = String::new();
    let flush = |data: &mut String| -> Option<Value> {
        let v = serde_json::from_str::<Value>(data).ok();
        data.clear();
        v.filter(|v| v.get("id").and_then(Value::as_u64) == Some(id) && v.get("method").is_none())
    };
    for line in sse_lines(text) {
        if line.is_empty() {
            if let Some(v) = flush(&mut data) {
                return Ok(v);
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    flush(&mut data).ok_or(PostError::Fatal(BackendError::Protocol))
}

/// The lines of `text`, each ended by `\r\n`, `\n` or `\r` (or the end).
fn sse_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let eol = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + eol..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

#[tonic::async_trait]
impl Backend for HttpBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..2 {
            let session = self.session(timeout).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let msg = request_message(id, method, params.clone());
            match self.post(Some(&session), &msg, Some(id), timeout).await {
                Ok((Some(resp), _)) => return reply_from_message(&resp),
                Ok((None, _)) => return Err(BackendError::Protocol),
                Err(PostError::SessionExpired) if attempt == 0 => {
                    tracing::info!(
                        backend = self.name,
                        "backend session expired; initializing a new one"
                    );
                    // Only this session: another task may already have
                    // set up a new one.
                    let mut current = self.session.lock().await;
                    if current.as_ref().map(|s| &s.id) == Some(&session.id) {
                        *current = None;
                    }
                }
                Err(e) => return Err(e.into_backend()),
            }
        }
        Err(BackendError::Unavailable)
    }

    async fn request_at(
        &self,
        generation: u64,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        // Only on the session whose tools were checked: a lost session is
        // not retried here (the router re-lists first).
        let session = {
            let guard = self.session.lock().await;
            match guard.as_ref() {
                Some(s) if *self.generation.borrow() == generation => s.clone(),
                _ => return Err(BackendError::Unavailable),
            }
        };
        self.received.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = request_message(id, method, params);
        match self.post(Some(&session), &msg, Some(id), timeout).await {
            Ok((Some(resp), _)) => reply_from_message(&resp),
            Ok((None, _)) => Err(BackendError::Protocol),
            Err(PostError::SessionExpired) => {
                tracing::info!(
                    backend = self.name,
                    "backend session expired; its tools are re-listed before the next call"
                );
                let mut current = self.session.lock().await;
                if current.as_ref().map(|s| &s.id) == Some(&session.id) {
                    *current = None;
                    // A new session is a new generation: re-listed and
                    // re-checked before any tool call reaches it.
                    self.generation.send_modify(|g| *g += 1);
                }
                Err(BackendError::Unavailable)
            }
            Err(e) => Err(e.into_backend()),
        }
    }

    fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn messages_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_body_yields_the_matching_response() {
        let body = b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\r\n\r\n";
        let v = find_in_sse(body, 7).ok().expect("found");
        assert_eq!(v["result"]["ok"], true);
        assert!(find_in_sse(body, 8).is_err());
        assert!(find_in_sse(b"data: not json\n\n", 1).is_err());
    }

    #[test]
    fn an_event_end_split_across_chunks_is_found_from_where_the_scan_stopped() {
        // Each blank line, and where its event ends: after the blank line's
        // first byte (a `\n` completing its `\r\n` begins the next event).
        for (end, at) in [
            (&b"\n\n"[..], 2),
            (b"\r\n\r\n", 3),
            (b"\r\r", 2),
            (b"\n\r\n", 2),
            (b"\r\n\n", 3),
            (b"\r\r\n", 2),
            (b"\n\r", 2),
        ] {
            let mut whole = b"data: {}".to_vec();
            whole.extend_from_slice(end);
            assert_eq!(event_end(&whole, 0), Some(8 + at), "{end:?}");
            // Cut anywhere before the event's end: the first part holds no
            // end, and the search resumes where it stopped.
            for split in 0..at {
                let mut buf = b"data: {}".to_vec();
                buf.extend_from_slice(&end[..split]);
                let scanned = buf.len();
                assert_eq!(event_end(&buf, 0), None);
                buf.extend_from_slice(&end[split..]);
                buf.extend_from_slice(b"data: next");
                assert_eq!(event_end(&buf, scanned), Some(8 + at), "{end:?} {split}");
            }
        }
        // One line end is no event end, whichever kind.
        for one in [&b"a\r\nb"[..], b"a\nb", b"a\rb", b"a\r\n"] {
            assert_eq!(event_end(one, 0), None, "{one:?}");
        }
        // The first of two ends, whichever kind comes first.
        assert_eq!(event_end(b"a\r\n\r\nb\n\n", 0), Some(4));
        assert_eq!(event_end(b"a\n\nb\r\n\r\n", 0), Some(3));
        assert_eq!(event_end(b"a\r\rb\n\n", 0), Some(3));
        assert_eq!(event_end(b"", 10), None);
    }

    /// Reads `body` in chunks of `size` as `read_sse_response` does.
    fn read(body: &[u8], size: usize) -> Option<Value> {
        let mut events = SseEvents::new(7);
        for chunk in body.chunks(size) {
            if let Some(v) = events.take() {
                return Some(v);
            }
            events.push(chunk).ok()?;
        }
        events.take()
    }

    #[test]
    fn cr_only_and_mixed_line_ends_deliver_the_answer_before_the_stream_ends() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#;
        for (eol, blank) in [
            ("\r", "\r"),
            ("\n", "\r"),
            ("\r\n", "\r"),
            ("\r", "\r\n"),
            ("\n", "\r\n"),
        ] {
            let body = format!("event: message{eol}data: {note}{eol}{blank}event: message{eol}data: {answer}{eol}{blank}");
            // The stream stays open after it: found from the events alone,
            // however the body is cut (a `\r` at the end of one chunk and
            // its `\n` at the start of the next included).
            for size in 1..=body.len() {
                let v = read(body.as_bytes(), size)
                    .unwrap_or_else(|| panic!("{body:?} in chunks of {size}"));
                assert_eq!(v["result"]["ok"], true);
            }
            let v = find_in_sse(body.as_bytes(), 7).ok().expect("found whole");
            assert_eq!(v["result"]["ok"], true);
        }
    }

    #[test]
    fn a_stream_of_complete_events_is_cut_past_its_total_limit() {
        // Comment events of 64 KiB, 1 MiB a chunk: none is the answer.
        let mut event = b": ".to_vec();
        event.resize(64 * 1024, b'x');
        event.extend_from_slice(b"\r\r");
        let note = event.repeat(16);
        let mut events = SseEvents::new(7);
        let mut pushed = 0usize;
        let refused = loop {
            assert!(events.take().is_none());
            match events.push(&note) {
                Ok(()) => pushed += note.len(),
                Err(e) => break e,
            }
            assert!(events.buf.len() <= note.len(), "handled events are dropped");
        };
        assert!(matches!(refused, PostError::Fatal(BackendError::Protocol)));
        assert!(pushed <= MAX_SSE_STREAM && pushed + note.len() > MAX_SSE_STREAM);
    }
}
