//! c2sp.org/signed-note: a text followed by a blank line and one or more
//! signature lines `— <key name> <base64(4-byte key ID || signature)>`.
//!
//! Parsing ([`SignedNote::parse`]) checks only the syntax; a note's text
//! may be trusted only through a [`VerifiedNote`], which only
//! [`SignedNote::verify`] makes, once a known key's signature held.
//! Stricter than the spec's minimum and than sumdb/note: a note over
//! [`MAX_NOTE_BYTES`], over [`MAX_SIGNATURES`] lines, or with two lines for
//! the same key name and ID is refused, not trimmed.

use super::encoding::{decode_base64, encode_base64};
use super::key::{KeyError, KeyId, KeyName, SignatureType, SignerKey, VerifierKey};

/// Largest signed note accepted, in bytes (text and signatures).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The signature line prefix: em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note was refused, or could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is over [`MAX_NOTE_BYTES`].
    #[error("note is {len} bytes, over {MAX_NOTE_BYTES}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The note is not UTF-8.
    #[error("note is not UTF-8")]
    NotUtf8,
    /// An ASCII control character other than newline, at a byte offset.
    #[error("control character at byte {offset}")]
    ControlCharacter {
        /// Byte offset in the note or text.
        offset: usize,
    },
    /// The text is empty or does not end with a newline.
    #[error("note text does not end with a newline")]
    TextNotTerminated,
    /// No blank line separates the text from signatures.
    #[error("no blank line before the signatures")]
    NoBlankLine,
    /// Nothing follows the blank line.
    #[error("no signature lines")]
    NoSignatures,
    /// The last signature line has no final newline.
    #[error("the last signature line does not end with a newline")]
    SignatureNotTerminated,
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature line (numbered from 1) does not start with "— ".
    #[error("signature line {line} does not start with an em dash and a space")]
    SignaturePrefix {
        /// The line, counted from 1 after the blank line.
        line: usize,
    },
    /// A signature line has no space between name and signature.
    #[error("signature line {line} has no signature after the name")]
    SignatureShape {
        /// The line, counted from 1 after the blank line.
        line: usize,
    },
    /// A signature line's key name is invalid.
    #[error("signature line {line}: {source}")]
    SignatureName {
        /// The line, counted from 1 after the blank line.
        line: usize,
        /// What is wrong with the name.
        source: KeyError,
    },
    /// A signature is not canonical base64.
    #[error("signature line {line} is not canonical base64")]
    SignatureBase64 {
        /// The line, counted from 1 after the blank line.
        line: usize,
    },
    /// A signature is shorter than a key ID and one byte.
    #[error("signature line {line} is shorter than 5 bytes")]
    SignatureTooShort {
        /// The line, counted from 1 after the blank line.
        line: usize,
    },
    /// Two signature lines for the same key name and ID.
    #[error("two signatures for key {name}+{id}")]
    DuplicateSignature {
        /// The key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
    /// Two known keys share a name and key ID.
    #[error("two known keys are {name}+{id}")]
    AmbiguousKey {
        /// The key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
    /// A key of another signature type was given to sign or verify a note.
    #[error("key {name} is a {kind:?} key, not a note (Ed25519) key")]
    WrongKeyType {
        /// The key name.
        name: KeyName,
        /// Its type.
        kind: SignatureType,
    },
    /// A known key's signature does not verify.
    #[error("invalid signature for key {name}+{id}")]
    InvalidSignature {
        /// The key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
    /// No signature from a known key.
    #[error("note has no signature from a known key")]
    NoKnownSignature,
}

/// A note text: UTF-8, non-empty, ending with a newline, no ASCII control
/// character but newline, small enough to be signed within
/// [`MAX_NOTE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteText(String);

impl NoteText {
    /// Checks `text` against the signed-note rules.
    pub fn new(text: String) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len: text.len() });
        }
        check_controls(&text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::TextNotTerminated);
        }
        Ok(Self(text))
    }

    /// The text, final newline included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One signature line: key name, key ID and the signature bytes after it
/// (64 for Ed25519; 72 for a v1 cosignature: timestamp and signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: KeyName,
    /// The key ID.
    pub id: KeyId,
    /// The bytes after the key ID (at least one).
    pub payload: Vec<u8>,
}

impl SignatureLine {
    /// The line as written: `— <name> <base64(id || payload)>\n`.
    pub fn encode(&self) -> String {
        let mut raw = self.id.0.to_vec();
        raw.extend_from_slice(&self.payload);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, encode_base64(&raw))
    }

    /// The length of [`SignatureLine::encode`], without encoding.
    fn encoded_len(&self) -> usize {
        let raw = 4 + self.payload.len();
        SIGNATURE_PREFIX.len() + self.name.as_str().len() + 1 + raw.div_ceil(3) * 4 + 1
    }

    fn parse(line: &str, number: usize) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::SignaturePrefix { line: number })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::SignatureShape { line: number })?;
        let name = KeyName::new(name).map_err(|source| NoteError::SignatureName {
            line: number,
            source,
        })?;
        let raw = decode_base64(b64).ok_or(NoteError::SignatureBase64 { line: number })?;
        if raw.len() < 5 {
            return Err(NoteError::SignatureTooShort { line: number });
        }
        let id = KeyId([raw[0], raw[1], raw[2], raw[3]]);
        Ok(Self {
            name,
            id,
            payload: raw[4..].to_vec(),
        })
    }
}

