//! c2sp.org/tlog-cosignature, the Ed25519 cosignature/v1: a witness's
//! timestamped signature line on a checkpoint note.
//!
//! - key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]
//! - signed message = `cosignature/v1\n` `time <T>\n` then the checkpoint
//!   text (every line, extensions included, final newline included)
//! - line payload = key ID || u64 big-endian T || 64-byte Ed25519 signature
//!
//! T is POSIX seconds, at most 2^63 - 1. The message does not commit to
//! the witness's name, so one key must serve one witness only. Checking a
//! cosignature says nothing about the log's own signature: a client checks
//! both ([`super::note::SignedNote::verify`] for the log).

use super::checkpoint::{Checkpoint, CheckpointError};
use super::key::{KeyId, KeyName, SignatureType, SignerKey, VerifierKey};
use super::note::{SignatureLine, SignedNote};

/// Largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// Bytes after the key ID: timestamp and signature.
const PAYLOAD_BYTES: usize = 8 + 64;

/// Why a cosignature could not be made or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The key is not a cosignature/v1 (type 0x04) key.
    #[error("key {name} is a {kind:?} key, not a cosignature/v1 key")]
    WrongKeyType {
        /// The key name.
        name: KeyName,
        /// Its type.
        kind: SignatureType,
    },
    /// The timestamp is over [`MAX_TIMESTAMP`].
    #[error("timestamp {timestamp} is over 2^63 - 1")]
    TimestampTooLarge {
        /// The timestamp.
        timestamp: u64,
    },
    /// The note's text is not a checkpoint.
    #[error("the cosigned note is not a checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// No line of the note has the witness's name and key ID.
    #[error("no cosignature by {name}+{id}")]
    Missing {
        /// The key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
    /// The witness's line is not 8 + 64 bytes after the key ID.
    #[error("cosignature by {name} is {len} bytes after the key ID, not 72")]
    PayloadLength {
        /// The key name.
        name: KeyName,
        /// Its length.
        len: usize,
    },
    /// The signature does not verify.
    #[error("invalid cosignature by {name}+{id}")]
    InvalidSignature {
        /// The key name.
        name: KeyName,
        /// The key ID.
        id: KeyId,
    },
}

/// The bytes a cosignature/v1 signs for `checkpoint` at `timestamp`.
pub fn cosigned_message(checkpoint: &Checkpoint, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{}", checkpoint.format()).into_bytes()
}

/// The witness's signature line for `checkpoint` at `timestamp` (POSIX
/// seconds), to be appended to the log's signed checkpoint note.
pub fn cosign(
    checkpoint: &Checkpoint,
    signer: &SignerKey,
    timestamp: u64,
) -> Result<SignatureLine, CosignatureError> {
    let key = signer.verifier();
    check_kind(key)?;
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampTooLarge { timestamp });
    }
    let signature = signer.sign(&cosigned_message(checkpoint, timestamp));
    let mut payload = timestamp.to_be_bytes().to_vec();
    payload.extend_from_slice(&signature);
    Ok(SignatureLine {
        name: key.name().clone(),
        id: key.id(),
        payload,
    })
}

/// Finds `cosigner`'s line in a checkpoint note and verifies it; returns
/// its timestamp. Other lines are ignored.
pub fn verify_cosignature(
    note: &SignedNote,
    cosigner: &VerifierKey,
) -> Result<u64, CosignatureError> {
    check_kind(cosigner)?;
    let checkpoint = Checkpoint::parse(note.text().as_str())?;
    let (name, id) = (cosigner.name(), cosigner.id());
    let line = note
        .signatures()
        .iter()
        .find(|l| &l.name == name && l.id == id)
        .ok_or_else(|| CosignatureError::Missing {
            name: name.clone(),
            id,
        })?;
    if line.payload.len() != PAYLOAD_BYTES {
        return Err(CosignatureError::PayloadLength {
            name: name.clone(),
            len: line.payload.len(),
        });
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&line.payload[..8]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&line.payload[8..]);
    let timestamp = u64::from_be_bytes(time);
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampTooLarge { timestamp });
    }
    if !cosigner.verify(&cosigned_message(&checkpoint, timestamp), &signature) {
        return Err(CosignatureError::InvalidSignature {
            name: name.clone(),
            id,
        });
    }
    Ok(timestamp)
}

