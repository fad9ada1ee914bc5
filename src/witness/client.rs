//! The gateway's client of one witness (c2sp.org/tlog-witness): POSTs a
//! signed checkpoint with its consistency proof to `<url>/add-checkpoint`
//! over HTTPS (TLS 1.3 only, the witness's own CA as the only root,
//! connections kept alive), and returns the witness's cosignature once it
//! verified under the witness's configured key.
//!
//! It never trusts what the witness answers: the body is bounded, a `409`
//! size is parsed strictly, and a cosignature that does not verify is an
//! error, never a cosignature. It never retries by itself (the witnessing
//! task decides, it has the proofs).

use std::time::Duration;

use base64::Engine as _;

use crate::audit::witness_config::WitnessPeer;
use crate::tlog::{verify_cosignature, Hash, SignatureLine, SignedNote, VerifierKey};

/// Largest answer read from a witness (cosignature lines are ~100 bytes).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// How long a TCP connection and TLS handshake to a witness may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one submission may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a witness did not cosign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// `409`: the witness's latest size for our origin is not the old
    /// size we sent.
    #[error("the witness holds tree size {size} for this log")]
    Conflict {
        /// The size the witness has cosigned last.
        size: u64,
    },
    /// Another HTTP status (`403` bad signature, `404` unknown origin,
    /// `422` bad proof, `400`, a `5xx`).
    #[error("the witness answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// No answer in time.
    #[error("the witness did not answer in time")]
    Timeout,
    /// The connection or TLS handshake failed.
    #[error("the witness could not be reached ({0})")]
    Connect(&'static str),
    /// The answer is not what the protocol says (too large, not UTF-8,
    /// not signature lines, a malformed size).
    #[error("the witness's answer is malformed: {0}")]
    Malformed(&'static str),
    /// No line of the answer is a valid cosignature by the configured key.
    #[error("no valid cosignature by the configured key: {0}")]
    Cosignature(String),
}

/// One configured witness.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    /// The witness's key: only its cosignatures count.
    key: VerifierKey,
    endpoint: reqwest::Url,
    http: reqwest::Client,
}

impl WitnessClient {
    /// A client of `peer`: its key parsed, its CA loaded (the only root
    /// trusted), TLS 1.3 only; connects lazily.
    pub fn new(peer: &WitnessPeer) -> Result<WitnessClient, String> {
        let key = peer.verifier()?;
        let mut endpoint = reqwest::Url::parse(&peer.url).map_err(|e| e.to_string())?;
        if endpoint.scheme() != "https" {
            return Err("the witness URL must be https".into());
        }
        // `<prefix>/add-checkpoint`, whether the prefix ends in a slash.
        let path = format!("{}/add-checkpoint", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let tls = crate::tls::backend_client_config(&peer.ca_file).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY must not reroute what proves the trail.
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(WitnessClient {
            key,
            endpoint,
            http,
        })
    }

    /// The witness's name (its key name), for logs, metrics and events.
    pub fn name(&self) -> &str {
        self.key.name().as_str()
    }

    /// The witness's key.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// Submits `note` (the log-signed checkpoint) with the consistency
    /// `proof` from `old_size`; returns the witness's verified
    /// cosignature line.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &SignedNote,
    ) -> Result<SignatureLine, SubmitError> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(request_body(old_size, proof, note))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let conflict = status == reqwest::StatusCode::CONFLICT;
        let size_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/x.tlog.size"));
        let body = bounded_body(response).await?;
        if conflict {
            if !size_type {
                return Err(SubmitError::Malformed("a 409 without text/x.tlog.size"));
            }
            return Err(SubmitError::Conflict {
                size: parse_size(&body)?,
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(SubmitError::Status {
                status: status.as_u16(),
            });
        }
        self.cosignature(note, &body)
    }

    /// The line of `body` by our witness's key, checked on `note`.
    fn cosignature(&self, note: &SignedNote, body: &[u8]) -> Result<SignatureLine, SubmitError> {
        let lines = parse_lines(body)?;
        let line = lines
            .into_iter()
            .find(|l| &l.name == self.key.name() && l.id == self.key.id())
            .ok_or_else(|| SubmitError::Cosignature("no line by the witness's key".into()))?;
        let mut cosigned = note.clone();
        cosigned
            .push(line.clone())
            .map_err(|e| SubmitError::Cosignature(e.to_string()))?;
        verify_cosignature(&cosigned, &self.key)
            .map_err(|e| SubmitError::Cosignature(e.to_string()))?;
        Ok(line)
    }
}

/// The add-checkpoint request: `old <size>`, each proof hash in base64 on
/// its own line, a blank line, then the signed checkpoint note.
fn request_body(old_size: u64, proof: &[Hash], note: &SignedNote) -> Vec<u8> {
    let mut body = format!("old {old_size}\n");
    for h in proof {
        body.push_str(&base64::engine::general_purpose::STANDARD.encode(h.as_bytes()));
        body.push('\n');
    }
    body.push('\n');
    let mut bytes = body.into_bytes();
    bytes.extend_from_slice(&note.to_bytes());
    bytes
}

/// Signature lines, each `— <name> <base64>\n`, parsed with the note
/// parser (so the rules are the same as for a note's own lines).
fn parse_lines(body: &[u8]) -> Result<Vec<SignatureLine>, SubmitError> {
    if body.is_empty() {
        return Err(SubmitError::Malformed("an empty answer"));
    }
    // A note with a placeholder text and the answer as its signatures.
    let mut note = b"x\n\n".to_vec();
    note.extend_from_slice(body);
    SignedNote::parse(&note)
        .map(|n| n.signatures().to_vec())
        .map_err(|_| SubmitError::Malformed("not cosignature lines"))
}

/// A `text/x.tlog.size` body: decimal digits, no leading zero, one
/// newline.
fn parse_size(body: &[u8]) -> Result<u64, SubmitError> {
    let bad = SubmitError::Malformed("a 409 size that is not a decimal number");
    let text = std::str::from_utf8(body).map_err(|_| bad.clone())?;
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(bad);
    }
    digits.parse().map_err(|_| bad)
}

