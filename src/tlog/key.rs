//! Signed-note keys: key names, key IDs, and Ed25519 verifier and signer
//! keys with their text encodings (c2sp.org/signed-note "Verifier keys";
//! the signer form is golang.org/x/mod/sumdb/note's).
//!
//!   vkey = `<name>+<hex key ID>+<base64(type || 32-byte public key)>`
//!   skey = `PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>`
//!
//! key ID = SHA-256(name || 0x0A || type || public key)[:4]. Two types are
//! accepted, both Ed25519: 0x01 (a plain note signature) and 0x04 (a
//! c2sp.org/tlog-cosignature v1 cosignature); a key of one type is never
//! used as the other. A parsed key always carries the key ID its name and
//! public key hash to.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::encoding::{decode_base64, encode_base64};

/// Longest key name accepted, in bytes (the ML-DSA cosignature message
/// carries the name with a one-byte length, so no C2SP name is longer).
pub const MAX_KEY_NAME_BYTES: usize = 255;

/// Longest key text accepted: `PRIVATE+KEY+`, a longest name, `+`, 8 hex
/// digits, `+` and the 44 base64 characters of 33 bytes.
pub const MAX_KEY_TEXT_BYTES: usize = 12 + MAX_KEY_NAME_BYTES + 1 + 8 + 1 + 44;

/// Why a key name, a key or its text encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty.
    #[error("key name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_KEY_NAME_BYTES`].
    #[error("key name is {len} bytes, over {MAX_KEY_NAME_BYTES}")]
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a Unicode space, a `+` or a control character.
    #[error("key name holds a space, '+' or control character")]
    NameCharacter,
    /// The key text is longer than any valid key text
    /// ([`MAX_KEY_TEXT_BYTES`]); refused before decoding.
    #[error("key text is {len} bytes, over {MAX_KEY_TEXT_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not `name+id+key` (or `PRIVATE+KEY+name+id+key`).
    #[error("key text is not name+keyid+base64")]
    Shape,
    /// The key ID is not 8 lowercase hex digits.
    #[error("key ID is not 8 lowercase hex digits")]
    KeyIdHex,
    /// The key part is not canonical base64.
    #[error("key material is not canonical base64")]
    KeyBase64,
    /// The signature type byte is not one this module implements.
    #[error("signature type {0:#04x} is not supported")]
    UnsupportedType(u8),
    /// The key material after the type byte is not 32 bytes.
    #[error("key material is {len} bytes, not 32")]
    KeyLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The bytes are not a valid Ed25519 public key (not a curve point, or
    /// of small order).
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The key ID written is not the one the name and key hash to.
    #[error("key ID {written} does not match the name and key (expected {computed})")]
    KeyIdMismatch {
        /// The ID in the text.
        written: KeyId,
        /// The ID of the name and key.
        computed: KeyId,
    },
}

/// A signed-note key name: non-empty, at most [`MAX_KEY_NAME_BYTES`], no
/// Unicode space, no `+`, no control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    /// Checks `name` against the signed-note rules.
    pub fn new(name: &str) -> Result<Self, KeyError> {
        if name.is_empty() {
            return Err(KeyError::EmptyName);
        }
        if name.len() > MAX_KEY_NAME_BYTES {
            return Err(KeyError::NameTooLong { len: name.len() });
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(KeyError::NameCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 4-byte key ID that, with the name, identifies a key in a signature
/// line; shown as 8 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    /// SHA-256(name || 0x0A || type || public key)[:4].
    pub fn compute(name: &KeyName, kind: SignatureType, public_key: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(name.as_str().as_bytes());
        h.update([b'\n', kind as u8]);
        h.update(public_key);
        let d = h.finalize();
        Self([d[0], d[1], d[2], d[3]])
    }

    fn parse_hex(text: &str) -> Result<Self, KeyError> {
        let lower = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if text.len() != 8 || !lower {
            return Err(KeyError::KeyIdHex);
        }
        let mut id = [0u8; 4];
        hex::decode_to_slice(text, &mut id).map_err(|_| KeyError::KeyIdHex)?;
        Ok(Self(id))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The signature types (signed-note's type bytes) implemented here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SignatureType {
    /// 0x01: Ed25519 over the note text.
    Ed25519 = 0x01,
    /// 0x04: Ed25519 timestamped cosignature v1 (c2sp.org/tlog-cosignature).
    CosignatureV1 = 0x04,
}

impl SignatureType {
    fn from_byte(b: u8) -> Result<Self, KeyError> {
        match b {
            0x01 => Ok(Self::Ed25519),
            0x04 => Ok(Self::CosignatureV1),
            other => Err(KeyError::UnsupportedType(other)),
        }
    }
}

/// A public key a note signature or a cosignature is verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: KeyName,
    id: KeyId,
    kind: SignatureType,
    key: VerifyingKey,
}

impl VerifierKey {
    /// A key of `kind` under `name`; its key ID is computed.
    pub fn new(name: KeyName, kind: SignatureType, key: VerifyingKey) -> Self {
        let id = KeyId::compute(&name, kind, key.as_bytes());
        Self {
            name,
            id,
            kind,
            key,
        }
    }

    /// Parses a vkey, `<name>+<hex key ID>+<base64(type || key)>`.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        check_text_len(vkey)?;
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyError::Shape);
        };
        let name = KeyName::new(name)?;
        let written = KeyId::parse_hex(id)?;
        let (kind, raw) = decode_typed_key(key)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        let parsed = Self::new(name, kind, key);
        if parsed.id != written {
            return Err(KeyError::KeyIdMismatch {
                written,
                computed: parsed.id,
            });
        }
        Ok(parsed)
    }

    /// The key name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signature type this key verifies.
    pub fn kind(&self) -> SignatureType {
        self.kind
    }

    /// The Ed25519 public key's bytes: what tells two witnesses apart (a
    /// cosignature/v1 does not sign its key name, so one key under two
    /// names is one witness).
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Whether `signature` is a valid Ed25519 signature of `message`
    /// (RFC 8032 with ed25519-dalek's strict checks: canonical S, no
    /// small-order components).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = vec![self.kind as u8];
        typed.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, self.id, encode_base64(&typed))
    }
}

