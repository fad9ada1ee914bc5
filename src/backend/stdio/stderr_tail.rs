//! A backend child's stderr: every line to the debug log (an operator opts
//! in with `SEALGATE_LOG=sealgate::backend::stderr=debug`: a child's stderr
//! may echo argument values or secrets), and its last lines kept to say why
//! it could not start.
//!
//! What the start error (a warning, or `StartError` at first start) shows
//! is decided here. The sandbox helper's own failure comes from the helper
//! (its report, or the errno of a failed `execv`), never from stderr. The
//! child's own lines are its word, and a channel from a hostile backend
//! into the gateway's default-level log; so they are shown only when the
//! operator has opted into them at debug level, and otherwise the error
//! says how many there were and where they are logged. Shown, they are
//! bounded (lines and characters), escaped (one line each, no control
//! character), with the values of the backend's secrets (`secret_env`, as
//! the child got them) replaced, the longest first and each line of a
//! multi-line secret on its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines kept.
const LINES: usize = 5;
/// Characters kept per line, after escaping.
const CHARS: usize = 240;
/// Bytes of one stderr line read; the rest of a longer line is discarded.
pub(super) const MAX_LINE: usize = 8 * 1024;
/// Secrets (and lines of multi-line secrets) shorter than this are not
/// searched for (too many false hits, and too short to be worth hiding).
const MIN_SECRET: usize = 4;
/// Where the child's stderr goes.
pub(super) const TARGET: &str = "sealgate::backend::stderr";

#[derive(Default)]
struct Inner {
    lines: VecDeque<String>,
    /// Lines read in all.
    read: u64,
    /// Lines longer than [`MAX_LINE`], cut.
    cut: u64,
}

/// The tail of one child's stderr.
#[derive(Clone, Default)]
pub(super) struct StderrTail {
    inner: Arc<Mutex<Inner>>,
}

impl StderrTail {
    /// Keeps `line` (escaped and cut later, when shown); `cut`: it was
    /// longer than [`MAX_LINE`].
    pub(super) fn push(&self, line: &str, cut: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.lines.len() == LINES {
            inner.lines.pop_front();
        }
        // Keep a little more than shown so that a secret cut at the edge
        // is still recognised.
        inner
            .lines
            .push_back(line.chars().take(CHARS * 4).collect());
        inner.read += 1;
        inner.cut += u64::from(cut);
    }

    /// What the start error says of the child's stderr: its last lines
    /// when `show` (the operator's opt-in), else how many lines it wrote
    /// and where they are logged; nothing when it wrote none.
    pub(super) fn describe(&self, secrets: &[SecretString], show: bool) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.read == 0 {
            return String::new();
        }
        let cut = match inner.cut {
            0 => String::new(),
            1 => "; 1 line over 8 KiB cut".to_string(),
            n => format!("; {n} lines over 8 KiB cut"),
        };
        if !show {
            let n = inner.read;
            let s = if n == 1 { "" } else { "s" };
            return format!(
                "; it wrote {n} line{s} on stderr, logged at debug level (SEALGATE_LOG={TARGET}=debug){cut}"
            );
        }
        let needles = needles(secrets);
        let shown: Vec<String> = inner
            .lines
            .iter()
            .map(|l| {
                let mut l = l.clone();
                for s in &needles {
                    l = l.replace(s, "[redacted]");
                }
                let escaped: String = l.escape_debug().collect();
                let mut shown: String = escaped.chars().take(CHARS).collect();
                if shown.len() < escaped.len() {
                    shown.push('…');
                }
                format!("\"{shown}\"")
            })
            .collect();
        format!("; its last stderr lines: {}{cut}", shown.join(" | "))
    }
}

/// The strings to replace: each secret, and each line of a multi-line
/// one, longest first (so that a secret containing another is replaced
/// whole).
fn needles(secrets: &[SecretString]) -> Vec<String> {
    let mut needles: Vec<String> = secrets
        .iter()
        .flat_map(|s| {
            let s = s.expose_secret();
            let mut parts = vec![s.to_string()];
            if s.contains('\n') {
                parts.extend(s.lines().map(|l| l.trim().to_string()));
            }
            parts
        })
        .filter(|s| s.len() >= MIN_SECRET)
        .collect();
    needles.sort_by_key(|s| std::cmp::Reverse(s.len()));
    needles.dedup();
    needles
}

/// Reads `r` to its end, one line at a time (a line longer than
/// [`MAX_LINE`] bytes is cut there and the rest of it discarded, so that
/// no line ends the reading), and hands each to `each` with whether it
/// was cut. Not a codec: one that fails on a long line stops the stream.
pub(super) async fn read_lines<R: AsyncRead + Unpin>(r: R, mut each: impl FnMut(&str, bool)) {
    let mut r = BufReader::new(r);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut emit = |line: &mut Vec<u8>, cut: &mut bool| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        each(&String::from_utf8_lossy(line), *cut);
        line.clear();
        *cut = false;
    };
    loop {
        let buf = match r.fill_buf().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if buf.is_empty() {
            if !line.is_empty() || cut {
                emit(&mut line, &mut cut);
            }
            return;
        }
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = MAX_LINE.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(buf.len(), |i| i + 1);
        r.consume(used);
        if newline.is_some() {
            emit(&mut line, &mut cut);
        }
    }
}