/// Reads at most [`MAX_RESPONSE_BYTES`]; more is an error, not a cut.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, SubmitError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(SubmitError::Malformed("the answer is too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(SubmitError::Malformed("the answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(e: reqwest::Error) -> SubmitError {
    if e.is_timeout() {
        SubmitError::Timeout
    } else if e.is_connect() {
        SubmitError::Connect("connect or TLS handshake")
    } else {
        SubmitError::Connect("request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{cosign, Checkpoint, KeyName, SignatureType, SignerKey};

    fn signed(size: u64) -> (Checkpoint, SignedNote) {
        let log = SignerKey::generate(KeyName::new("o").expect("name"), SignatureType::Ed25519);
        let c = Checkpoint::new("o", size, [3; 32]).expect("checkpoint");
        let n = SignedNote::sign(c.to_note_text().expect("text"), &log).expect("sign");
        (c, n)
    }

    fn client(key: &VerifierKey) -> WitnessClient {
        WitnessClient {
            key: key.clone(),
            endpoint: reqwest::Url::parse("https://w.example/add-checkpoint").expect("url"),
            http: reqwest::Client::new(),
        }
    }

    #[test]
    fn the_request_is_old_size_proof_lines_blank_line_note() {
        let (_, note) = signed(5);
        let body = request_body(3, &[Hash([0; 32]), Hash([255; 32])], &note);
        let text = String::from_utf8(body).expect("utf-8");
        let expected = format!(
            "old 3\n{}\n{}\n\n{}",
            "A".repeat(43) + "=",
            "/".repeat(42) + "8=",
            String::from_utf8(note.to_bytes()).expect("utf-8")
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_409_size_is_parsed_strictly() {
        assert_eq!(parse_size(b"17\n"), Ok(17));
        assert_eq!(parse_size(b"0\n"), Ok(0));
        for bad in [
            &b""[..],
            b"\n",
            b"017\n",
            b"-1\n",
            b"1 \n",
            b"1\n\n",
            b"99999999999999999999\n",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_verifying_cosignature_by_the_configured_key_counts() {
        let (c, note) = signed(9);
        let w = SignerKey::generate(KeyName::new("w").expect("n"), SignatureType::CosignatureV1);
        let other =
            SignerKey::generate(KeyName::new("w").expect("n"), SignatureType::CosignatureV1);
        let good = cosign(&c, &w, 1_700_000_000).expect("cosign");
        let client = client(w.verifier());
        assert_eq!(
            client
                .cosignature(&note, good.encode().as_bytes())
                .expect("verifies"),
            good
        );
        // Another key's line under the same name is not ours.
        let stranger = cosign(&c, &other, 1_700_000_000).expect("cosign");
        assert!(matches!(
            client.cosignature(&note, stranger.encode().as_bytes()),
            Err(SubmitError::Cosignature(_))
        ));
        // Our key's line over another checkpoint does not verify.
        let (c2, _) = signed(10);
        let replayed = cosign(&c2, &w, 1_700_000_000).expect("cosign");
        assert!(matches!(
            client.cosignature(&note, replayed.encode().as_bytes()),
            Err(SubmitError::Cosignature(_))
        ));
        for junk in [&b""[..], b"hello\n", b"\xff\n"] {
            assert!(matches!(
                client.cosignature(&note, junk),
                Err(SubmitError::Malformed(_))
            ));
        }
    }
}
