//! The seccomp layer: a denylist of system calls no MCP server needs and an
//! attacker wants. Each fails with `EPERM` (the program sees an ordinary
//! refusal and may carry on); everything else is allowed.
//!
//! Denied: tracing and reading other processes (`ptrace`,
//! `process_vm_readv/writev`, `kcmp`, `pidfd_getfd`); new namespaces and
//! joining others (`unshare`, `setns`, `clone` with a namespace flag;
//! `clone3`, whose flags seccomp cannot read, fails with `ENOSYS` so the C
//! library falls back to `clone`); mounts and the root (`mount`, `umount2`,
//! `pivot_root`, `chroot`, the new mount API); the kernel itself (`kexec_*`,
//! modules, `reboot`, `swapon/off`, `acct`, `quotactl`, clock and host
//! name setters, `syslog`, `iopl/ioperm`); large kernel attack surface
//! (`bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*`, the key
//! retention service `keyctl`, `add_key`, `request_key`, `fanotify_init`,
//! `open_by_handle_at`); leaving its process group (`setsid`, `setpgid`),
//! which the gateway ends whole; signals to the gateway's process id and to every
//! process at once (`kill(-1)`); and, for `egress = "none"`, IPv4, IPv6 and
//! packet sockets.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// System calls refused whatever their arguments.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    // Leaving the process group the gateway ends whole.
    libc::SYS_setsid,
    libc::SYS_setpgid,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_syslog,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_fanotify_init,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
];

/// `clone` flags that create a namespace.
const NAMESPACE_FLAGS: &[i32] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// The denylist (EPERM) for this architecture.
fn denylist(arch: TargetArch, no_inet: bool, gateway_pid: u32) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    // clone(flags, ...): any namespace flag.
    let clone = NAMESPACE_FLAGS
        .iter()
        .map(|f| {
            let f = *f as u32 as u64;
            rule(vec![cond(0, SeccompCmpOp::MaskedEq(f), f)?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone);
    // Signals to the gateway by its pid, and kill(-1, …) to everyone.
    let pid = u64::from(gateway_pid);
    rules.insert(
        libc::SYS_kill,
        vec![
            rule(vec![cond(0, SeccompCmpOp::Eq, pid)?])?,
            rule(vec![cond(0, SeccompCmpOp::Eq, u64::from(u32::MAX))?])?,
        ],
    );
    for nr in [
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
        libc::SYS_pidfd_open,
    ] {
        rules.insert(nr, vec![rule(vec![cond(0, SeccompCmpOp::Eq, pid)?])?]);
    }
    if no_inet {
        let families = [libc::AF_INET, libc::AF_INET6, libc::AF_PACKET]
            .iter()
            .map(|f| rule(vec![cond(0, SeccompCmpOp::Eq, *f as u64)?]))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_socket, families);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// `clone3` → ENOSYS, so the C library uses `clone`, whose flags the
/// denylist can check.
fn clone3(arch: TargetArch) -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Installs both filters on this (single-threaded) process.
pub fn install(no_inet: bool, gateway_pid: u32) -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let deny = denylist(arch, no_inet, gateway_pid)?;
    let clone3 = clone3(arch)?;
    seccompiler::apply_filter(&clone3).map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&deny).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("supported arch");
        assert!(!denylist(arch, true, 4242).expect("denylist").is_empty());
        assert!(!denylist(arch, false, 4242).expect("denylist").is_empty());
        assert!(!clone3(arch).expect("clone3").is_empty());
    }
}
