//! `[sandbox]` and the sandbox keys of a stdio backend (`sandbox`,
//! `egress`): how its isolation is read from the file; the sandbox itself
//! is [`crate::sandbox`].

use std::path::PathBuf;

use serde::Deserialize;

/// `[sandbox]`: shared by every sandboxed stdio backend.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// The `sealgate` executable that applies a backend's sandbox
    /// (`sealgate sandbox-exec`). Default: the running `sealgate` itself;
    /// needed only when the gateway runs inside another program (tests).
    #[serde(default)]
    pub helper: Option<PathBuf>,
}

/// How a stdio backend's sandbox layers are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Every layer the kernel supports; those it lacks are logged.
    #[default]
    BestEffort,
    /// Every layer must be in force, or the backend does not start.
    Required,
    /// No sandbox: only the user and group switch and the process group.
    Off,
}

/// `egress` of a stdio backend: `"none"` (default), `"any"`, or a list of
/// `"tcp:<port>"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "EgressFile")]
pub struct EgressSetting(pub crate::sandbox::Egress);

/// `egress` is described by what the file may hold: a word or a list.
impl schemars::JsonSchema for EgressSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EgressSetting".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <EgressFile as schemars::JsonSchema>::json_schema(generator)
    }
}

impl Default for EgressSetting {
    fn default() -> Self {
        EgressSetting(crate::sandbox::Egress::None)
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum EgressFile {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<EgressFile> for EgressSetting {
    type Error = String;
    fn try_from(f: EgressFile) -> Result<Self, String> {
        use crate::sandbox::Egress;
        let expected = "field egress: expected \"none\", \"any\", or a list like [\"data.europarl.europa.eu:443\"] or [\"tcp:443\"]";
        match f {
            EgressFile::Word(w) if w == "none" => Ok(EgressSetting(Egress::None)),
            EgressFile::Word(w) if w == "any" => Ok(EgressSetting(Egress::Any)),
            EgressFile::Word(_) => Err(expected.into()),
            EgressFile::List(items) => {
                let mut ports = Vec::new();
                let mut hosts = Vec::new();
                for item in &items {
                    let port_entry = item
                        .get(..4)
                        .filter(|p| p.eq_ignore_ascii_case("tcp:"))
                        .and_then(|_| item.get(4..));
                    if let Some(port) = port_entry {
                        let port =
                            port.parse::<u16>()
                                .ok()
                                .filter(|p| *p != 0)
                                .ok_or_else(|| {
                                    format!("{expected}; {item:?} is not tcp:<port 1-65535>")
                                })?;
                        ports.push(port);
                    } else {
                        hosts.push(
                            crate::sandbox::HostPort::parse(item)
                                .map_err(|e| format!("{expected}; {e}"))?,
                        );
                    }
                }
                if !ports.is_empty() && !hosts.is_empty() {
                    return Err(format!(
                        "{expected}; it mixes tcp:<port> (any host) with host:port entries: use one kind"
                    ));
                }
                ports.sort_unstable();
                ports.dedup();
                hosts.sort();
                hosts.dedup();
                let distinct = hosts
                    .iter()
                    .map(|h| h.host.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                if distinct > crate::sandbox::MAX_EGRESS_HOSTS {
                    return Err(format!(
                        "{expected}; {distinct} host names, at most {} are allowed",
                        crate::sandbox::MAX_EGRESS_HOSTS
                    ));
                }
                if !hosts.is_empty() {
                    return Ok(EgressSetting(Egress::Hosts(hosts)));
                }
                if ports.is_empty() {
                    return Ok(EgressSetting(Egress::None));
                }
                Ok(EgressSetting(Egress::TcpPorts(ports)))
            }
        }
    }
}