/// Reads the child's stderr into `tail` and the debug log, until its end.
pub(super) fn spawn_reader(
    stderr: tokio::process::ChildStderr,
    name: String,
    tail: StderrTail,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(read_lines(stderr, move |line, cut| {
        tail.push(line, cut);
        tracing::debug!(target: "sealgate::backend::stderr", backend = name, cut, "{}", crate::foreign::foreign(line, 1024));
    }))
}

/// Whether the operator opted into the child's stderr (debug level for
/// [`TARGET`]), which then also shows in the start error.
pub(super) fn opted_in() -> bool {
    tracing::enabled!(target: "sealgate::backend::stderr", tracing::Level::DEBUG)
}

/// The sandbox helper's failed `execv`, from its report line
/// (`{"exec_errno": 13}`): the child can write such a line too, but only
/// an error number reaches the log from it, never text.
pub(super) fn exec_failure(params: &serde_json::Value) -> Option<i32> {
    params
        .get("exec_errno")
        .and_then(serde_json::Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| (1..4096).contains(n))
}

/// "cannot execute <command>: EACCES", from an error number.
pub(super) fn describe_exec_failure(command: &str, errno: i32) -> String {
    let name = nix::errno::Errno::from_raw(errno);
    let command: String = command.escape_debug().collect();
    format!("; sandbox: cannot execute {command}: {name:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn the_tail_is_bounded_escaped_and_redacted() {
        let tail = StderrTail::default();
        assert_eq!(tail.describe(&[], true), "");
        for i in 0..8 {
            tail.push(&format!("line {i}"), false);
        }
        tail.push("token=s3cr3t-value\u{1b}[31m", false);
        tail.push(&"x".repeat(5000), false);
        let shown = tail.describe(&[secret("s3cr3t-value"), secret("ab")], true);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("token=[redacted]\\u{1b}[31m"), "{shown}");
        assert!(!shown.contains("line 4"), "{shown}");
        assert!(shown.contains("\"line 5\" | \"line 6\""), "{shown}");
        assert!(
            shown.ends_with(&format!("{}…\"", "x".repeat(CHARS))),
            "{shown}"
        );
        assert!(shown.len() < 6 * (CHARS + 8) + 40, "{}", shown.len());
    }

    #[test]
    fn without_the_opt_in_no_line_of_the_child_is_shown() {
        let tail = StderrTail::default();
        tail.push("EXFIL aGVsbG8=", false);
        tail.push("more", true);
        assert_eq!(
            tail.describe(&[], false),
            "; it wrote 2 lines on stderr, logged at debug level (SEALGATE_LOG=sealgate::backend::stderr=debug); 1 line over 8 KiB cut"
        );
    }

    #[test]
    fn multi_line_and_overlapping_secrets_are_redacted_whole() {
        let tail = StderrTail::default();
        tail.push("-----BEGIN KEY-----", false);
        tail.push("MIIBsecretline1", false);
        tail.push("long=abcdefgh", false);
        let shown = tail.describe(
            &[
                secret("abcd"),
                secret("abcdefgh"),
                secret("-----BEGIN KEY-----\nMIIBsecretline1\n-----END KEY-----"),
            ],
            true,
        );
        assert_eq!(
            shown,
            "; its last stderr lines: \"[redacted]\" | \"[redacted]\" | \"long=[redacted]\""
        );
    }

    #[tokio::test]
    async fn a_long_line_is_cut_and_reading_goes_on() {
        let mut input = vec![b'x'; 20 * 1024];
        input.extend_from_slice(b"\nboom\r\nlast");
        let mut got = Vec::new();
        read_lines(&input[..], |l, cut| got.push((l.len(), l.to_string(), cut))).await;
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].2), (MAX_LINE, true));
        assert_eq!((got[1].1.as_str(), got[1].2), ("boom", false));
        assert_eq!((got[2].1.as_str(), got[2].2), ("last", false));
    }

    #[test]
    fn the_helper_s_exec_failure_is_an_error_number_only() {
        let p = serde_json::json!({"error": "anything at all", "exec_errno": 13});
        assert_eq!(exec_failure(&p), Some(13));
        assert_eq!(
            describe_exec_failure("/srv/x", 13),
            "; sandbox: cannot execute /srv/x: EACCES"
        );
        assert_eq!(exec_failure(&serde_json::json!({"exec_errno": "13"})), None);
        assert_eq!(exec_failure(&serde_json::json!({"exec_errno": -1})), None);
    }
}
