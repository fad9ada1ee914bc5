//! The enrolled-keys file: the signing keys the enrollment service
//! registered (`[registry] enrolled_keys`), merged into the registry at load.
//!
//! The operator's registry file says *who* a client is and what it may do;
//! this file, written only by the enrollment service, says which keys it
//! enrolled or renewed, and until when a key it replaced keeps working. A
//! key here is bound only to a client the registry file lists: an
//! enrollment never grants anything by itself.
//!
//! ```toml
//! [[key]]
//! client = "alice"
//! id = "ed25519:…"
//! public_key = "<base64 of the raw 32 bytes>"
//! not_before = "2026-11-27T10:00:00Z"
//! not_after = "2026-12-27T10:00:00Z"
//!
//! [[retire]]               # a renewal caps the key it replaced
//! client = "alice"
//! key_id = "ed25519:…"
//! not_after = "2026-11-27T11:00:00Z"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::timestamp::parse_rfc3339_ms;

/// One key the enrollment service registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolledKey {
    /// The client it is bound to.
    pub client: String,
    /// Its key id (unique across the whole registry).
    pub id: String,
    /// Standard base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// RFC 3339: first instant it may sign.
    pub not_before: String,
    /// RFC 3339: last instant it may sign. Always set: no enrolled key
    /// lives forever.
    pub not_after: String,
}

/// A cap on a key's validity: after a renewal, the key it replaced keeps
/// working only until `not_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retirement {
    /// The client the key belongs to.
    pub client: String,
    /// The retired key's id (in the registry file or in this one).
    pub key_id: String,
    /// RFC 3339: the key's new last instant, if earlier than its own.
    pub not_after: String,
}

/// The whole file. It is written only by the enrollment service
/// (`crate::enroll::service::store_enrolled`), read here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolledKeys {
    /// Keys, in the order they were enrolled.
    #[serde(default, rename = "key")]
    pub keys: Vec<EnrolledKey>,
    /// Caps on replaced keys.
    #[serde(default, rename = "retire")]
    pub retired: Vec<Retirement>,
}

impl EnrolledKeys {
    /// Reads the file; a file that does not exist yet is empty.
    pub fn load(path: &Path) -> Result<EnrolledKeys, String> {
        Ok(EnrolledKeys::read(path)?.unwrap_or_default())
    }

    /// Reads the file; `None` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<EnrolledKeys>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Drops what can no longer matter at `now_ms`, so the file does not
    /// grow with every renewal: keys whose end (their own `not_after`, or
    /// their cap if earlier) passed more than `keep_ms` ago.
    ///
    /// A cap must outlive the key it caps, or the next registry load gives
    /// the key back its own, later `not_after`. So a `[[retire]]` entry is
    /// never dropped for its own date: one capping a key of this file goes
    /// when that key goes (nothing is left to cap); one capping any other
    /// key (an operator-written key of the registry file, whose end this
    /// file cannot know and an operator may later extend) is permanent.
    /// Several caps on one key are collapsed into the earliest, so the
    /// permanent ones number at most one per replaced registry-file key.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        use std::collections::{HashMap, HashSet};
        // A key ends at its own `not_after` or at its cap, whichever is
        // first (a replaced key is dead past its cap).
        let caps: HashMap<(String, String), i64> = {
            let mut caps = HashMap::new();
            for r in &self.retired {
                if let Ok(t) = parse_rfc3339_ms(&r.not_after) {
                    let e = caps
                        .entry((r.client.clone(), r.key_id.clone()))
                        .or_insert(t);
                    *e = (*e).min(t);
                }
            }
            caps
        };
        let live = |k: &EnrolledKey| {
            parse_rfc3339_ms(&k.not_after).map_or(true, |t| {
                let cap = caps.get(&(k.client.clone(), k.id.clone())).copied();
                let end = cap.map_or(t, |c| c.min(t));
                end.saturating_add(keep_ms) > now_ms
            })
        };
        let dropped: HashSet<(String, String)> = self
            .keys
            .iter()
            .filter(|k| !live(k))
            .map(|k| (k.client.clone(), k.id.clone()))
            .collect();
        self.keys.retain(|k| live(k));
        let kept: HashSet<(&str, &str)> = self
            .keys
            .iter()
            .map(|k| (k.client.as_str(), k.id.as_str()))
            .collect();
        // Dropped only with its key (and not when a key of the same id
        // somehow remains).
        self.retired.retain(|r| {
            let key = (r.client.clone(), r.key_id.clone());
            !dropped.contains(&key) || kept.contains(&(r.client.as_str(), r.key_id.as_str()))
        });
        // The earliest cap per key; a cap that does not parse is kept as it
        // is (the registry load refuses it, naming it).
        let mut earliest: HashMap<(&str, &str), (i64, usize)> = HashMap::new();
        for (i, r) in self.retired.iter().enumerate() {
            if let Ok(t) = parse_rfc3339_ms(&r.not_after) {
                let e = earliest
                    .entry((r.client.as_str(), r.key_id.as_str()))
                    .or_insert((t, i));
                if t < e.0 {
                    *e = (t, i);
                }
            }
        }
        let keep: HashSet<usize> = earliest.values().map(|(_, i)| *i).collect();
        let mut i = 0;
        self.retired.retain(|r| {
            let this = i;
            i += 1;
            parse_rfc3339_ms(&r.not_after).is_err() || keep.contains(&this)
        });
    }

    /// The caps on `client`'s key `key_id`, as the earliest cap in Unix ms.
    pub fn cap_of(&self, client: &str, key_id: &str) -> Result<Option<i64>, String> {
        let mut cap: Option<i64> = None;
        for r in self
            .retired
            .iter()
            .filter(|r| r.client == client && r.key_id == key_id)
        {
            let t = parse_rfc3339_ms(&r.not_after)
                .map_err(|e| format!("retire {key_id:?} not_after: {e}"))?;
            cap = Some(cap.map_or(t, |c| c.min(t)));
        }
        Ok(cap)
    }
}