/// A private key that signs notes (type 0x01) or cosignatures (0x04).
/// Its `Debug` shows the name and key ID only; the seed is zeroized on
/// drop.
#[derive(Clone)]
pub struct SignerKey {
    verifier: VerifierKey,
    key: SigningKey,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.verifier.name)
            .field("id", &self.verifier.id)
            .field("kind", &self.verifier.kind)
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    /// A signer of `kind` under `name` from a 32-byte Ed25519 seed.
    pub fn from_seed(name: KeyName, kind: SignatureType, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let verifier = VerifierKey::new(name, kind, key.verifying_key());
        Self { verifier, key }
    }

    /// A fresh random signer of `kind` under `name`.
    pub fn generate(name: KeyName, kind: SignatureType) -> Self {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let verifier = VerifierKey::new(name, kind, key.verifying_key());
        Self { verifier, key }
    }

    /// Parses an skey, `PRIVATE+KEY+<name>+<hex key ID>+<base64(type ||
    /// seed)>`; the key ID must be the one of the derived public key.
    pub fn parse(skey: &str) -> Result<Self, KeyError> {
        check_text_len(skey)?;
        let rest = skey.strip_prefix("PRIVATE+KEY+").ok_or(KeyError::Shape)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyError::Shape);
        };
        let name = KeyName::new(name)?;
        let written = KeyId::parse_hex(id)?;
        let (kind, seed) = decode_typed_key(key)?;
        let parsed = Self::from_seed(name, kind, &seed);
        if parsed.verifier.id != written {
            return Err(KeyError::KeyIdMismatch {
                written,
                computed: parsed.verifier.id,
            });
        }
        Ok(parsed)
    }

    /// The skey text; it holds the seed, so it is zeroized when dropped.
    pub fn to_skey(&self) -> Zeroizing<String> {
        let mut typed = Zeroizing::new(vec![self.verifier.kind as u8]);
        typed.extend_from_slice(self.key.as_bytes());
        let v = &self.verifier;
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{}+{}",
            v.name,
            v.id,
            encode_base64(&typed)
        ))
    }

    /// The matching public key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// An Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Decodes `base64(type || 32 bytes)`.
/// Refuses a key text no valid key could have, before anything is decoded.
fn check_text_len(text: &str) -> Result<(), KeyError> {
    if text.len() > MAX_KEY_TEXT_BYTES {
        return Err(KeyError::TooLong { len: text.len() });
    }
    Ok(())
}

