//! CRLs against their next update: the grace a CRL past it is still used
//! for (with a warning on every load), whether the verifier must enforce
//! CRL expiry, the deadline [`super::ServerTls`] applies at run time, and
//! the serials the CRLs revoke.

use std::path::Path;

use rustls::pki_types::{CertificateRevocationListDer, UnixTime};

use super::error::TlsError;
use super::pem::{load_crls, load_pem};

/// How long after a CRL's next update the gateway keeps using it, with a
/// warning on every load, when the configuration does not say: one day.
pub const DEFAULT_CRL_GRACE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Where one CRL stands against its next update at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrlFreshness {
    /// Before its next update.
    Current,
    /// It has no next update: treated as never expiring, but warned about.
    NoNextUpdate,
    /// Past its next update by this many seconds, within the grace: used,
    /// with a warning.
    InGrace(u64),
    /// Past its next update by this many seconds, beyond the grace: the
    /// verifier enforces CRL expiry, so clients of its CA are refused.
    Stale(u64),
}

/// The policy for one CRL: `next_update` and `now` in Unix seconds.
fn crl_freshness(next_update: Option<i64>, now: i64, grace_secs: u64) -> CrlFreshness {
    let Some(next) = next_update else {
        return CrlFreshness::NoNextUpdate;
    };
    if now <= next {
        return CrlFreshness::Current;
    }
    let overdue = now.abs_diff(next);
    if overdue <= grace_secs {
        CrlFreshness::InGrace(overdue)
    } else {
        CrlFreshness::Stale(overdue)
    }
}

