//! The last lines a backend child wrote on stderr, kept to name why it
//! could not start: the sandbox helper's own error ("cannot execute …:
//! EACCES") reaches the gateway there, and so does an interpreter's
//! traceback. Bounded (lines and characters), escaped (one line each, no
//! control character), and with the values of the backend's own secrets
//! (`secret_env`) replaced, since a backend may print its environment.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

/// Lines kept.
const LINES: usize = 5;
/// Characters kept per line, after escaping.
const CHARS: usize = 240;
/// Secrets shorter than this are not searched for (too many false hits,
/// and too short to be worth hiding).
const MIN_SECRET: usize = 4;

/// The tail of one child's stderr.
#[derive(Clone, Default)]
pub(super) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    /// Keeps `line` (escaped and cut later, when shown).
    pub(super) fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == LINES {
            lines.pop_front();
        }
        // The codec bounds a line at 8 KiB; keep a little more than shown
        // so that a secret cut at the edge is still recognised.
        lines.push_back(line.chars().take(CHARS * 4).collect());
    }

    /// `; its last stderr lines: "…" | "…"`, or nothing when it wrote none.
    pub(super) fn describe(&self, secrets: &[SecretString]) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = lines
            .iter()
            .map(|l| {
                let mut l = l.clone();
                for s in secrets {
                    let s = s.expose_secret();
                    if s.len() >= MIN_SECRET {
                        l = l.replace(s, "[redacted]");
                    }
                }
                let escaped: String = l.escape_debug().collect();
                let mut cut: String = escaped.chars().take(CHARS).collect();
                if cut.len() < escaped.len() {
                    cut.push('…');
                }
                format!("\"{cut}\"")
            })
            .collect();
        format!("; its last stderr lines: {}", shown.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_bounded_escaped_and_redacted() {
        let tail = StderrTail::default();
        assert_eq!(tail.describe(&[]), "");
        for i in 0..8 {
            tail.push(&format!("line {i}"));
        }
        tail.push("token=s3cr3t-value\u{1b}[31m");
        tail.push(&"x".repeat(5000));
        let secret = SecretString::from("s3cr3t-value".to_string());
        let shown = tail.describe(&[secret, SecretString::from("ab".to_string())]);
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
}
