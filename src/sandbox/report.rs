//! What the helper found: the layers in force for one backend process, sent
//! to the gateway as the helper's first stdout line.

use serde::{Deserialize, Serialize};

use super::egress::Egress;

/// The JSON-RPC method of the helper's first stdout line.
pub const REPORT_METHOD: &str = "notifications/sealgate/sandbox";

/// The layers in force for one backend process, as its helper found them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// The user the backend runs as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// The kernel's Landlock ABI as used (`None`: no Landlock).
    pub landlock_abi: Option<u32>,
    /// Landlock filesystem rules enforced.
    pub landlock_fs: bool,
    /// Landlock TCP rules enforced (egress `none` or ports).
    pub landlock_net: bool,
    /// Landlock signal and abstract-socket scopes enforced.
    pub landlock_scopes: bool,
    /// The seccomp denylist installed.
    pub seccomp: bool,
    /// A new network namespace (egress `none` or by host name).
    pub netns: bool,
    /// A new mount namespace in which `/run` is empty (and, for egress by
    /// host name, `/etc/hosts` names the relay addresses).
    #[serde(default)]
    pub mountns: bool,
    /// Resource limits set.
    pub rlimits: bool,
    /// `PR_SET_NO_NEW_PRIVS` set.
    pub no_new_privs: bool,
    /// The egress policy.
    pub egress: Egress,
    /// Each layer asked for but not in force, with why.
    pub missing: Vec<String>,
}

impl SandboxReport {
    /// Each layer by name, in force or not: the
    /// `sealgate_backend_sandbox_layers` rows and the `backend_sandbox`
    /// audit event.
    pub fn layers(&self) -> [(&'static str, bool); 8] {
        [
            ("rlimits", self.rlimits),
            ("landlock_fs", self.landlock_fs),
            ("landlock_net", self.landlock_net),
            ("landlock_scopes", self.landlock_scopes),
            ("seccomp", self.seccomp),
            ("netns", self.netns),
            ("mountns", self.mountns),
            ("no_new_privs", self.no_new_privs),
        ]
    }

    /// Whether a layer asked for is not in force (`best-effort` on a
    /// kernel that lacks it).
    pub fn degraded(&self) -> bool {
        !self.missing.is_empty()
    }

    /// The `backend_sandbox` audit event: the layers in force and those
    /// missing, with why, for `backend` at `ts` (RFC 3339).
    pub fn audit_event(&self, backend: &str, ts: &str) -> serde_json::Value {
        let on: Vec<&str> = self
            .layers()
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        serde_json::json!({
            "ts": ts,
            "event": "backend_sandbox",
            "backend": backend,
            "uid": self.uid,
            "gid": self.gid,
            "landlock_abi": self.landlock_abi,
            "egress": self.egress.to_string(),
            "layers": on,
            "missing": self.missing,
            "degraded": self.degraded(),
        })
    }

    /// One line for the log: `uid=… landlock=ABI 7 (fs, tcp, scopes) …`.
    pub fn summary(&self) -> String {
        let landlock = match self.landlock_abi {
            Some(abi) => {
                let mut parts = Vec::new();
                if self.landlock_fs {
                    parts.push("fs");
                }
                if self.landlock_net {
                    parts.push("tcp");
                }
                if self.landlock_scopes {
                    parts.push("scopes");
                }
                format!("ABI {abi} ({})", parts.join(", "))
            }
            None => "off".into(),
        };
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "uid={} gid={} rlimits={} landlock={landlock} seccomp={} netns={} mountns={} no_new_privs={} egress={}",
            self.uid,
            self.gid,
            on(self.rlimits),
            on(self.seccomp),
            on(self.netns),
            on(self.mountns),
            on(self.no_new_privs),
            self.egress
        )
    }
}
