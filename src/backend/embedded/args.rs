//! Argument validation: a tool's `arguments` checked the way the real server's
//! Zod schemas check them, with the same error messages (types, integer-only
//! numbers, ranges, lengths counted in UTF-16 units, patterns, enums). Keys not
//! in a schema are ignored, as the real server's (non-strict) Zod objects do.
//! This module must never accept a value the advertised `inputSchema` rejects.

use serde_json::{Map, Value};

use super::call_result::CallError;
use super::page::Page;

/// Largest integer Zod's `.int()` accepts (JavaScript's `Number.MAX_SAFE_INTEGER`).
pub(super) const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// The JSON type name Zod reports in "expected X, received Y".
fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Zod's error for a value of the wrong JSON type.
fn wrong_type(key: &str, expected: &str, received: &Value) -> CallError {
    CallError::invalid(
        key,
        format!(
            "Invalid input: expected {expected}, received {}",
            json_type_name(received)
        ),
    )
}

/// JavaScript's `\s` (WhiteSpace and LineTerminator), as used by the real keyword regex.
pub(super) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{000B}' | '\u{000C}' | '\r' | ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// `^\d{4}-\d{2}-\d{2}$` (JavaScript `\d` is ASCII only).
pub(super) fn is_date_string(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// An inclusive `YYYY-MM-DD` range from `dateFrom` and `dateTo`, either end open.
#[derive(Debug, Clone, Copy)]
pub(super) struct DateRange<'a> {
    /// First day kept, if any.
    from: Option<&'a str>,
    /// Last day kept, if any.
    to: Option<&'a str>,
}

impl DateRange<'_> {
    /// Whether `date` lies within the range (string order is date order for this format).
    pub(super) fn contains(&self, date: &str) -> bool {
        self.from.is_none_or(|f| date >= f) && self.to.is_none_or(|t| date <= t)
    }
}

/// Validated view of a tool's `arguments`. Keys not in the schema are ignored,
/// as the real server's (non-strict) Zod objects do.
pub(super) struct Args<'a>(&'a Map<String, Value>);

impl<'a> Args<'a> {
    /// Wraps a tool call's `arguments` object.
    pub(super) fn new(arguments: &'a Map<String, Value>) -> Self {
        Args(arguments)
    }

    /// Optional string with length bounds counted in UTF-16 units (as JavaScript does).
    pub(super) fn string(
        &self,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<&'a str>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let len = s.encode_utf16().count();
                if len < min {
                    Err(CallError::invalid(
                        key,
                        format!("Too small: expected string to have >={min} characters"),
                    ))
                } else if len > max {
                    Err(CallError::invalid(
                        key,
                        format!("Too big: expected string to have <={max} characters"),
                    ))
                } else {
                    Ok(Some(s.as_str()))
                }
            }
            Some(other) => Err(wrong_type(key, "string", other)),
        }
    }

    /// Required string with length bounds, as [`Args::string`].
    pub(super) fn required_string(
        &self,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<&'a str, CallError> {
        self.string(key, min, max)?.ok_or_else(|| {
            CallError::invalid(key, "Invalid input: expected string, received undefined")
        })
    }

    /// Optional ISO 3166-1 alpha-2 code: length 2, then `^[A-Z]{2}$`.
    pub(super) fn country(&self, key: &str) -> Result<Option<&'a str>, CallError> {
        match self.string(key, 2, 2)? {
            None => Ok(None),
            Some(s) if s.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Some(s)),
            Some(_) => Err(CallError::invalid(
                key,
                "Country code must be 2 uppercase letters",
            )),
        }
    }

    /// Optional `YYYY-MM-DD` date.
    pub(super) fn date(&self, key: &str) -> Result<Option<&'a str>, CallError> {
        match self.string(key, 0, usize::MAX)? {
            None => Ok(None),
            Some(s) if is_date_string(s) => Ok(Some(s)),
            Some(_) => Err(CallError::invalid(key, "Date must be in YYYY-MM-DD format")),
        }
    }

    /// Optional `dateFrom` and `dateTo` (checked in that order), as one range.
    pub(super) fn date_range(&self) -> Result<DateRange<'a>, CallError> {
        let from = self.date("dateFrom")?;
        let to = self.date("dateTo")?;
        Ok(DateRange { from, to })
    }

    /// Optional string that must be one of `allowed` (case-sensitive).
    pub(super) fn one_of(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => match value
                .as_str()
                .and_then(|s| allowed.iter().find(|a| **a == s))
            {
                Some(found) => Ok(Some(*found)),
                None => Err(CallError::invalid(
                    key,
                    format!(
                        "Invalid option: expected one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("\"{a}\""))
                            .collect::<Vec<_>>()
                            .join("|")
                    ),
                )),
            },
        }
    }

    /// Optional boolean.
    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "boolean", other)),
        }
    }

    /// Optional integer (Zod `.int()`: a JSON number with no fractional part,
    /// within JavaScript's safe-integer range) in `min..=max`.
    pub(super) fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, CallError> {
        let number = match self.0.get(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n,
            Some(other) => return Err(wrong_type(key, "number", other)),
        };
        let not_int = || CallError::invalid(key, "Invalid input: expected int, received number");
        let too_big = || {
            CallError::invalid(
                key,
                format!("Too big: expected int to be <={MAX_SAFE_INTEGER}"),
            )
        };
        let too_small = || {
            CallError::invalid(
                key,
                format!("Too small: expected int to be >=-{MAX_SAFE_INTEGER}"),
            )
        };
        let value = if let Some(i) = number.as_i64() {
            i
        } else if number.is_u64() {
            return Err(too_big());
        } else {
            let f = number.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() || f.fract() != 0.0 {
                return Err(not_int());
            }
            if f > MAX_SAFE_INTEGER as f64 {
                return Err(too_big());
            }
            if f < -(MAX_SAFE_INTEGER as f64) {
                return Err(too_small());
            }
            // |f| <= 2^53 - 1 here, so the cast is exact.
            f as i64
        };
        if value > MAX_SAFE_INTEGER {
            return Err(too_big());
        }
        if value < -MAX_SAFE_INTEGER {
            return Err(too_small());
        }
        if value < min {
            return Err(CallError::invalid(
                key,
                format!("Too small: expected number to be >={min}"),
            ));
        }
        if value > max {
            return Err(CallError::invalid(
                key,
                format!("Too big: expected number to be <={max}"),
            ));
        }
        Ok(Some(value))
    }

    /// `limit` (1..=100, default `default_limit`) and `offset` (>= 0, default 0).
    pub(super) fn page(&self, default_limit: i64) -> Result<Page, CallError> {
        let limit = self.integer("limit", 1, 100)?.unwrap_or(default_limit);
        let offset = self.integer("offset", 0, MAX_SAFE_INTEGER)?.unwrap_or(0);
        Ok(Page::new(limit, offset))
    }
}
