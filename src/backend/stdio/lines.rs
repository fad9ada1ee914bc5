//! The framing of a stdio child's stdout: one JSON-RPC message per line, of
//! at most [`super::MAX_LINE`] bytes.
//!
//! A longer line is no reason to end the child, which serves every client:
//! killing it would fail the calls of all of them for one client's large
//! result. Such a line is skipped to its newline, its bytes discarded as
//! they arrive (never buffered past the limit), and only the call it
//! answers fails, when its first bytes name it (a top-level numeric `"id"`
//! before any large value, as every JSON-RPC library writes it); otherwise
//! no call fails for it and its caller waits for the deadline. A line that
//! is not UTF-8 is handed on as it is (it is not JSON and is dropped, like
//! any line that is not). This decoder never fails on what the child
//! writes: only a read error ends the reading.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// How many of a too-long line's first bytes are searched for its `"id"`.
const ID_PREFIX: usize = 64 * 1024;

/// One line of a child's stdout.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line within the limit, without its line end (`\n` or `\r\n`).
    Message(BytesMut),
    /// A line over the limit, skipped: the id its first bytes name, and how
    /// many bytes it had (without its newline).
    TooLong { id: Option<u64>, bytes: u64 },
}

/// Splits a child's stdout into [`Line`]s of at most `max` bytes; each
/// byte is searched once however the output is cut into reads.
#[derive(Debug)]
pub(crate) struct MessageLines {
    max: usize,
    /// `buf[..searched]` holds no newline.
    searched: usize,
    /// Within a too-long line: what it is so far.
    skipping: Option<(Option<u64>, u64)>,
}

impl MessageLines {
    /// A framer for lines of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        MessageLines {
            max,
            searched: 0,
            skipping: None,
        }
    }
}

