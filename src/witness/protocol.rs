//! The c2sp.org/tlog-witness `add-checkpoint` call, as bytes: the request
//! body a log sends (old size line, consistency proof lines, a blank line,
//! the signed checkpoint note) and the cosignature lines a witness answers.
//!
//! One spelling per request: [`AddCheckpoint::parse`] refuses what
//! [`AddCheckpoint::format`] would not write (a leading zero, non-canonical
//! base64, a 64th proof line, a body over [`MAX_REQUEST_BYTES`]), with a
//! typed error the server maps to a status. Nothing here checks a
//! signature of the log or a proof: that is the witness's job (it knows
//! the keys and its state); [`parse_cosignatures`] is the client's, and
//! returns only lines that verified under a key the caller trusts.

use crate::tlog::{
    verify_cosignature, Checkpoint, CheckpointError, CosignatureError, Hash, KeyId, KeyName,
    NoteError, SignatureLine, SignedNote, VerifierKey, MAX_NOTE_BYTES,
};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest request body: `old <20 digits>\n`, 63 hash lines of 45 bytes,
/// the blank line and the largest signed note.
pub const MAX_REQUEST_BYTES: usize = 25 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_BYTES;

/// Largest response body read: as many cosignature lines as a note may
/// hold signatures (a witness with several keys answers one line each).
pub const MAX_RESPONSE_BYTES: usize = MAX_NOTE_BYTES;

/// The content type of a 409 answer's body (the witness's size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why a request body was refused: every case is a 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is over [`MAX_REQUEST_BYTES`].
    #[error("request is {len} bytes, over {MAX_REQUEST_BYTES}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The first line is not `old <decimal>` (no sign, no leading zero,
    /// at most 2^64 - 1).
    #[error("the first line is not `old <size>`")]
    OldLine,
    /// A proof line (numbered from 1) is not the canonical base64 of 32
    /// bytes.
    #[error("proof line {line} is not a base64 hash")]
    ProofLine {
        /// The proof line, counted from 1 after the old size line.
        line: usize,
    },
    /// More than [`MAX_PROOF_LINES`] proof lines.
    #[error("more than {MAX_PROOF_LINES} proof lines")]
    TooManyProofLines,
    /// No blank line ends the proof (the body ends first).
    #[error("no blank line after the proof")]
    NoBlankLine,
    /// The rest is not a signed note.
    #[error("the checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The note's text is not a checkpoint.
    #[error("the checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The old size is above the checkpoint's size.
    #[error("old size {old} is above the checkpoint size {size}")]
    OldSizeAboveCheckpoint {
        /// The old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

/// An `add-checkpoint` request: the size of the last checkpoint the client
/// believes the witness cosigned, a consistency proof from it to the
/// submitted checkpoint, and the checkpoint note signed by the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The witness's last cosigned size, as the client knows it (0: none).
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint's
    /// size (empty when `old_size` is 0 or equal to it).
    pub proof: Vec<Hash>,
    /// The checkpoint, signed by the log (more signatures allowed).
    pub note: SignedNote,
}

impl AddCheckpoint {
    /// The request body. Refused, as the witness would refuse it: more
    /// than [`MAX_PROOF_LINES`] hashes, a note that is not a checkpoint, an
    /// old size above the checkpoint's.
    pub fn format(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.proof.len() > MAX_PROOF_LINES {
            return Err(ProtocolError::TooManyProofLines);
        }
        self.check_sizes()?;
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.note.to_bytes());
        Ok(out)
    }

    /// Parses a request body strictly (syntax only: no signature, size
    /// order or proof is checked here).
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(ProtocolError::TooLarge { len: body.len() });
        }
        let (first, mut rest) = split_line(body).ok_or(ProtocolError::OldLine)?;
        let old_size = parse_old_line(first)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = split_line(rest).ok_or(ProtocolError::NoBlankLine)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(ProtocolError::TooManyProofLines);
            }
            let number = proof.len() + 1;
            proof.push(parse_hash_line(line).ok_or(ProtocolError::ProofLine { line: number })?);
        }
        let request = Self {
            old_size,
            proof,
            note: SignedNote::parse(rest)?,
        };
        // Without a checkpoint there is no origin to answer 404 or 403 on;
        // the old size is compared to it only after the log's signature
        // held (the spec's order: 404, 403, then 400 for old > size).
        request.unverified_checkpoint()?;
        Ok(request)
    }

    /// The submitted checkpoint, parsed but NOT verified: its origin picks
    /// the log's keys, and nothing else of it may be trusted before the
    /// note verified under them.
    pub fn unverified_checkpoint(&self) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse(self.note.text().as_str())
    }

    fn check_sizes(&self) -> Result<(), ProtocolError> {
        let size = self.unverified_checkpoint()?.size();
        if self.old_size > size {
            return Err(ProtocolError::OldSizeAboveCheckpoint {
                old: self.old_size,
                size,
            });
        }
        Ok(())
    }
}

