//! The transparency log's text formats, from the C2SP specifications:
//! signed notes (c2sp.org/signed-note) with their Ed25519 keys, checkpoints
//! (c2sp.org/tlog-checkpoint) and Ed25519 v1 cosignatures
//! (c2sp.org/tlog-cosignature). This module owns their byte-exact parsing,
//! formatting, signing and verification, strictly (one spelling per value,
//! bounded sizes, typed errors). It must never import anything else from
//! the crate, never do I/O, and never hand out a note's text as trusted
//! except through a verified type.

mod checkpoint;
mod cosignature;
mod encoding;
mod key;
mod note;

pub use checkpoint::{Checkpoint, CheckpointError, MAX_CHECKPOINT_BYTES};
pub use cosignature::{
    cosign, cosigned_message, verify_cosignature, CosignatureError, MAX_TIMESTAMP,
};
pub use key::{
    KeyError, KeyId, KeyName, SignatureType, SignerKey, VerifierKey, MAX_KEY_NAME_BYTES,
};
pub use note::{
    NoteError, NoteText, SignatureLine, SignedNote, VerifiedNote, MAX_NOTE_BYTES, MAX_SIGNATURES,
};