fn check_kind(key: &VerifierKey) -> Result<(), CosignatureError> {
    if key.kind() == SignatureType::CosignatureV1 {
        Ok(())
    } else {
        Err(CosignatureError::WrongKeyType {
            name: key.name().clone(),
            kind: key.kind(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::note::NoteText;
    use super::*;

    fn name(s: &str) -> KeyName {
        KeyName::new(s).expect("valid test input")
    }
    fn log() -> SignerKey {
        SignerKey::from_seed(name("example.com/log"), SignatureType::Ed25519, &[1; 32])
    }
    fn witness() -> SignerKey {
        SignerKey::from_seed(
            name("witness.example/w1"),
            SignatureType::CosignatureV1,
            &[2; 32],
        )
    }
    fn checkpoint() -> Checkpoint {
        Checkpoint::new("example.com/log", 20852163, [9; 32]).expect("valid test input")
    }
    fn cosigned(ts: u64) -> SignedNote {
        let c = checkpoint();
        let mut n = SignedNote::sign(c.to_note_text().expect("valid test input"), &log())
            .expect("valid test input");
        n.push(cosign(&c, &witness(), ts).expect("valid test input"))
            .expect("valid test input");
        n
    }

    #[test]
    fn the_message_is_the_spec_layout() {
        let c = Checkpoint::parse(
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        )
        .expect("valid test input");
        assert_eq!(
            String::from_utf8(cosigned_message(&c, 1679315147)).expect("valid test input"),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
             CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn cosign_and_verify_round_trip() {
        let n = cosigned(1679315147);
        let back = SignedNote::parse(&n.to_bytes()).expect("valid test input");
        assert_eq!(
            verify_cosignature(&back, witness().verifier()),
            Ok(1679315147)
        );
        // The log's signature verifies on its own; the cosignature is an
        // unknown line to it.
        assert!(back.verify(&[log().verifier().clone()]).is_ok());
        assert_eq!(
            back.signatures()[1].payload[..8],
            1679315147u64.to_be_bytes()
        );
        assert_eq!(
            verify_cosignature(&cosigned(MAX_TIMESTAMP), witness().verifier()),
            Ok(MAX_TIMESTAMP)
        );
        assert_eq!(
            verify_cosignature(&cosigned(0), witness().verifier()),
            Ok(0)
        );
    }

    #[test]
    fn refusals_are_exact() {
        let w = witness();
        let wv = w.verifier().clone();
        let (wn, wid) = (wv.name().clone(), wv.id());
        let c = checkpoint();
        // Wrong key types, both ways.
        let want = CosignatureError::WrongKeyType {
            name: name("example.com/log"),
            kind: SignatureType::Ed25519,
        };
        assert_eq!(cosign(&c, &log(), 1), Err(want.clone()));
        assert_eq!(
            verify_cosignature(&cosigned(1), log().verifier()),
            Err(want)
        );
        // Timestamp bound when signing.
        let ts = MAX_TIMESTAMP + 1;
        assert_eq!(
            cosign(&c, &w, ts),
            Err(CosignatureError::TimestampTooLarge { timestamp: ts })
        );
        // No line by this witness.
        let log_only = SignedNote::sign(c.to_note_text().expect("valid test input"), &log())
            .expect("valid test input");
        assert_eq!(
            verify_cosignature(&log_only, &wv),
            Err(CosignatureError::Missing {
                name: wn.clone(),
                id: wid
            })
        );
        // A line of the wrong length (a plain note signature by the key).
        let mut short = log_only.clone();
        short
            .push(SignatureLine {
                name: wn.clone(),
                id: wid,
                payload: vec![0; 64],
            })
            .expect("valid test input");
        assert_eq!(
            verify_cosignature(&short, &wv),
            Err(CosignatureError::PayloadLength {
                name: wn.clone(),
                len: 64
            })
        );
        // A timestamp over 2^63 - 1 in the line.
        let mut high = log_only.clone();
        let mut payload = u64::MAX.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 64]);
        high.push(SignatureLine {
            name: wn.clone(),
            id: wid,
            payload,
        })
        .expect("valid test input");
        assert_eq!(
            verify_cosignature(&high, &wv),
            Err(CosignatureError::TimestampTooLarge {
                timestamp: u64::MAX
            })
        );
        // The timestamp changed under the signature.
        let mut line = cosign(&c, &w, 100).expect("valid test input");
        line.payload[7] = 101;
        let mut moved = log_only.clone();
        moved.push(line).expect("valid test input");
        assert_eq!(
            verify_cosignature(&moved, &wv),
            Err(CosignatureError::InvalidSignature {
                name: wn.clone(),
                id: wid
            })
        );
        // Another checkpoint under the same cosignature.
        let other =
            Checkpoint::new("example.com/log", 20852164, [9; 32]).expect("valid test input");
        let mut forged = SignedNote::sign(other.to_note_text().expect("valid test input"), &log())
            .expect("valid test input");
        forged
            .push(cosign(&c, &w, 100).expect("valid test input"))
            .expect("valid test input");
        assert_eq!(
            verify_cosignature(&forged, &wv),
            Err(CosignatureError::InvalidSignature {
                name: wn.clone(),
                id: wid
            })
        );
        // A note that is not a checkpoint.
        let text = NoteText::new("hello\n".into()).expect("valid test input");
        let mut plain = SignedNote::sign(text, &log()).expect("valid test input");
        plain
            .push(cosign(&c, &w, 1).expect("valid test input"))
            .expect("valid test input");
        assert_eq!(
            verify_cosignature(&plain, &wv),
            Err(CosignatureError::Checkpoint(CheckpointError::TooFewLines {
                lines: 1
            }))
        );
    }

    #[test]
    fn a_note_key_signature_is_not_a_cosignature() {
        // Same Ed25519 key as a note key: a different key ID, so the line is
        // not the witness's.
        let seed = [2; 32];
        let as_note =
            SignerKey::from_seed(name("witness.example/w1"), SignatureType::Ed25519, &seed);
        let n = SignedNote::sign(
            checkpoint().to_note_text().expect("valid test input"),
            &as_note,
        )
        .expect("valid test input");
        let wv = witness().verifier().clone();
        assert!(matches!(
            verify_cosignature(&n, &wv),
            Err(CosignatureError::Missing { .. })
        ));
    }
}
