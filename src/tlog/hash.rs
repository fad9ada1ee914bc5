//! RFC 6962 / RFC 9162 §2.1.1 hashing with SHA-256: the leaf hash, the
//! interior node hash and the empty-tree root, and the [`Hash`] newtype
//! every other part of the log speaks in.
//!
//! The 0x00 / 0x01 prefixes keep a leaf from ever being mistaken for a node
//! (second-preimage resistance of the tree), so nothing outside this file
//! hashes tree material itself.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Size of every hash in the tree, in bytes (SHA-256).
pub const HASH_SIZE: usize = 32;

/// Longest base64 text [`Hash::from_base64`] looks at: a hash is exactly 44
/// characters (32 bytes, padded), anything longer is refused unread.
const BASE64_LEN: usize = 44;

/// A SHA-256 value in the tree: a leaf hash, a node hash or a root.
///
/// `Display` is standard padded base64 (as in C2SP checkpoints); `{:x}` and
/// [`Hash::to_hex`] give lowercase hex; `Debug` shows hex too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

/// Why bytes or text are not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The value does not have exactly 32 bytes (raw, or after decoding).
    #[error("a hash has {HASH_SIZE} bytes, this value has {len}")]
    WrongLength {
        /// Length found, in bytes (or characters for over-long text).
        len: usize,
    },
    /// The text is not standard padded base64.
    #[error("a hash in base64 is not valid standard padded base64")]
    Base64,
    /// The text is not lowercase or uppercase hex.
    #[error("a hash in hex is not valid hex")]
    Hex,
}

impl Hash {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// A hash from exactly 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Hash, HashError> {
        let array: [u8; HASH_SIZE] = bytes
            .try_into()
            .map_err(|_| HashError::WrongLength { len: bytes.len() })?;
        Ok(Hash(array))
    }

    /// Standard padded base64 (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses standard padded base64 of exactly 32 bytes (strict: no
    /// whitespace, no missing padding, no URL alphabet).
    pub fn from_base64(text: &str) -> Result<Hash, HashError> {
        if text.len() > BASE64_LEN {
            return Err(HashError::WrongLength { len: text.len() });
        }
        let bytes = STANDARD.decode(text).map_err(|_| HashError::Base64)?;
        Hash::from_slice(&bytes)
    }

    /// Lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses hex of exactly 32 bytes.
    pub fn from_hex(text: &str) -> Result<Hash, HashError> {
        if text.len() != 2 * HASH_SIZE {
            return Err(HashError::WrongLength {
                len: text.len() / 2,
            });
        }
        let mut out = [0u8; HASH_SIZE];
        hex::decode_to_slice(text, &mut out).map_err(|_| HashError::Hex)?;
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::LowerHex for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// The leaf hash of RFC 9162 §2.1.1: SHA-256(0x00 || leaf bytes).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    Hash(h.finalize().into())
}

/// The interior node hash of RFC 9162 §2.1.1: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // RFC 6962 reference values (transparency-dev/merkle rfc6962_test.go).
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            leaf_hash(b"L123456").to_hex(),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
        let l = leaf_hash(b"");
        let r = leaf_hash(&[0x00]);
        assert_eq!(
            node_hash(&l, &r).to_hex(),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }

    #[test]
    fn text_forms_round_trip() {
        let h = leaf_hash(b"");
        assert_eq!(
            h.to_string(),
            "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
        );
        assert_eq!(format!("{h:x}"), h.to_hex());
        assert_eq!(Hash::from_base64(&h.to_string()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_slice(h.as_bytes()), Ok(h));
        assert!(format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn garbage_is_refused_with_the_exact_error() {
        // Truncated, garbage, oversized, non-canonical.
        assert_eq!(
            Hash::from_slice(&[0u8; 31]),
            Err(HashError::WrongLength { len: 31 })
        );
        assert_eq!(
            Hash::from_slice(&[0u8; 33]),
            Err(HashError::WrongLength { len: 33 })
        );
        assert_eq!(
            Hash::from_base64("V3JvbmdMZWFm"),
            Err(HashError::WrongLength { len: 9 })
        );
        assert_eq!(Hash::from_base64("!!!!"), Err(HashError::Base64));
        let unpadded = "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0";
        assert_eq!(Hash::from_base64(unpadded), Err(HashError::Base64));
        let url = "bjQLnP-zepicpUTmu3gKLHiQHT-zNzh2hRGjBhevoB0=";
        assert_eq!(Hash::from_base64(url), Err(HashError::Base64));
        let long = "A".repeat(10_000);
        assert_eq!(
            Hash::from_base64(&long),
            Err(HashError::WrongLength { len: 10_000 })
        );
        assert_eq!(Hash::from_hex("00"), Err(HashError::WrongLength { len: 1 }));
        assert_eq!(Hash::from_hex(&"zz".repeat(32)), Err(HashError::Hex));
        assert_eq!(
            Hash::from_base64(""),
            Err(HashError::WrongLength { len: 0 })
        );
    }
}
