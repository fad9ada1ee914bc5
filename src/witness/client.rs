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

use std::path::Path;
use std::time::Duration;

use super::protocol::{
    parse_cosignatures, parse_size, AddCheckpoint, MAX_RESPONSE_BYTES, SIZE_CONTENT_TYPE,
};
use crate::tlog::{Hash, SignatureLine, SignedNote, VerifierKey};
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
    /// The answer is not what the protocol says (too large, not
    /// signature lines, a malformed size).
    #[error("the witness's answer is malformed: {0}")]
    Malformed(String),
    /// The request could not be formed (a proof longer than the protocol
    /// allows: never for a tree of fewer than 2^63 leaves).
    #[error("the request could not be formed: {0}")]
    Request(String),
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
    /// A client of the witness at `url` (its submission prefix) whose
    /// cosignatures verify under `key`, its TLS certificate under `ca_file`
    /// (the only root trusted); TLS 1.3 only; connects lazily.
    pub fn new(url: &str, key: VerifierKey, ca_file: &Path) -> Result<WitnessClient, String> {
        let mut endpoint = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        if endpoint.scheme() != "https" {
            return Err("the witness URL must be https".into());
        }
        // `<prefix>/add-checkpoint`, whether the prefix ends in a slash.
        let path = format!("{}/add-checkpoint", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let tls = crate::tls::backend_client_config(ca_file).map_err(|e| e.to_string())?;
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
        let body = AddCheckpoint {
            old_size,
            proof: proof.to_vec(),
            note: note.clone(),
        }
        .format()
        .map_err(|e| SubmitError::Request(e.to_string()))?;
        let response = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let conflict = status == reqwest::StatusCode::CONFLICT;
        let size_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(SIZE_CONTENT_TYPE));
        let body = bounded_body(response).await?;
        if conflict {
            if !size_type {
                return Err(SubmitError::Malformed(format!(
                    "a 409 without {SIZE_CONTENT_TYPE}"
                )));
            }
            return Err(SubmitError::Conflict {
                size: parse_size(&body).map_err(|e| SubmitError::Malformed(e.to_string()))?,
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(SubmitError::Status {
                status: status.as_u16(),
            });
        }
        self.cosignature(note, &body)
    }

    /// The line of `body` by our witness's key, verified on `note`
    /// (lines of other keys are ignored, as the protocol says).
    fn cosignature(&self, note: &SignedNote, body: &[u8]) -> Result<SignatureLine, SubmitError> {
        use super::protocol::ResponseError;
        match parse_cosignatures(body, note, std::slice::from_ref(&self.key)) {
            Ok(lines) => lines
                .into_iter()
                .next()
                .ok_or_else(|| SubmitError::Cosignature("no line by the witness's key".into())),
            Err(
                e @ (ResponseError::Invalid { .. }
                | ResponseError::ZeroTimestamp { .. }
                | ResponseError::NoKnownCosignature),
            ) => Err(SubmitError::Cosignature(e.to_string())),
            Err(e) => Err(SubmitError::Malformed(e.to_string())),
        }
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`]; more is an error, not a cut.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, SubmitError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(SubmitError::Malformed("the answer is too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(SubmitError::Malformed("the answer is too large".into()));
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
