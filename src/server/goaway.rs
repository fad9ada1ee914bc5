//! Saying why a connection is closed: the HTTP/2 GOAWAY the transport
//! writes itself when it closes a connection the request path marked (its
//! Nth identity denial in a row, a certificate revoked or expired under
//! it), with an error code and debug data a client shows its user.
//!
//! hyper sends GOAWAY only for a graceful shutdown, without debug data, and
//! offers no way to end one connection with a reason. So the transport
//! follows the frame boundaries of both directions of the connection
//! ([`FrameCursor`]): from what hyper writes it knows the last stream the
//! gateway answered (GOAWAY's last stream id: the calls parked after the
//! mark are above it, so the client learns they were not acted on) and
//! when the next byte starts a frame, the only point where a frame of its
//! own may go; from what the client sends, the last stream it opened. Nothing here parses a frame's payload: only the 9-byte headers
//! (and the last-stream-id of a GOAWAY hyper wrote itself: the
//! transport's own may not raise it).
//!
//! Saying goodbye is bounded: a client that does not read cannot hold the
//! connection open by leaving the GOAWAY unflushed ([`FAREWELL_LIMIT`]).
//! Once it is flushed the gateway half-closes and reads and discards what
//! the client still sends ([`DRAIN_LIMIT`], [`MAX_DRAIN`]), so that the
//! close does not reset the connection (throwing the GOAWAY away) while the
//! client's pipelined bytes are unread.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// How long the GOAWAY and close_notify may take to be written and
/// flushed; past it the connection is closed without them.
pub const FAREWELL_LIMIT: Duration = Duration::from_secs(1);
/// How long, after them, what the client still sends is read and
/// discarded before the close.
pub const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// How many bytes are read and discarded so, at most.
pub const MAX_DRAIN: usize = 64 * 1024;

/// The HTTP/2 connection preface a client sends first.
const PREFACE_LEN: usize = 24;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// `ENHANCE_YOUR_CALM` (RFC 9113 §7): the peer behaves in a way the server
/// will not serve further.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Debug data longer than this is cut (it is text for people and logs).
const MAX_DEBUG: usize = 256;

/// Where a byte stream of HTTP/2 frames stands: inside the client preface,
/// inside a frame header, or inside a payload.
#[derive(Debug, Clone)]
pub struct FrameCursor {
    /// Preface bytes still to come (the client side only).
    preface: usize,
    head: [u8; 9],
    /// Bytes of the current frame header seen so far.
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
    /// The highest stream id a HEADERS frame opened.
    last_headers: u32,
    /// Inside a header block (a HEADERS or PUSH_PROMISE without
    /// END_HEADERS, until the CONTINUATION that ends it): no other frame
    /// may come between.
    in_block: bool,
    /// The lowest last-stream-id of a GOAWAY in the stream, and the bytes
    /// of the one being read.
    goaway_last: Option<u32>,
    goaway_bytes: Option<([u8; 4], usize)>,
}

impl FrameCursor {
    /// The bytes a client sends: the preface, then frames.
    pub fn client() -> Self {
        FrameCursor {
            preface: PREFACE_LEN,
            ..Self::server()
        }
    }

    /// The bytes a server sends: frames from the first byte.
    pub fn server() -> Self {
        FrameCursor {
            preface: 0,
            head: [0; 9],
            have: 0,
            payload: 0,
            last_headers: 0,
            in_block: false,
            goaway_last: None,
            goaway_bytes: None,
        }
    }

