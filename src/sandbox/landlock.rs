//! The Landlock layer: the backend may read (and execute) beneath the
//! read-only paths, write beneath the read-write ones, and nothing else of
//! the filesystem; connect over TCP only to the allowed ports and listen on
//! none; signal no process and reach no abstract UNIX socket outside its
//! own sandbox.
//!
//! Built for the newest ABI the crate knows, in best-effort mode: a kernel
//! with an older ABI enforces what it has, and [`Outcome`] says what that
//! was, so the caller decides whether that is enough.

use std::path::PathBuf;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};

use super::Egress;

/// The newest ABI this code asks for; older kernels get their subset.
const TARGET: ABI = ABI::V10;

/// What Landlock enforces for this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// The ABI in use; `None` when the kernel has no Landlock.
    pub abi: Option<u32>,
    /// Filesystem rules in force.
    pub fs: bool,
    /// TCP rules in force.
    pub net: bool,
    /// Signal and abstract UNIX socket scopes in force.
    pub scopes: bool,
    /// `PR_SET_NO_NEW_PRIVS` was set with it.
    pub no_new_privs: bool,
}

/// A ruleset with every rule added, ready to enforce.
pub struct Prepared {
    ruleset: RulesetCreated,
    egress: Egress,
}

/// Opens every path (missing ones are skipped) and adds its rule. Done
/// before the user switch, while every path can still be opened.
pub fn prepare(read: &[PathBuf], write: &[PathBuf], egress: &Egress) -> Result<Prepared, String> {
    let e = |e: landlock::RulesetError| e.to_string();
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET))
        .map_err(e)?;
    ruleset = match egress {
        Egress::Any => ruleset,
        // No network at all: every network right Landlock knows (TCP, and
        // UDP from ABI 10), none granted. By host name: the same, plus TCP
        // connections to the hosts' ports (only the gateway's relay listens
        // on them in the backend's network namespace).
        Egress::None | Egress::Hosts(_) => ruleset
            .handle_access(AccessNet::from_all(TARGET))
            .map_err(e)?,
        // TCP only: UDP (DNS) stays open, so handle the TCP rights alone.
        Egress::TcpPorts(_) => ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(e)?,
    };
    let mut created = ruleset
        .scope(Scope::from_all(TARGET))
        .map_err(e)?
        .create()
        .map_err(e)?;
    let read_rights = AccessFs::from_read(TARGET);
    // Everything but making device nodes: a device made in scratch (with
    // CAP_MKNOD, or one passed on by a careless gateway) would reach a disk
    // or the kernel past every rule here.
    let write_rights = AccessFs::from_all(TARGET) & !(AccessFs::MakeChar | AccessFs::MakeBlock);
    for (paths, rights) in [(read, read_rights), (write, write_rights)] {
        for path in paths {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let Ok(fd) = PathFd::new(path) else {
                continue;
            };
            // Directory rights cannot be granted on a file.
            let rights: BitFlags<AccessFs> = if meta.is_dir() {
                rights
            } else {
                rights & AccessFs::from_file(TARGET)
            };
            created = created
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(|err| format!("{}: {err}", path.display()))?;
        }
    }
    if matches!(egress, Egress::TcpPorts(_) | Egress::Hosts(_)) {
        for port in egress.ports() {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(e)?;
        }
    }
    Ok(Prepared {
        ruleset: created,
        egress: egress.clone(),
    })
}

/// Restricts this process (and whatever it executes) to the prepared rules.
pub fn enforce(prepared: Prepared) -> Result<Outcome, String> {
    let status = prepared
        .ruleset
        .restrict_self()
        .map_err(|e| e.to_string())?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => Some(effective_abi as u32),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => None,
    };
    let enforced = abi.is_some() && status.ruleset != RulesetStatus::NotEnforced;
    let at_least = |v: u32| enforced && abi.is_some_and(|a| a >= v);
    Ok(Outcome {
        abi: abi.filter(|_| enforced),
        fs: enforced,
        net: prepared.egress != Egress::Any && at_least(4),
        scopes: at_least(6),
        no_new_privs: status.no_new_privs,
    })
}
