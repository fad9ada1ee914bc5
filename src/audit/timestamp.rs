//! How the audit trail writes time: Unix milliseconds and RFC 3339 UTC with
//! millisecond precision, the one format of every `ts` in the trail.

use std::time::SystemTime;

/// `t` in Unix milliseconds (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, as RFC 3339 UTC with millisecond precision.
pub(crate) fn now_rfc3339() -> String {
    rfc3339_of(time::OffsetDateTime::now_utc())
}

/// `ms` (Unix milliseconds) as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    rfc3339_of(t)
}

/// `t` as RFC 3339 UTC with millisecond precision.
pub(crate) fn rfc3339_of(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}