fn decode_typed_key(text: &str) -> Result<(SignatureType, [u8; 32]), KeyError> {
    let raw = Zeroizing::new(decode_base64(text).ok_or(KeyError::KeyBase64)?);
    let (&kind, key) = raw.split_first().ok_or(KeyError::KeyLength { len: 0 })?;
    let kind = SignatureType::from_byte(kind)?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| KeyError::KeyLength { len: key.len() })?;
    Ok((kind, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

    #[test]
    fn keys_round_trip_and_match() {
        let v = VerifierKey::parse(PETER_VKEY).expect("valid test input");
        assert_eq!(v.to_string(), PETER_VKEY);
        assert_eq!(v.id(), KeyId([0xc7, 0x4f, 0x20, 0xa3]));
        let s = SignerKey::parse(PETER_SKEY).expect("valid test input");
        assert_eq!(s.verifier(), &v);
        assert_eq!(s.to_skey().as_str(), PETER_SKEY);
        assert!(!format!("{s:?}").contains("AYEK"));
    }

    #[test]
    fn generated_keys_round_trip() {
        let name = KeyName::new("witness.example/w1").expect("valid test input");
        let s = SignerKey::generate(name, SignatureType::CosignatureV1);
        assert_eq!(
            SignerKey::parse(&s.to_skey())
                .expect("valid test input")
                .verifier(),
            s.verifier()
        );
        assert_eq!(
            &VerifierKey::parse(&s.verifier().to_string()).expect("valid test input"),
            s.verifier()
        );
    }

    #[test]
    fn names_are_refused_exactly() {
        assert_eq!(KeyName::new(""), Err(KeyError::EmptyName));
        assert_eq!(
            KeyName::new(&"a".repeat(256)),
            Err(KeyError::NameTooLong { len: 256 })
        );
        assert!(KeyName::new(&"a".repeat(255)).is_ok());
        for bad in [
            "a b",
            "a+b",
            "a\tb",
            "a\u{a0}b",
            "a\u{3000}b",
            "a\u{7f}b",
            "a\nb",
        ] {
            assert_eq!(KeyName::new(bad), Err(KeyError::NameCharacter), "{bad:?}");
        }
        assert!(KeyName::new("example.com/log-42").is_ok());
    }

    #[test]
    fn vkeys_are_refused_exactly() {
        use KeyError::*;
        let cases: &[(&str, KeyError)] = &[
            ("PeterNeumann", Shape),
            ("PeterNeumann+c74f20a3", Shape),
            (
                "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                EmptyName,
            ),
            (
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                NameCharacter,
            ),
            (
                "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                KeyIdHex,
            ),
            (
                "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                KeyIdHex,
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
                KeyBase64,
            ),
            ("PeterNeumann+c74f20a3+", KeyLength { len: 0 }),
            // Go's own vectors: a wrong-length key (whose base64 also has
            // set trailing bits, refused first here) and an unknown type,
            // each with the key ID adjusted to match.
            (
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                KeyBase64,
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
                KeyLength { len: 33 },
            ),
            (
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                UnsupportedType(0x65),
            ),
            (
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                KeyIdMismatch {
                    written: KeyId([0xc7, 0x4f, 0x20, 0xa4]),
                    computed: KeyId([0xc7, 0x4f, 0x20, 0xa3]),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(VerifierKey::parse(text).as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn oversized_key_texts_are_refused_before_decoding() {
        // Before: the base64 was decoded whole (here 750,000 bytes) and then
        // refused as KeyLength.
        let huge = format!("a+00000000+{}", "A".repeat(1_000_000));
        let len = huge.len();
        assert_eq!(VerifierKey::parse(&huge), Err(KeyError::TooLong { len }));
        let skey = format!("PRIVATE+KEY+{huge}");
        let len = skey.len();
        assert_eq!(
            SignerKey::parse(&skey).map(|_| ()),
            Err(KeyError::TooLong { len })
        );
        // The longest valid texts (a 255-byte name) still parse.
        let name = KeyName::new(&"n".repeat(MAX_KEY_NAME_BYTES)).expect("valid test input");
        let s = SignerKey::from_seed(name, SignatureType::Ed25519, &[3; 32]);
        assert!(SignerKey::parse(&s.to_skey()).is_ok());
        assert!(VerifierKey::parse(&s.verifier().to_string()).is_ok());
    }

    #[test]
    fn a_small_order_public_key_is_refused() {
        // The identity point: every signature "verifies" under weak checks.
        let mut typed = vec![0x01];
        let mut identity = [0u8; 32];
        identity[0] = 1;
        typed.extend_from_slice(&identity);
        let name = KeyName::new("weak").expect("valid test input");
        let id = KeyId::compute(&name, SignatureType::Ed25519, &identity);
        let vkey = format!("weak+{id}+{}", encode_base64(&typed));
        assert_eq!(VerifierKey::parse(&vkey), Err(KeyError::InvalidPublicKey));
    }

    #[test]
    fn skeys_are_refused_exactly() {
        use KeyError::*;
        assert_eq!(SignerKey::parse(PETER_VKEY).map(|_| ()), Err(Shape));
        assert_eq!(
            SignerKey::parse("PRIVATE+KEY+PeterNeumann").map(|_| ()),
            Err(Shape)
        );
        assert_eq!(
            SignerKey::parse(
                "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            )
            .map(|_| ()),
            Err(KeyIdMismatch {
                written: KeyId([0xc7, 0x4f, 0x20, 0xa4]),
                computed: KeyId([0xc7, 0x4f, 0x20, 0xa3])
            })
        );
        assert_eq!(
            SignerKey::parse(
                "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            )
            .map(|_| ()),
            Err(UnsupportedType(0x02))
        );
    }

    #[test]
    fn go_manglings_of_the_keys_are_all_refused() {
        // sumdb/note's TestNewVerifier / TestNewSigner: every proper
        // substring and every single-byte increment is refused.
        for full in [PETER_VKEY, PETER_SKEY] {
            let parse = |t: &str| {
                if full.starts_with("PRIVATE") {
                    SignerKey::parse(t).is_ok()
                } else {
                    VerifierKey::parse(t).is_ok()
                }
            };
            let b = full.as_bytes();
            for i in 0..=b.len() {
                for j in i + 1..=b.len() {
                    if (i, j) != (0, b.len()) {
                        let s = String::from_utf8_lossy(&b[i..j]);
                        assert!(!parse(&s), "{s}");
                    }
                }
            }
            for i in 0..b.len() {
                let mut m = b.to_vec();
                m[i] = m[i].wrapping_add(1);
                assert!(!parse(&String::from_utf8_lossy(&m)), "increment at {i}");
            }
        }
    }
}