impl Decoder for MessageLines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some((id, bytes)) = self.skipping {
            return Ok(match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    buf.advance(i + 1);
                    self.skipping = None;
                    Some(Line::TooLong {
                        id,
                        bytes: bytes + i as u64,
                    })
                }
                None => {
                    self.skipping = Some((id, bytes + buf.len() as u64));
                    buf.clear();
                    None
                }
            });
        }
        let from = self.searched.min(buf.len());
        match buf[from..].iter().position(|b| *b == b'\n') {
            Some(off) if from + off > self.max => {
                let end = from + off;
                let id = leading_id(&buf[..end.min(ID_PREFIX)]);
                buf.advance(end + 1);
                self.searched = 0;
                Ok(Some(Line::TooLong {
                    id,
                    bytes: end as u64,
                }))
            }
            Some(off) => {
                let mut line = buf.split_to(from + off + 1);
                self.searched = 0;
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Ok(Some(Line::Message(line)))
            }
            None if buf.len() > self.max => {
                // Over the limit with no end in sight: keep only what the
                // line is, and discard the rest as it comes.
                let id = leading_id(&buf[..buf.len().min(ID_PREFIX)]);
                self.skipping = Some((id, buf.len() as u64));
                buf.clear();
                self.searched = 0;
                Ok(None)
            }
            None => {
                self.searched = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if let Some((id, bytes)) = self.skipping.take() {
            return Ok(Some(Line::TooLong { id, bytes }));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        // The last line, without a newline.
        self.searched = 0;
        let mut line = buf.split_to(buf.len());
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Ok(Some(Line::Message(line)))
    }
}

/// The numeric `"id"` member of the JSON-RPC response that `prefix`
/// begins: a top-level `"id"` and a top-level `"result"` or `"error"`
/// member, in either order, before the prefix ends, and no `"method"`
/// member before them (a request of the backend's own, whose ids share
/// their numbers with the gateway's calls, names no call of ours). Member
/// names are compared as written, unescaped; the first `"id"` counts.
/// Linear.
pub(crate) fn leading_id(prefix: &[u8]) -> Option<u64> {
    let mut i = skip_ws(prefix, 0);
    if prefix.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let (mut id, mut response) = (None, false);
    loop {
        i = skip_ws(prefix, i);
        let name_start = i + 1;
        i = skip_string(prefix, i)?;
        let name = &prefix[name_start..i - 1];
        i = skip_ws(prefix, i);
        if prefix.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(prefix, i + 1);
        match name {
            b"method" => return None,
            b"result" | b"error" => {
                if id.is_some() {
                    return id;
                }
                response = true;
            }
            b"id" if id.is_none() => {
                let digits = prefix[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let n = std::str::from_utf8(&prefix[i..i + digits])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())?;
                let after = skip_ws(prefix, i + digits);
                if !matches!(prefix.get(after), Some(b',' | b'}')) {
                    return None;
                }
                id = Some(n);
                if response {
                    return id;
                }
            }
            _ => {}
        }
        i = skip_value(prefix, i)?;
        i = skip_ws(prefix, i);
        if prefix.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while s
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The index after the string that starts at `i`.
fn skip_string(s: &[u8], i: usize) -> Option<usize> {
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match s.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index after the value that starts at `i` (not validated: only its
/// extent matters).
fn skip_value(s: &[u8], i: usize) -> Option<usize> {
    match s.get(i)? {
        b'"' => skip_string(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match s.get(j)? {
                    b'"' => {
                        j = skip_string(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = s[i..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            (i + len < s.len()).then_some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `size` and at the end, as FramedRead does.
    fn frame(input: &[u8], max: usize, size: usize) -> Vec<Line> {
        let mut codec = MessageLines::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input.chunks(size.max(1)) {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).expect("never fails") {
                out.push(line);
            }
            assert!(buf.len() <= max + size, "buffered past the limit");
        }
        while let Some(line) = codec.decode_eof(&mut buf).expect("never fails") {
            out.push(line);
        }
        out
    }

    fn msg(s: &str) -> Line {
        Line::Message(BytesMut::from(s.as_bytes()))
    }

    #[test]
    fn a_too_long_line_is_skipped_to_its_newline_and_the_next_line_is_read() {
        let long = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"{}\"}}",
            "a".repeat(100)
        );
        let input = format!("{{\"a\":1}}\r\n{long}\nnext\nlast");
        for size in [1, 3, 16, 1000] {
            assert_eq!(
                frame(input.as_bytes(), 40, size),
                vec![
                    msg("{\"a\":1}"),
                    Line::TooLong {
                        id: Some(7),
                        bytes: long.len() as u64
                    },
                    msg("next"),
                    msg("last"),
                ],
                "chunks of {size}"
            );
        }
        // At exactly the limit a line is read.
        assert_eq!(frame(b"12345\n", 5, 2), vec![msg("12345")]);
        assert_eq!(
            frame(b"123456\n", 5, 2),
            vec![Line::TooLong { id: None, bytes: 6 }]
        );
        // A too-long last line without a newline.
        assert_eq!(
            frame(b"1234567", 5, 2),
            vec![Line::TooLong { id: None, bytes: 7 }]
        );
        // Bytes that are not UTF-8 are a line like any other.
        assert_eq!(
            frame(b"\xff\xfe\n", 5, 1),
            vec![Line::Message(BytesMut::from(&b"\xff\xfe"[..]))]
        );
    }

    #[test]
    fn only_a_top_level_numeric_id_names_the_call() {
        assert_eq!(
            leading_id(br#"{"jsonrpc": "2.0", "id": 12, "result": {"#),
            Some(12)
        );
        assert_eq!(leading_id(br#" { "id" :3, "error": {"#), Some(3));
        assert_eq!(leading_id(br#"{"result": 1, "id": 4}"#), Some(4));
        // An id alone, or a request of the backend's own (review-c M2:
        // its ids share numbers with the gateway's calls), names none.
        assert_eq!(leading_id(br#" { "id" :3}"#), None);
        assert_eq!(
            leading_id(br#"{"id": 3, "method": "sampling/createMessage", "params": {"#),
            None
        );
        assert_eq!(
            leading_id(br#"{"method": "x", "id": 3, "result": 1}"#),
            None
        );
        // Nested ids, string ids and ids after the prefix ends name none.
        assert_eq!(leading_id(br#"{"result": {"id": 5, "x": "aaaa"#), None);
        assert_eq!(leading_id(br#"{"a": [{"id": 5}], "b": "}\"id\": 6"#), None);
        assert_eq!(
            leading_id(br#"{"a": [{"id": 5}], "id": 9, "result": "aaa"#),
            Some(9)
        );
        assert_eq!(leading_id(br#"{"id": "5"}"#), None);
        assert_eq!(leading_id(br#"{"id": 5.5}"#), None);
        assert_eq!(leading_id(br#"{"id": -5}"#), None);
        assert_eq!(leading_id(br#"{"id": 5"#), None);
        assert_eq!(leading_id(br#"{"id": 99999999999999999999}"#), None);
        assert_eq!(leading_id(br#"{"result": "aaa"#), None);
        assert_eq!(leading_id(b"[1]"), None);
        assert_eq!(leading_id(b""), None);
    }
}
