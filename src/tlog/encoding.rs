//! The two text encodings every tlog format shares, in their one canonical
//! form: standard base64 (RFC 4648 section 4, padded) and unsigned decimal.
//!
//! A value has exactly one accepted spelling, so a signed text cannot be
//! re-spelled (padding dropped, trailing bits set, a leading zero added)
//! into a different byte string that still parses to the same thing.

use base64::Engine;

/// Decodes standard padded base64 and returns `None` unless `text` is the
/// exact encoding of the decoded bytes (no missing padding, no set
/// trailing bits, no whitespace).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(text).ok()?;
    (engine.encode(&bytes) == text).then_some(bytes)
}

/// Encodes bytes as standard padded base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why a decimal number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Empty, or a character other than `0`-`9` (a sign, a space).
    NotDecimal,
    /// A `0` followed by more digits.
    LeadingZero,
    /// More than `u64::MAX`.
    Overflow,
}

/// Parses ASCII decimal with no sign and no leading zero (`0` alone is
/// zero) into a `u64`.
pub fn parse_decimal(text: &str) -> Result<u64, DecimalError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotDecimal);
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(DecimalError::LeadingZero);
    }
    text.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::Overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_only_the_canonical_spelling() {
        assert_eq!(decode_base64("AAE="), Some(vec![0, 1]));
        assert_eq!(decode_base64(""), Some(vec![]));
        assert_eq!(decode_base64("AAE"), None, "padding is required");
        assert_eq!(decode_base64("AAF="), None, "trailing bits must be zero");
        assert_eq!(decode_base64("AA E="), None);
        assert_eq!(decode_base64("AAE=\n"), None);
        assert_eq!(decode_base64("AA-_"), None, "not the URL alphabet");
    }

    #[test]
    fn decimal_is_strict() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("20852163"), Ok(20852163));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_decimal("18446744073709551616"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(
            parse_decimal("99999999999999999999999"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(parse_decimal("007"), Err(DecimalError::LeadingZero));
        assert_eq!(parse_decimal("00"), Err(DecimalError::LeadingZero));
        assert_eq!(parse_decimal(""), Err(DecimalError::NotDecimal));
        assert_eq!(parse_decimal("+1"), Err(DecimalError::NotDecimal));
        assert_eq!(parse_decimal("-1"), Err(DecimalError::NotDecimal));
        assert_eq!(parse_decimal(" 1"), Err(DecimalError::NotDecimal));
        assert_eq!(parse_decimal("１"), Err(DecimalError::NotDecimal));
    }
}
