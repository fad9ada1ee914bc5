//! The v3 parts of verifying a trail (docs/AUDIT.md, "Verifying"): a v3
//! checkpoint's C2SP note (its one form, its tree size, its origin, the
//! audit key's note signature) and its v3 signature over the Merkle head
//! and the origin. [`super::verify::Verifier`] calls it for a checkpoint
//! line with a `note` member and compares the head with the tree it
//! computed itself.
//!
//! Pure, and it never trusts the note's text before the audit key's
//! signature on it verified: the root and the origin it returns come from a
//! note that did.

use ed25519_dalek::{Signature, VerifyingKey};

use super::chain::{checkpoint_signed_bytes_v3, CheckpointV2, CheckpointV3};
use crate::tlog::{Checkpoint, KeyName, NoteError, SignatureType, SignedNote, VerifierKey};

/// Checks the note `note` of the v3 checkpoint `c` (its v2 fields) and
/// the line's signature `sig` with the audit key: the note is one signed
/// note in the form the gateway writes (exactly one signature line, by the
/// audit key under the checkpoint's origin), its checkpoint has no
/// extension lines and the tree size is the line's `seq`, and the v3
/// signature covers the v2 fields, the note's root and its origin.
/// Returns the note's checkpoint (origin, size, root).
pub(super) fn check_v3(
    key: &VerifyingKey,
    c: &CheckpointV2<'_>,
    note: &str,
    sig: &Signature,
) -> Result<Checkpoint, String> {
    let signed = SignedNote::parse(note.as_bytes())
        .map_err(|e| format!("the checkpoint's note is not a signed note ({e})"))?;
    if signed.to_bytes() != note.as_bytes() {
        return Err("the checkpoint's note is not in the one form the gateway writes".into());
    }
    let checkpoint = Checkpoint::parse(signed.text().as_str())
        .map_err(|e| format!("the checkpoint's note is not a C2SP checkpoint ({e})"))?;
    if !checkpoint.extensions().is_empty() {
        return Err("the checkpoint's note has extension lines: the gateway writes none".into());
    }
    if checkpoint.size() != c.seq {
        return Err(format!(
            "the checkpoint's note is for tree size {}, but the checkpoint is seq {}: its note is another checkpoint's",
            checkpoint.size(),
            c.seq
        ));
    }
    if signed.signatures().len() != 1 {
        return Err(format!(
            "the checkpoint's note has {} signature lines: the gateway writes exactly one, the audit key's",
            signed.signatures().len()
        ));
    }
    let origin = checkpoint.origin();
    let name = KeyName::new(origin)
        .map_err(|e| format!("the checkpoint's origin {origin:?} is not a note key name ({e})"))?;
    let audit = VerifierKey::new(name, SignatureType::Ed25519, *key);
    match signed.verify(std::slice::from_ref(&audit)) {
        Ok(_) => {}
        Err(NoteError::NoKnownSignature) => {
            let line = &signed.signatures()[0];
            let by_audit_key = VerifierKey::new(line.name.clone(), SignatureType::Ed25519, *key);
            return Err(if by_audit_key.id() == line.id {
                format!(
                    "the checkpoint's note is signed by the audit key under the name {:?}, not under its origin {origin:?}",
                    line.name.as_str()
                )
            } else {
                format!(
                    "the checkpoint's note is not signed by the audit key (its signature is by {}+{})",
                    line.name, line.id
                )
            });
        }
        Err(_) => return Err("the checkpoint's note signature does not verify".into()),
    }
    let root = *checkpoint.root_hash();
    let v3 = CheckpointV3 {
        v2: *c,
        root: &root,
        origin,
    };
    key.verify_strict(&checkpoint_signed_bytes_v3(&v3), sig)
        .map_err(|_| "checkpoint signature does not verify")?;
    Ok(checkpoint)
}

#[cfg(test)]
pub(crate) mod test_trail;
#[cfg(test)]
mod tests;