/// A duration in words for a log line: `2d 3h`, `5h 10m`, `12m 3s`, `9s`.
fn age_in_words(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// CRLs as loaded, with what their next updates mean now.
pub(super) struct CheckedCrls {
    pub(super) crls: Vec<CertificateRevocationListDer<'static>>,
    /// One is past its next update by more than the grace: the verifier
    /// must enforce CRL expiry.
    pub(super) enforce: bool,
    /// Unix seconds: the earliest next update plus the grace.
    pub(super) deadline: Option<i64>,
}

/// Reads the CRL files and applies the next-update policy at `now` (Unix
/// seconds): logs a warning for each CRL without a next update or past it,
/// and says whether any is past it by more than `grace`, in which case
/// the verifier must enforce CRL expiry, and when the first will be.
pub(super) fn load_crls_checked(
    paths: &[impl AsRef<Path>],
    grace: std::time::Duration,
    now: i64,
) -> Result<CheckedCrls, TlsError> {
    use x509_parser::prelude::FromDer;
    let mut all = Vec::new();
    let mut enforce = false;
    let mut deadline: Option<i64> = None;
    for path in paths {
        let path = path.as_ref();
        let file = path.display().to_string();
        let crls: Vec<CertificateRevocationListDer<'static>> = load_pem(path, "CRL", "valid CRL")?;
        for crl in &crls {
            let (_, parsed) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(crl)
                    .map_err(|_| TlsError::Config(format!("{file}: a CRL could not be parsed")))?;
            let next = parsed.next_update().map(|t| t.timestamp());
            if let Some(next) = next {
                let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
                let end = next.saturating_add(grace);
                deadline = Some(deadline.map_or(end, |d| d.min(end)));
            }
            match crl_freshness(next, now, grace.as_secs()) {
                CrlFreshness::Current => {}
                CrlFreshness::NoNextUpdate => tracing::warn!(
                    crl.path = %file,
                    "CRL has no next update: treated as never expiring; \
                     re-issue it with `sealgate ca crl`"
                ),
                CrlFreshness::InGrace(overdue) => tracing::warn!(
                    crl.path = %file,
                    crl.overdue_secs = overdue,
                    crl.grace_secs = grace.as_secs(),
                    "CRL is past its next update by {}: still used within the grace; \
                     re-issue it with `sealgate ca crl` and reload",
                    age_in_words(overdue)
                ),
                CrlFreshness::Stale(overdue) => {
                    enforce = true;
                    tracing::error!(
                        crl.path = %file,
                        crl.overdue_secs = overdue,
                        crl.grace_secs = grace.as_secs(),
                        "CRL is past its next update by {}, beyond the grace: every client \
                         certificate of its CA is refused until it is re-issued \
                         (`sealgate ca crl`) and the gateway reloads",
                        age_in_words(overdue)
                    );
                }
            }
        }
        all.extend(crls);
    }
    Ok(CheckedCrls {
        crls: all,
        enforce,
        deadline,
    })
}

/// [`load_crls_checked`] at the current time.
pub(super) fn load_crls_now(
    crls: &[impl AsRef<Path>],
    crl_grace: std::time::Duration,
) -> Result<CheckedCrls, TlsError> {
    let now = UnixTime::now().as_secs();
    load_crls_checked(crls, crl_grace, i64::try_from(now).unwrap_or(i64::MAX))
}

/// The serial numbers (lowercase hex, as in [`crate::identity::ClientIdentity`])
/// revoked by the given CRL files.
pub fn revoked_serials(
    paths: &[impl AsRef<Path>],
) -> Result<std::collections::HashSet<String>, TlsError> {
    use x509_parser::prelude::FromDer;
    let mut out = std::collections::HashSet::new();
    for crl in load_crls(paths)? {
        let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl)
            .map_err(|_| TlsError::Config("a CRL could not be parsed".into()))?;
        for revoked in parsed.iter_revoked_certificates() {
            out.insert(hex::encode(revoked.raw_serial()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{age_in_words, crl_freshness, CrlFreshness};

    #[test]
    fn crl_freshness_follows_next_update_and_grace() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert_eq!(crl_freshness(None, now, day), CrlFreshness::NoNextUpdate);
        assert_eq!(
            crl_freshness(Some(now + 1), now, day),
            CrlFreshness::Current
        );
        assert_eq!(crl_freshness(Some(now), now, day), CrlFreshness::Current);
        assert_eq!(
            crl_freshness(Some(now - 3_600), now, day),
            CrlFreshness::InGrace(3_600)
        );
        let edge = i64::try_from(day).expect("fits");
        assert_eq!(
            crl_freshness(Some(now - edge), now, day),
            CrlFreshness::InGrace(day)
        );
        assert_eq!(
            crl_freshness(Some(now - edge - 1), now, day),
            CrlFreshness::Stale(day + 1)
        );
        assert_eq!(crl_freshness(Some(now - 1), now, 0), CrlFreshness::Stale(1));
    }

    /// A CRL file of a fresh CA whose next update is `next_update`.
    fn crl_file(dir: &std::path::Path, next_update: time::OffsetDateTime) -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = ca.self_signed(&key).expect("CA");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert.pem(), key).expect("issuer");
        let crl = rcgen::CertificateRevocationListParams {
            this_update: next_update - time::Duration::days(7),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("CRL");
        let path = dir.join("crl.pem");
        std::fs::write(&path, crl.pem().expect("pem")).expect("write");
        path
    }

    #[test]
    fn a_crl_past_its_grace_turns_on_expiry_enforcement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let next = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let path = crl_file(dir.path(), next);
        let day = std::time::Duration::from_secs(86_400);
        let at = |secs: i64| {
            let checked =
                super::load_crls_checked(&[&path], day, 1_800_000_000 + secs).expect("loads");
            assert_eq!(checked.crls.len(), 1);
            assert_eq!(checked.deadline, Some(1_800_000_000 + 86_400));
            checked.enforce
        };
        assert!(!at(-60), "before the next update");
        assert!(!at(3_600), "within the grace");
        assert!(!at(86_400), "at the end of the grace");
        assert!(at(86_401), "past the grace");
        let checked = super::load_crls_checked(&[&path], std::time::Duration::ZERO, 1_800_000_001)
            .expect("loads");
        assert!(checked.enforce, "no grace");
    }

    #[test]
    fn ages_read_as_words() {
        assert_eq!(age_in_words(9), "9s");
        assert_eq!(age_in_words(12 * 60 + 3), "12m 3s");
        assert_eq!(age_in_words(5 * 3_600 + 10 * 60 + 7), "5h 10m");
        assert_eq!(age_in_words(2 * 86_400 + 3 * 3_600 + 5), "2d 3h");
    }
}
