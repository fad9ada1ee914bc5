//! A failed call or connection as a [`ClientError`]: a gRPC status (its
//! sealgate reason, or the gateway's GOAWAY words), a connect error, and a
//! bare transport failure explained by the channel's last TLS alert.

use super::error::ClientError;
use super::handshake::{handshake_failure, refusal_of};

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        // A refused certificate surfaces on the first call (TLS 1.3): the
        // status then carries the transport error, not a sealgate reason.
        if let Some(handshake) = handshake_failure(&status) {
            return handshake;
        }
        let reason = crate::error::reason_of(&status);
        // A connection the gateway closed with a GOAWAY saying why: the
        // calls it did not act on carry that text only in their source.
        let message = reason
            .is_none()
            .then(|| goaway_text(&status))
            .flatten()
            .unwrap_or_else(|| status.message().to_string());
        ClientError::Denied {
            code: status.code(),
            reason,
            message,
        }
    }
}

/// The gateway's words in a GOAWAY's debug data (`sealgate: …`), found in
/// an error's source chain as h2 displays it (`… (b"sealgate: …")`).
fn goaway_text(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    const MARK: &str = "b\"sealgate: ";
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if let Some(start) = text.find(MARK) {
            return Some(
                unescape_bytes(&text[start + 2..])
                    .chars()
                    .take(256)
                    .collect(),
            );
        }
        next = e.source();
    }
    None
}

/// The text inside a byte string as Rust's `Debug` shows it (`b"…"`, the
/// opening quote already skipped): escapes undone, up to the closing quote.
fn unescape_bytes(shown: &str) -> String {
    let mut bytes = Vec::new();
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => bytes.push(b'\n'),
                Some('r') => bytes.push(b'\r'),
                Some('t') => bytes.push(b'\t'),
                Some('0') => bytes.push(0),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
                }
                Some(other) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => break,
            },
            other => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl From<crate::tls::ConnectError> for ClientError {
    fn from(e: crate::tls::ConnectError) -> Self {
        handshake_failure(&e).unwrap_or(ClientError::Connect(e))
    }
}

/// A failed call as a [`ClientError`]: a status without a sealgate reason
/// that the transport produced (the connection failed under the call) is
/// explained by the channel's last TLS error, when there is one.
///
/// The gateway's alert and the failed call race each other (the call can
/// fail before the connection task has read the alert), so a bare
/// transport failure waits up to [`ALERT_WAIT`] for it.
pub(crate) async fn explain_status(
    status: tonic::Status,
    failures: Option<&crate::tls::TlsFailures>,
) -> ClientError {
    let error = ClientError::from(status);
    if let ClientError::Denied {
        code: tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable,
        reason: None,
        ..
    } = &error
    {
        let Some(failures) = failures else {
            return error;
        };
        let deadline = tokio::time::Instant::now() + ALERT_WAIT;
        loop {
            if let Some(refusal) = failures.last().as_ref().and_then(refusal_of) {
                return refusal;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    error
}

/// How long a failed call waits for the TLS alert that explains it.
const ALERT_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaway_words_are_read_whole_with_their_escapes_undone() {
        let shown = r#"connection error: GoAway(b"sealgate: closed (\"why\") caf\xc3\xa9\n", ENHANCE_YOUR_CALM, Remote)"#;
        let start = shown.find("b\"").expect("bytes") + 2;
        assert_eq!(
            unescape_bytes(&shown[start..]),
            "sealgate: closed (\"why\") caf\u{e9}\n"
        );
        assert_eq!(unescape_bytes("cut\\"), "cut", "a dangling escape");
    }
}
