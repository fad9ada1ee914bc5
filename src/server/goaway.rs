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
//! own may go; from what the client sends, the last stream it opened. Nothing here parses a frame's payload: only the 9-byte headers.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The HTTP/2 connection preface a client sends first.
const PREFACE_LEN: usize = 24;

const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;

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
                }
            }
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

    /// Whether the next byte starts a frame.
    pub fn at_boundary(&self) -> bool {
        self.preface == 0 && self.have == 0 && self.payload == 0
    }

    /// The highest stream id of a HEADERS frame so far: on the client's
    /// side the last stream opened, on the server's the last answered.
    pub fn last_stream(&self) -> u32 {
        self.last_headers
    }
}

/// A GOAWAY (`ENHANCE_YOUR_CALM`) being written, then the TLS close_notify.
#[derive(Debug)]
pub struct Farewell {
    bytes: Vec<u8>,
    sent: usize,
    notified: bool,
}

impl Farewell {
    /// The GOAWAY of a connection closed after `last_stream`, saying `why`.
    pub fn new(last_stream: u32, why: &str) -> Self {
        Farewell {
            bytes: frame(last_stream, ENHANCE_YOUR_CALM, why),
            sent: 0,
            notified: false,
        }
    }

    /// Writes the GOAWAY, then close_notify, and flushes; ready when done
    /// or when the connection failed under it (nothing more to say then).
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
        Pin::new(&mut *io).poll_flush(cx).map(|_| ())
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

    fn raw(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = u32::try_from(payload.len()).expect("small").to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, 0]);
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
