//! The response signature through aws-lc-rs (already in the tree for
//! rustls): it signs in about half the time ed25519-dalek takes
//! (`cargo bench --bench signatures`), and Ed25519 is deterministic, so the
//! signatures are the same bytes.
//!
//! Verification stays with ed25519-dalek's `verify_strict`: measured in the
//! same run, aws-lc-rs with the strict checks added in front (small-order
//! `A` and `R`) verified no faster (0.94 to 1.02 of dalek's time), so the
//! security-critical check keeps the one implementation that does all of
//! them itself.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use ed25519_dalek::{Signature, SigningKey};

/// A signing key for aws-lc-rs, made once from the dalek key.
pub struct FastSigner {
    pair: Ed25519KeyPair,
}

impl FastSigner {
    /// The aws-lc-rs key pair of `key`; `None` if aws-lc-rs refuses it
    /// (it never should: the seed and public key are consistent).
    pub fn new(key: &SigningKey) -> Option<FastSigner> {
        let seed = zeroize::Zeroizing::new(key.to_bytes());
        Ed25519KeyPair::from_seed_and_public_key(seed.as_slice(), key.verifying_key().as_bytes())
            .ok()
            .map(|pair| FastSigner { pair })
    }

    /// The public key, raw 32 bytes.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
}

impl ed25519_dalek::Signer<Signature> for FastSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, ed25519_dalek::SignatureError> {
        Signature::from_slice(self.pair.sign(message).as_ref())
    }
}

impl std::fmt::Debug for FastSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastSigner(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn the_same_signature_bytes_as_ed25519_dalek_and_they_verify_strictly() {
        for i in 0..64u8 {
            let key = SigningKey::from_bytes(&[i; 32]);
            let fast = FastSigner::new(&key).expect("aws-lc-rs key");
            assert_eq!(fast.public_key(), key.verifying_key().as_bytes());
            let message = vec![i; usize::from(i) * 7];
            let sig = fast.sign(&message);
            assert_eq!(sig, key.sign(&message));
            assert!(key.verifying_key().verify_strict(&message, &sig).is_ok());
        }
    }
}