    /// Follows `bytes`, the next ones of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                self.goaway_payload(&bytes[..n]);
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    self.have = 0;
                    let h = self.head;
                    self.payload =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    if h[3] == HEADERS {
                        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        self.last_headers = self.last_headers.max(stream);
                    }
                    if matches!(h[3], HEADERS | PUSH_PROMISE | CONTINUATION) {
                        self.in_block = h[4] & END_HEADERS == 0;
                    }
                    self.goaway_bytes = (h[3] == GOAWAY).then_some(([0; 4], 0));
                    if self.payload == 0 {
                        self.goaway_payload(&[]);
                    }
                }
            }
        }
    }

    /// The first payload bytes of a GOAWAY: its last-stream-id.
    fn goaway_payload(&mut self, bytes: &[u8]) {
        let Some((mut id, mut have)) = self.goaway_bytes.take() else {
            return;
        };
        let n = (4 - have).min(bytes.len());
        id[have..have + n].copy_from_slice(&bytes[..n]);
        have += n;
        if have == 4 {
            let last = u32::from_be_bytes(id) & 0x7fff_ffff;
            self.goaway_last = Some(self.goaway_last.map_or(last, |g| g.min(last)));
        } else if self.payload > 0 {
            self.goaway_bytes = Some((id, have));
        }
    }

    /// Follows the first `n` bytes of `bufs` (a vectored write of `n`).
    pub fn feed_vectored(&mut self, bufs: &[std::io::IoSlice<'_>], n: usize) {
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            self.feed(&b[..take]);
            left -= take;
        }
    }

    /// Whether the next byte may start a frame of the transport's own: it
    /// starts a frame, outside a header block.
    pub fn at_boundary(&self) -> bool {
        self.preface == 0 && self.have == 0 && self.payload == 0 && !self.in_block
    }

    /// `last` as the last-stream-id of a further GOAWAY: no higher than
    /// that of any GOAWAY already in the stream (a client must treat a
    /// raised one as a protocol error).
    pub fn goaway_last_stream(&self, last: u32) -> u32 {
        self.goaway_last.map_or(last, |g| g.min(last))
    }

    /// The highest stream id of a HEADERS frame so far: on the client's
    /// side the last stream opened, on the server's the last answered.
    pub fn last_stream(&self) -> u32 {
        self.last_headers
    }
}

/// A GOAWAY (`ENHANCE_YOUR_CALM`) being written, then the TLS
/// close_notify, then the client's last bytes being drained.
#[derive(Debug)]
pub struct Farewell {
    bytes: Vec<u8>,
    sent: usize,
    notified: bool,
    /// Bytes read and discarded since the half-close, once flushed.
    drained: Option<usize>,
    /// When to give up: [`FAREWELL_LIMIT`] after the start, then
    /// [`DRAIN_LIMIT`] after the half-close.
    until: Instant,
}

impl Farewell {
    /// The GOAWAY of a connection closed after `last_stream`, saying `why`.
    pub fn new(last_stream: u32, why: &str) -> Self {
        Farewell {
            bytes: frame(last_stream, ENHANCE_YOUR_CALM, why),
            sent: 0,
            notified: false,
            drained: None,
            until: Instant::now() + FAREWELL_LIMIT,
        }
    }

    /// When the caller gives up on this farewell and closes anyway.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// Writes the GOAWAY, then close_notify, and flushes; then half-closes
    /// and reads and discards what the client still sends, up to its EOF
    /// or [`MAX_DRAIN`]. Ready when done or when the connection failed
    /// under it (nothing more to say then). The caller bounds it in time
    /// ([`Self::until`]).
    pub fn poll_write(&mut self, io: &mut TlsStream<TcpStream>, cx: &mut Context<'_>) -> Poll<()> {
        while self.sent < self.bytes.len() {
            match Pin::new(&mut *io).poll_write(cx, &self.bytes[self.sent..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.sent += n,
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => return Poll::Ready(()),
            }
        }
        if !self.notified {
            self.notified = true;
            io.get_mut().1.send_close_notify();
        }
        let mut drained = match self.drained {
            Some(n) => n,
            None => {
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => {}
                }
                // FIN after the close_notify; the socket is read raw now.
                if !matches!(
                    Pin::new(&mut io.get_mut().0).poll_shutdown(cx),
                    Poll::Ready(Ok(()))
                ) {
                    return Poll::Ready(());
                }
                self.until = Instant::now() + DRAIN_LIMIT;
                0
            }
        };
        let mut scratch = [0u8; 4096];
        let result = loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut io.get_mut().0).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    drained += buf.filled().len();
                    if drained >= MAX_DRAIN {
                        break Poll::Ready(());
                    }
                }
                Poll::Pending => break Poll::Pending,
                // EOF, or the connection failed.
                Poll::Ready(_) => break Poll::Ready(()),
            }
        };
        self.drained = Some(drained);
        result
    }
}

/// A GOAWAY frame: `last_stream`, `code` and `debug` (cut to a bound).
pub fn frame(last_stream: u32, code: u32, debug: &str) -> Vec<u8> {
    let debug = &debug.as_bytes()[..debug.len().min(MAX_DEBUG)];
    let len = 8 + debug.len();
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&u32::try_from(len).unwrap_or(8).to_be_bytes()[1..]);
    f.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(debug);
    f
}

