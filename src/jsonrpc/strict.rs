//! JSON parsing that refuses an object with a repeated key, at any depth.
//!
//! serde_json keeps the last of two equal keys; other parsers keep the
//! first, or refuse. The gateway authorizes and forwards the value it
//! parsed, so that is safe here, but the signed bytes would mean something
//! else to a verifier (or backend) whose parser keeps the first: an
//! envelope whose meaning depends on the parser is refused (JSON_INVALID).
//! Keys are compared after unescaping, so `"a"` and `"\u0061"` are one key.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON value (trailing whitespace only), refusing
/// repeated object keys anywhere in it.
pub fn from_slice_unique(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = UniqueValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(UniqueValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(UniqueValue)?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom("an object repeats a key"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":[{"k":1,"k":1}]}"#,
            r#"{"params":{"arguments":{"country":"SE","country":"FR"}}}"#,
        ] {
            assert!(from_slice_unique(bad.as_bytes()).is_err(), "{bad}");
        }
        let ok = r#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"n":1.5,"s":"\u0061"}"#;
        assert_eq!(
            from_slice_unique(ok.as_bytes()).expect("valid"),
            serde_json::from_str::<Value>(ok).expect("valid")
        );
        assert!(from_slice_unique(b"{} x").is_err(), "trailing bytes");
        assert!(from_slice_unique(b"{} \n").is_ok(), "trailing whitespace");
    }
}
