//! `ca list`: what the ledger records, each with its state (valid,
//! expiring, expired, revoked) at a given time.

use time::OffsetDateTime;

use super::authority::Ca;
use super::error::{file_err, CaError};
use super::ledger::CertKind;
use super::validity::EXPIRING_WITHIN;

impl Ca {
    /// `ca list`: every certificate this CA issued and every signing key
    /// it registered (from `issued.toml`), in issue order, with its state
    /// at `now`; a key recorded again (a renewal capped it) shows its
    /// latest end, at its first place.
    pub fn list(&self, now: OffsetDateTime) -> Result<Vec<ListedCert>, CaError> {
        let path = self.index_path();
        let mut index = self.read_index()?;
        // The latest record of a key wins, kept at its first place.
        let mut latest: std::collections::HashMap<String, String> = Default::default();
        for c in index.cert.iter().filter(|c| c.kind == CertKind::Key) {
            latest.insert(c.serial.clone(), c.not_after.clone());
        }
        let mut seen = std::collections::HashSet::new();
        index
            .cert
            .retain(|c| c.kind != CertKind::Key || seen.insert(c.serial.clone()));
        for c in index.cert.iter_mut().filter(|c| c.kind == CertKind::Key) {
            if let Some(na) = latest.get(&c.serial) {
                c.not_after = na.clone();
            }
        }
        let revoked = self.revoked()?;
        let fmt = time::format_description::well_known::Rfc3339;
        index
            .cert
            .into_iter()
            .map(|c| {
                let not_after = OffsetDateTime::parse(&c.not_after, &fmt)
                    .map_err(|_| file_err(&path, format!("serial {}: bad not_after", c.serial)))?;
                let state = if revoked.serials.iter().any(|r| r.serial == c.serial) {
                    CertState::Revoked
                } else if not_after <= now {
                    CertState::Expired
                } else if not_after - now <= EXPIRING_WITHIN {
                    CertState::Expiring
                } else {
                    CertState::Valid
                };
                Ok(ListedCert {
                    serial: c.serial,
                    kind: c.kind,
                    name: c.name,
                    not_after: c.not_after,
                    state,
                })
            })
            .collect()
    }
}

/// A certificate's state in `ca list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Not revoked, and valid for more than [`EXPIRING_WITHIN`].
    Valid,
    /// Not revoked, and ends within [`EXPIRING_WITHIN`]: renew it.
    Expiring,
    /// Past its end of validity.
    Expired,
    /// In the CA's revocation list.
    Revoked,
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertState::Valid => "valid",
            CertState::Expiring => "expiring",
            CertState::Expired => "expired",
            CertState::Revoked => "revoked",
        })
    }
}

/// One row of `ca list`.
#[derive(Debug, Clone)]
pub struct ListedCert {
    /// Serial number, lowercase hex (as `ca inspect` and CRLs show it).
    pub serial: String,
    /// Server or client.
    pub kind: CertKind,
    /// The client id, or the server's names joined by commas.
    pub name: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Valid, expiring, expired or revoked.
    pub state: CertState,
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::ca::init::tests::new_ca;
    use crate::ca::issue::ClientRequest;
    use crate::identity::ClientId;

    #[test]
    fn list_shows_each_state() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&d.path().join("ca"));
        let out = d.path().join("out");
        let issue = |id: &str, days: u32| {
            ca.issue_client(&ClientRequest {
                id,
                days,
                tools: &[],
                out_dir: &out,
                gateway: None,
                force: false,
            })
            .expect("issue")
        };
        issue("long", 90);
        issue("short", 10);
        let gone = issue("gone", 90);
        ca.revoke(&gone.cert, 7).expect("revoke");
        ca.issue_server(
            &["gw.test".into()],
            90,
            &d.path().join("s.crt"),
            &d.path().join("s.key"),
            false,
        )
        .expect("server");
        let now = OffsetDateTime::now_utc();
        let states = |at| -> Vec<(String, CertKind, CertState)> {
            ca.list(at)
                .expect("list")
                .into_iter()
                .map(|c| (c.name, c.kind, c.state))
                .collect()
        };
        let s = |n: &str| n.to_string();
        use CertKind::{Client, Key, Server};
        // Each client's signing key is listed after its certificate; a
        // key's state is its own validity (the certificate's revocation
        // does not reach it: remove it from the registry).
        assert_eq!(
            states(now),
            vec![
                (s("long"), Client, CertState::Valid),
                (s("long"), Key, CertState::Valid),
                (s("short"), Client, CertState::Expiring),
                (s("short"), Key, CertState::Expiring),
                (s("gone"), Client, CertState::Revoked),
                (s("gone"), Key, CertState::Valid),
                (s("gw.test"), Server, CertState::Valid),
            ]
        );
        assert_eq!(
            states(now + Duration::days(11))[2],
            (s("short"), Client, CertState::Expired)
        );
        // A key recorded again (a renewal capped it) shows its latest end.
        let long = ClientId::parse("long").expect("id");
        let long_key = ca.list(now).expect("list")[1].serial.clone();
        let soon = (now + Duration::days(1)).unix_timestamp() * 1000;
        ca.record_key(&long, &long_key, soon).expect("record");
        let listed = states(now);
        assert_eq!(listed.len(), 7, "no second row for the key: {listed:?}");
        assert_eq!(listed[1], (s("long"), Key, CertState::Expiring));
    }
}