/// The debug data of the GOAWAY closing a connection marked by the request
/// path: why, in words a client shows its user, with the reason code.
pub fn identity_denials_text(limit: u32, reason: Option<&str>) -> String {
    match reason {
        Some(r @ ("CERTIFICATE_REVOKED" | "CERTIFICATE_EXPIRED")) => format!(
            "sealgate: connection closed: its client certificate is refused ({r}); \
             ask the gateway operator"
        ),
        _ => format!(
            "sealgate: connection closed after {limit} requests in a row refused for identity ({}); \
             ask the gateway operator",
            reason.unwrap_or("identity")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame; a HEADERS one ends its header block.
    fn raw(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let flags = if kind == HEADERS { END_HEADERS } else { 0 };
        let mut f = u32::try_from(payload.len()).expect("small").to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_client_cursor_skips_the_preface_and_finds_the_last_stream() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(raw(0x4, 0, &[]));
        bytes.extend(raw(HEADERS, 1, &[0; 20]));
        bytes.extend(raw(0x0, 1, &[0; 5]));
        bytes.extend(raw(HEADERS, 7, &[1; 3]));
        bytes.extend(raw(0x3, 9, &[0; 4]));
        // Fed one byte at a time, and all at once: the same.
        let mut slow = FrameCursor::client();
        for (i, b) in bytes.iter().enumerate() {
            slow.feed(std::slice::from_ref(b));
            if i + 1 < bytes.len() && i + 1 == 24 {
                assert!(slow.at_boundary(), "after the preface");
            }
        }
        let mut fast = FrameCursor::client();
        fast.feed(&bytes);
        for c in [&slow, &fast] {
            assert!(c.at_boundary());
            assert_eq!(c.last_stream(), 7, "a RST_STREAM opens nothing");
        }
        let mut partial = FrameCursor::client();
        partial.feed(&bytes[..bytes.len() - 2]);
        assert!(!partial.at_boundary());
    }

    #[test]
    fn no_frame_goes_inside_a_header_block() {
        let mut c = FrameCursor::server();
        let mut open = raw(HEADERS, 3, &[0; 10]);
        open[4] = 0;
        c.feed(&open);
        assert!(!c.at_boundary(), "HEADERS without END_HEADERS");
        c.feed(&raw(CONTINUATION, 3, &[0; 4]));
        assert!(!c.at_boundary(), "CONTINUATION without END_HEADERS");
        let mut end = raw(CONTINUATION, 3, &[0; 4]);
        end[4] = END_HEADERS;
        c.feed(&end);
        assert!(c.at_boundary(), "the block ended");
        c.feed(&raw(HEADERS, 5, &[0; 10]));
        assert!(c.at_boundary());
        assert_eq!(c.last_stream(), 5);
    }

    #[test]
    fn the_transports_goaway_never_raises_one_hyper_wrote() {
        let mut c = FrameCursor::server();
        c.feed(&raw(HEADERS, 7, &[0; 3]));
        assert_eq!(c.goaway_last_stream(7), 7, "no GOAWAY yet");
        // hyper's graceful GOAWAY (last stream 3), fed a byte at a time.
        for b in frame(3, 0, "") {
            c.feed(&[b]);
        }
        assert!(c.at_boundary());
        assert_eq!(c.goaway_last_stream(7), 3, "capped at hyper's");
        assert_eq!(c.goaway_last_stream(1), 1, "a lower one stands");
        c.feed(&frame(5, 0, "later and higher"));
        assert_eq!(c.goaway_last_stream(7), 3, "the lowest is kept");
        let mut split = FrameCursor::server();
        let f = frame(2, 0, "x");
        split.feed(&f[..11]);
        split.feed(&f[11..]);
        assert_eq!(split.goaway_last_stream(9), 2);
    }

    #[test]
    fn a_goaway_carries_its_reason_and_bounded_debug_data() {
        let f = frame(15, ENHANCE_YOUR_CALM, "why");
        assert_eq!(&f[..9], &[0, 0, 11, GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..13], &15u32.to_be_bytes());
        assert_eq!(&f[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
        assert_eq!(&f[17..], b"why");
        let long = frame(1, 0, &"x".repeat(10_000));
        assert_eq!(long.len(), 9 + 8 + MAX_DEBUG);
        let mut c = FrameCursor::server();
        c.feed(&long);
        assert!(c.at_boundary());
    }

    #[test]
    fn the_debug_text_names_the_reason() {
        let t = identity_denials_text(8, Some("CLIENT_DISABLED"));
        assert!(t.contains("8 requests in a row refused for identity (CLIENT_DISABLED)"));
        let t = identity_denials_text(8, Some("CERTIFICATE_REVOKED"));
        assert!(t.contains("client certificate is refused (CERTIFICATE_REVOKED)"));
    }
}
