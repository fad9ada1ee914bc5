//! How long what the CA makes is valid: the defaults and limits in days,
//! the backdating that tolerates clock skew, the range check, and the
//! RFC 3339 form in which times are written.

use time::{Duration, OffsetDateTime};

use super::error::CaError;

/// Default validity of the root CA: 5 years.
pub const DEFAULT_CA_DAYS: u32 = 1825;
/// Default validity of a server certificate: 90 days.
pub const DEFAULT_SERVER_DAYS: u32 = 90;
/// Default validity of a client certificate and signing key: 90 days, so
/// credentials rotate (rule 5).
pub const DEFAULT_CLIENT_DAYS: u32 = 90;
/// Longest leaf validity accepted.
pub const MAX_LEAF_DAYS: u32 = 398;
/// Longest CA validity accepted: 20 years.
pub const MAX_CA_DAYS: u32 = 7300;
/// Default time until a CRL's next update: 30 days, longer than the
/// gateway's default expiry-warning horizon (`[expiry] warning_days`, 14),
/// so a fresh CRL is not reported as expiring; re-issue it (`ca crl`) when
/// the warning comes.
pub const DEFAULT_CRL_DAYS: u32 = 30;
/// A certificate whose end of validity is this close is listed as expiring.
pub const EXPIRING_WITHIN: Duration = Duration::days(30);
/// Certificates start 5 minutes in the past to tolerate clock skew.
pub(super) const BACKDATE: Duration = Duration::minutes(5);

/// Refuses a validity of `days` outside `1..=max`; `what` names the thing.
pub(super) fn check_days(days: u32, max: u32, what: &str) -> Result<(), CaError> {
    if days == 0 || days > max {
        return Err(CaError::Invalid(format!(
            "{what} validity must be 1..={max} days, got {days}"
        )));
    }
    Ok(())
}

/// `t` in RFC 3339, as the index and registry entries write times.
pub(super) fn rfc3339(t: OffsetDateTime) -> Result<String, CaError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CaError::Invalid(e.to_string()))
}

/// `t` without its fraction of a second, for a readable index.
pub(super) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