/// Splits off one `\n`-terminated line (without its newline).
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// `old <decimal>`: digits only, no leading zero but `0` itself.
fn parse_old_line(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line.strip_prefix(b"old ").ok_or(ProtocolError::OldLine)?;
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !canonical {
        return Err(ProtocolError::OldLine);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or(ProtocolError::OldLine)
}

/// A hash in canonical standard base64 (what `to_base64` writes, only).
fn parse_hash_line(line: &[u8]) -> Option<Hash> {
    let text = std::str::from_utf8(line).ok()?;
    let hash = Hash::from_base64(text).ok()?;
    (hash.to_base64() == text).then_some(hash)
}

/// The size body of a 409 Conflict: the witness's size and a newline.
pub fn format_size(size: u64) -> String {
    format!("{size}\n")
}

/// Parses a 409 Conflict body (`<decimal>\n`, nothing else).
pub fn parse_size(body: &[u8]) -> Result<u64, ResponseError> {
    let digits = body
        .strip_suffix(b"\n")
        .filter(|d| {
            !d.is_empty()
                && d.len() <= 20
                && d.iter().all(u8::is_ascii_digit)
                && (d.len() == 1 || d[0] != b'0')
        })
        .ok_or(ResponseError::SizeBody)?;
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or(ResponseError::SizeBody)
}

/// The 200 body: the witness's cosignature lines.
pub fn format_cosignatures(lines: &[SignatureLine]) -> String {
    lines.iter().map(SignatureLine::encode).collect()
}

/// Why a witness's answer was refused by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The body is over [`MAX_RESPONSE_BYTES`].
    #[error("response is {len} bytes, over {MAX_RESPONSE_BYTES}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The body is empty (the spec requires one line or more).
    #[error("no cosignature line")]
    Empty,
    /// The body is not a block of signature lines (each `— <name>
    /// <base64>\n`), read as the signature block of the note it answers.
    #[error("the cosignature lines: {0}")]
    Lines(NoteError),
    /// A line of a trusted witness key did not verify (or is zero-timed,
    /// which the spec forbids).
    #[error("cosignature of {name}+{id}: {source}")]
    Invalid {
        /// The witness key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
        /// Why.
        source: CosignatureError,
    },
    /// A line of a trusted witness key carries timestamp 0.
    #[error("cosignature of {name}+{id} has timestamp 0")]
    ZeroTimestamp {
        /// The witness key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
    /// No line is from a trusted witness key.
    #[error("no cosignature from a known witness key")]
    NoKnownCosignature,
    /// A 409 body is not `<decimal>\n`.
    #[error("the 409 body is not a tree size line")]
    SizeBody,
}

/// The cosignature lines of a 200 answer to `request_note` that verify
/// under one of `witnesses` (cosignature/v1 keys). Lines of other keys are
/// ignored, as the spec requires; a line of a trusted key that does not
/// verify refuses the whole answer (a witness that signs garbage is not
/// counted); at least one must verify.
pub fn parse_cosignatures(
    body: &[u8],
    request_note: &SignedNote,
    witnesses: &[VerifierKey],
) -> Result<Vec<SignatureLine>, ResponseError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(ResponseError::TooLarge { len: body.len() });
    }
    if body.is_empty() {
        return Err(ResponseError::Empty);
    }
    // The spec's own suggestion: the lines are a note's signature block, so
    // the note parser (bounded, strict) reads them after the checkpoint.
    let mut text = request_note.text().as_str().as_bytes().to_vec();
    text.push(b'\n');
    text.extend_from_slice(body);
    let answered = SignedNote::parse(&text).map_err(ResponseError::Lines)?;
    // A signature line can never be empty, so the parser's "text ends at
    // the last blank line" finds the request's own text boundary again;
    // a body that starts with a blank line would move it, and is refused.
    if answered.text() != request_note.text() {
        return Err(ResponseError::Lines(NoteError::NoBlankLine));
    }
    let mut verified = Vec::new();
    for line in answered.signatures() {
        let Some(key) = witnesses
            .iter()
            .find(|k| k.name() == &line.name && k.id() == line.id)
        else {
            continue;
        };
        let invalid = |source| ResponseError::Invalid {
            name: line.name.clone(),
            id: line.id,
            source,
        };
        // The parser refuses two lines of one name and ID, so the line
        // verify_cosignature finds for this key is this one.
        let timestamp = verify_cosignature(&answered, key).map_err(invalid)?;
        if timestamp == 0 {
            return Err(ResponseError::ZeroTimestamp {
                name: line.name.clone(),
                id: line.id,
            });
        }
        verified.push(line.clone());
    }
    if verified.is_empty() {
        return Err(ResponseError::NoKnownCosignature);
    }
    Ok(verified)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