/// A note and its signature lines, syntax checked, signatures not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: NoteText,
    signatures: Vec<SignatureLine>,
}

impl SignedNote {
    /// Parses a signed note (syntax only; see [`SignedNote::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len: bytes.len() });
        }
        let note = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_controls(note)?;
        // The text ends at the last blank line: signature lines are never
        // empty, and the text may hold blank lines of its own.
        let split = note.rfind("\n\n").ok_or(NoteError::NoBlankLine)?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteError::SignatureNotTerminated)?;
        let mut signed = Self {
            text: NoteText::new(text.to_owned())?,
            signatures: Vec::new(),
        };
        // Counted before any line is decoded, so a flood costs nothing.
        if block.split('\n').nth(MAX_SIGNATURES).is_some() {
            return Err(NoteError::TooManySignatures);
        }
        for (i, line) in block.split('\n').enumerate() {
            signed.push(SignatureLine::parse(line, i + 1)?)?;
        }
        Ok(signed)
    }

    /// Signs `text` with a note (type 0x01) key.
    pub fn sign(text: NoteText, signer: &SignerKey) -> Result<Self, NoteError> {
        let mut signed = Self {
            text,
            signatures: Vec::new(),
        };
        signed.add_signature(signer)?;
        Ok(signed)
    }

    /// Adds a signature by a note (type 0x01) key, after the others.
    pub fn add_signature(&mut self, signer: &SignerKey) -> Result<(), NoteError> {
        let v = signer.verifier();
        if v.kind() != SignatureType::Ed25519 {
            return Err(NoteError::WrongKeyType {
                name: v.name().clone(),
                kind: v.kind(),
            });
        }
        let signature = signer.sign(self.text.as_str().as_bytes());
        self.push(SignatureLine {
            name: v.name().clone(),
            id: v.id(),
            payload: signature.to_vec(),
        })
    }

    /// Adds a signature line made elsewhere (a cosignature), after the
    /// others; refused if its payload is empty, its key already signed or
    /// the note is full.
    pub fn push(&mut self, line: SignatureLine) -> Result<(), NoteError> {
        // What `parse` refuses is never written: a line needs a key ID and
        // at least one byte after it.
        if line.payload.is_empty() {
            return Err(NoteError::SignatureTooShort {
                line: self.signatures.len() + 1,
            });
        }
        if self
            .signatures
            .iter()
            .any(|s| s.name == line.name && s.id == line.id)
        {
            return Err(NoteError::DuplicateSignature {
                name: line.name,
                id: line.id,
            });
        }
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        // The bytes of the note with this line: text, blank line, lines.
        let lines: usize = self
            .signatures
            .iter()
            .chain([&line])
            .map(SignatureLine::encoded_len)
            .sum();
        let len = self.text.as_str().len() + 1 + lines;
        if len > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len });
        }
        self.signatures.push(line);
        Ok(())
    }

    /// The note text (not yet trusted: see [`SignedNote::verify`]).
    pub fn text(&self) -> &NoteText {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[SignatureLine] {
        &self.signatures
    }

    /// The note as bytes: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.as_str().to_owned();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.encode());
        }
        out.into_bytes()
    }

    /// Verifies the signatures of `known` (note keys, type 0x01): lines of
    /// other keys are ignored; a line of a known key that does not verify
    /// refuses the whole note; at least one must verify.
    pub fn verify(&self, known: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
        for (i, k) in known.iter().enumerate() {
            if k.kind() != SignatureType::Ed25519 {
                return Err(NoteError::WrongKeyType {
                    name: k.name().clone(),
                    kind: k.kind(),
                });
            }
            if known[..i]
                .iter()
                .any(|o| o.name() == k.name() && o.id() == k.id())
            {
                return Err(NoteError::AmbiguousKey {
                    name: k.name().clone(),
                    id: k.id(),
                });
            }
        }
        let mut verified_by = Vec::new();
        for line in &self.signatures {
            let Some(key) = known
                .iter()
                .find(|k| k.name() == &line.name && k.id() == line.id)
            else {
                continue;
            };
            let invalid = || NoteError::InvalidSignature {
                name: line.name.clone(),
                id: line.id,
            };
            let signature: &[u8; 64] = line.payload.as_slice().try_into().map_err(|_| invalid())?;
            if !key.verify(self.text.as_str().as_bytes(), signature) {
                return Err(invalid());
            }
            verified_by.push(key.clone());
        }
        if verified_by.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(VerifiedNote {
            note: self.clone(),
            verified_by,
        })
    }
}

/// A note at least one known key's signature verified; made only by
/// [`SignedNote::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    note: SignedNote,
    verified_by: Vec<VerifierKey>,
}

impl VerifiedNote {
    /// The verified text.
    pub fn text(&self) -> &NoteText {
        self.note.text()
    }

    /// The known keys whose signatures verified, in line order.
    pub fn verified_by(&self) -> &[VerifierKey] {
        &self.verified_by
    }

    /// The whole note, other signature lines (cosignatures) included.
    pub fn note(&self) -> &SignedNote {
        &self.note
    }
}

fn check_controls(text: &str) -> Result<(), NoteError> {
    match text.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(offset) => Err(NoteError::ControlCharacter { offset }),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "note/tests.rs"]
mod tests;
