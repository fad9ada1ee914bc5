//! RFC 3339 timestamps, as the registry and the enrolled-keys file write
//! them, read into Unix milliseconds. A leaf: the registry and the
//! enrolled-keys file both use it, and it uses neither.

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {e}"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}
