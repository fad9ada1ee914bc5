//! The seccomp layer: a denylist of system calls no MCP server needs and an
//! attacker wants, with argument checks where a call is needed for the
//! backend's own processes but not for the gateway's. Each fails with
//! `EPERM` (the program sees an ordinary refusal and may carry on);
//! everything else is allowed. A first filter works on the number alone:
//! it refuses the x32 ABI (numbers with bit 30 set, which the architecture
//! check alone lets through) and answers `ENOSYS` to every call newer than
//! those this list was written against (new kernel surface stays closed
//! until reviewed; the C library falls back as on an older kernel). The
//! second answers `ENOSYS` to `clone3`, whose flags seccomp cannot read, so
//! the C library falls back to `clone`.
//!
//! Denied whatever the arguments: tracing and reading other processes
//! (`ptrace`, `process_vm_readv/writev`, `kcmp`, `pidfd_getfd`); new
//! namespaces and joining others (`unshare`, `setns`, `clone` with a
//! namespace flag); mounts and the root (`mount`, `umount2`, `pivot_root`,
//! `chroot`, the new mount API); the kernel itself (`kexec_*`, modules,
//! `reboot`, `swapon/off`, `acct`, `quotactl`, clock and host name setters,
//! `syslog`, `iopl/ioperm`); large kernel attack surface (`bpf`,
//! `perf_event_open`, `userfaultfd`, `io_uring_*`, the key retention
//! service `keyctl`, `add_key`, `request_key`, `fanotify_init`,
//! `open_by_handle_at`); legacy calls (`modify_ldt`, `uselib`, `ustat`,
//! `sysfs`, `_sysctl`, `vhangup`) and `personality` but its query; leaving
//! its process group (`setsid`, `setpgid`),
//! which the gateway ends whole; and, for `egress = "none"`, IPv4, IPv6 and
//! packet sockets.
//!
//! Denied by argument, for every backend: a signal (`kill`, `tkill`,
//! `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo`) or a pidfd
//! (`pidfd_open`) aimed at the gateway's process id, a signal to any
//! process group but the backend's own (`kill(-1)`, `kill(-pgid)`: the
//! gateway's group under systemd), and `prlimit64` on any process but the
//! backend itself (the gateway's `RLIMIT_FSIZE` would turn its next audit
//! write into `SIGXFSZ`).
//!
//! A backend of the gateway's own account (or root) passes the kernel's
//! permission checks on the gateway's processes and files, so for it, in
//! addition: no `chmod`/`chown`/extended-attribute/`chattr` flag change of any file (no
//! measured backend needs one; Landlock has no right for them); no
//! scheduling change (`sched_set*`, `setpriority`, `ioprio_set`) but of
//! itself; no `truncate(2)` by path when Landlock cannot refuse it (ABI
//! before 3); and, when Landlock's signal scope (ABI 6) is missing, which
//! alone would keep signals inside the backend's own processes, signals
//! only to itself and its own process group (`kill(0)`, `kill(-own)`), no
//! `pidfd_send_signal`, no `pidfd_open` of another process, and no
//! `F_SETOWN`/`FIOSETOWN` that could route `SIGIO` elsewhere: the gateway's
//! thread ids are not known in advance, so "any process but the gateway"
//! cannot be written as a filter.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
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
    443, // quotactl_fd
    467, // open_tree_attr
    // Legacy calls no current program makes.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_modify_ldt,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    libc::SYS_vhangup,
];

/// The newest system call number this filter was written against (Linux
/// 6.17, `file_setattr`). A newer one answers `ENOSYS`, as on an older
/// kernel, so the C library falls back to what the filter knows: new
/// kernel surface is not open to a backend before it has been reviewed.
const NEWEST_KNOWN: u32 = 469;

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

/// Changes of a file's mode, owner or extended attributes: refused to a
/// backend of the gateway's own account.
const FILE_ATTRIBUTES: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    452, // fchmodat2
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    463, // setxattrat
    466, // removexattrat
    469, // file_setattr
];

/// `ioctl` requests that change a file's attribute flags (append-only,
/// immutable: `chattr`), refused to a backend of the gateway's account.
const FS_IOC_SETFLAGS: u64 = 0x4008_6602;
const FS_IOC_FSSETXATTR: u64 = 0x401c_5820;

/// `ioctl` requests that set a file's SIGIO owner (asm-generic/sockios.h).
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;
/// `fcntl` F_SETOWN_EX (asm-generic/fcntl.h).
const F_SETOWN_EX: u64 = 15;

/// What the filter is built for.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// `egress = "none"`: no IPv4, IPv6 or packet socket.
    pub no_inet: bool,
    /// The gateway's process id (its process group under systemd).
    pub gateway_pid: u32,
    /// This process's id, which the backend keeps across `execv`: also
    /// its process group (the gateway starts it as a group leader and
    /// `setpgid`/`setsid` are refused).
    pub own_pid: u32,
    /// The backend runs as the gateway's account, or as root: the
    /// kernel's permission checks do not stand between it and the gateway.
    pub same_account: bool,
    /// Landlock's signal scope (ABI 6) is in force.
    pub signal_scope: bool,
    /// Landlock refuses `truncate(2)` (ABI 3).
    pub truncate_handled: bool,
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// A 32-bit `pid_t` argument as the filter compares it.
fn pid_arg(pid: i64) -> u64 {
    u64::from(pid as i32 as u32)
}

/// Rules matching a pid argument `arg` that is none of `allowed`.
fn pid_not_in(arg: u8, allowed: &[i64]) -> Result<SeccompRule, String> {
    rule(
        allowed
            .iter()
            .map(|p| cond(arg, SeccompCmpOp::Ne, pid_arg(*p)))
            .collect::<Result<_, _>>()?,
    )
}

/// The denylist (EPERM) for this architecture.
fn denylist(arch: TargetArch, p: &Params) -> Result<BpfProgram, String> {
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

    let gateway = i64::from(p.gateway_pid);
    let own = i64::from(p.own_pid);
    let confine_signals = p.same_account && !p.signal_scope;
    let sign = u64::from(0x8000_0000u32);
    // kill(pid) and rt_sigqueueinfo(pid): never the gateway, its group,
    // every process (-1) or any group but the backend's own.
    for nr in [libc::SYS_kill, libc::SYS_rt_sigqueueinfo] {
        let mut r = vec![
            rule(vec![cond(0, SeccompCmpOp::Eq, pid_arg(gateway))?])?,
            rule(vec![
                cond(0, SeccompCmpOp::MaskedEq(sign), sign)?,
                cond(0, SeccompCmpOp::Ne, pid_arg(-own))?,
            ])?,
        ];
        if confine_signals {
            r.push(pid_not_in(0, &[own, 0, -own])?);
        }
        rules.insert(nr, r);
    }
    // tkill(tid), tgkill(tgid, tid), rt_tgsigqueueinfo(tgid, tid),
    // pidfd_open(pid): never the gateway; confined, only the backend.
    for nr in [
        libc::SYS_tkill,
        libc::SYS_tgkill,
        libc::SYS_rt_tgsigqueueinfo,
        libc::SYS_pidfd_open,
    ] {
        let mut r = vec![rule(vec![cond(0, SeccompCmpOp::Eq, pid_arg(gateway))?])?];
        if confine_signals {
            r.push(pid_not_in(0, &[own])?);
        }
        rules.insert(nr, r);
    }
    if confine_signals {
        // A pidfd may come from /proc/<pid> without pidfd_open.
        rules.insert(libc::SYS_pidfd_send_signal, Vec::new());
        // SIGIO to another process or group.
        rules.insert(
            libc::SYS_fcntl,
            vec![
                rule(vec![
                    cond(1, SeccompCmpOp::Eq, libc::F_SETOWN as u64)?,
                    cond(2, SeccompCmpOp::Ne, 0)?,
                    cond(2, SeccompCmpOp::Ne, pid_arg(own))?,
                    cond(2, SeccompCmpOp::Ne, pid_arg(-own))?,
                ])?,
                rule(vec![cond(1, SeccompCmpOp::Eq, F_SETOWN_EX)?])?,
            ],
        );
        rules.entry(libc::SYS_ioctl).or_default().extend([
            rule(vec![cond(1, SeccompCmpOp::Eq, FIOSETOWN)?])?,
            rule(vec![cond(1, SeccompCmpOp::Eq, SIOCSPGRP)?])?,
        ]);
    }
    // personality(): only the query (0xffffffff); setting it could, for
    // one, turn address space randomisation off for what it executes.
    rules.insert(
        libc::SYS_personality,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, u64::from(u32::MAX))?])?],
    );
    // prlimit64(pid, ...): only itself (0 or its own pid).
    rules.insert(libc::SYS_prlimit64, vec![pid_not_in(0, &[0, own])?]);
    if p.same_account {
        for nr in FILE_ATTRIBUTES {
            rules.insert(*nr, Vec::new());
        }
        rules.entry(libc::SYS_ioctl).or_default().extend([
            rule(vec![cond(1, SeccompCmpOp::Eq, FS_IOC_SETFLAGS)?])?,
            rule(vec![cond(1, SeccompCmpOp::Eq, FS_IOC_FSSETXATTR)?])?,
        ]);
        for nr in [
            libc::SYS_sched_setaffinity,
            libc::SYS_sched_setparam,
            libc::SYS_sched_setscheduler,
            libc::SYS_sched_setattr,
        ] {
            rules.insert(nr, vec![pid_not_in(0, &[0, own])?]);
        }
        // setpriority(which, who) and ioprio_set(which, who): a process
        // (PRIO_PROCESS 0, IOPRIO_WHO_PROCESS 1) that is itself.
        rules.insert(
            libc::SYS_setpriority,
            vec![
                rule(vec![cond(0, SeccompCmpOp::Ne, 0)?])?,
                pid_not_in(1, &[0, own])?,
            ],
        );
        rules.insert(
            libc::SYS_ioprio_set,
            vec![
                rule(vec![cond(0, SeccompCmpOp::Ne, 1)?])?,
                pid_not_in(1, &[0, own])?,
            ],
        );
        if !p.truncate_handled {
            rules.insert(libc::SYS_truncate, Vec::new());
        }
    }
    if p.no_inet {
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

/// The x32 system call bit: on x86_64 an x32 call has the x86_64 audit
/// architecture and a number with this bit set, so a filter keyed on
/// x86_64 numbers would let every one of them through.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// By number alone: every x32 system call refused (EPERM; the
/// architecture check of the other filters kills a process making i386
/// calls), and every call newer than [`NEWEST_KNOWN`] answered `ENOSYS`.
fn numbers() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20;
    const JMP_JSET_K: u16 = 0x05 | 0x40;
    const JMP_JGT_K: u16 = 0x05 | 0x20;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr
        op(LD_W_ABS, 0, 0, 0),
        op(JMP_JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(JMP_JGT_K, 0, 1, NEWEST_KNOWN),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs the filters on this (single-threaded) process.
pub fn install(params: &Params) -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let deny = denylist(arch, params)?;
    let clone3 = clone3(arch)?;
    seccompiler::apply_filter(&numbers()).map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&clone3).map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&deny).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions seccompiler emits:
    /// what the kernel would answer for one call, without installing
    /// anything.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                0x54 => acc &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(acc == i.k),
                0x25 => pc += jump(acc > i.k),
                0x35 => pc += jump(acc >= i.k),
                0x45 => pc += jump(acc & i.k != 0),
                0x06 => return i.k,
                other => panic!("instruction {other:#x} not interpreted"),
            }
        }
    }

    const X86_64: u32 = 0xc000_003e;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const GATEWAY: u32 = 4242;
    const OWN: u32 = 5000;

    fn params(same_account: bool, signal_scope: bool) -> Params {
        Params {
            no_inet: true,
            gateway_pid: GATEWAY,
            own_pid: OWN,
            same_account,
            signal_scope,
            truncate_handled: false,
        }
    }

    /// Every filter's answer, the most restrictive winning as in the kernel.
    fn verdict(p: &Params, nr: i64, args: [u64; 6]) -> u32 {
        let arch = TargetArch::x86_64;
        let progs = [
            numbers(),
            clone3(arch).expect("clone3"),
            denylist(arch, p).expect("denylist"),
        ];
        progs
            .iter()
            .map(|prog| run(prog, X86_64, nr as u32, args))
            .min_by_key(|r| (r & 0xffff_0000) as i32)
            .expect("three filters")
    }

    fn pid(p: i64) -> u64 {
        p as u64
    }

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("supported arch");
        for (same, scope) in [(false, false), (true, false), (true, true)] {
            assert!(!denylist(arch, &params(same, scope))
                .expect("denylist")
                .is_empty());
        }
        assert!(!clone3(arch).expect("clone3").is_empty());
    }

    #[test]
    fn x32_system_calls_are_refused() {
        let p = params(false, true);
        for nr in [
            libc::SYS_getpid,
            libc::SYS_kill,
            libc::SYS_ptrace,
            libc::SYS_unshare,
        ] {
            let x32 = nr | i64::from(X32_SYSCALL_BIT);
            assert_eq!(verdict(&p, x32, [0; 6]), EPERM, "x32 {nr}");
        }
        assert_eq!(verdict(&p, libc::SYS_getpid, [0; 6]), ALLOW);
        assert_eq!(verdict(&p, libc::SYS_ptrace, [0; 6]), EPERM);
        // A call newer than the filter: ENOSYS, as on an older kernel.
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(verdict(&p, i64::from(NEWEST_KNOWN) + 1, [0; 6]), enosys);
        assert_eq!(verdict(&p, 600, [0; 6]), enosys);
        assert_eq!(verdict(&p, 468, [0; 6]), ALLOW, "file_getattr");
        // Legacy calls; personality() may only be queried.
        for nr in [libc::SYS_modify_ldt, libc::SYS_uselib, libc::SYS_sysfs, 467] {
            assert_eq!(verdict(&p, nr, [0; 6]), EPERM, "{nr}");
        }
        let personality = |arg: u64| verdict(&p, libc::SYS_personality, [arg, 0, 0, 0, 0, 0]);
        assert_eq!(personality(0x0040000), EPERM, "ADDR_NO_RANDOMIZE");
        assert_eq!(personality(0xffff_ffff), ALLOW);
        // An i386 call (int 0x80) does not have the x86_64 architecture.
        let deny = denylist(TargetArch::x86_64, &p).expect("denylist");
        assert_eq!(
            run(&deny, 0x4000_0003, 20, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn no_signal_reaches_the_gateway_its_group_or_everyone() {
        let g = i64::from(GATEWAY);
        let own = i64::from(OWN);
        for (same, scope) in [(false, false), (true, false), (true, true)] {
            let p = params(same, scope);
            let kill = |target: i64| verdict(&p, libc::SYS_kill, [pid(target), 0, 0, 0, 0, 0]);
            for target in [g, -g, -1, -12345] {
                assert_eq!(
                    kill(target),
                    EPERM,
                    "kill({target}) same={same} scope={scope}"
                );
            }
            // Garbage in the upper half of the register changes nothing:
            // the kernel reads a 32-bit pid_t.
            let high = 0xdead_beef_0000_0000u64 | u64::from(GATEWAY);
            assert_eq!(verdict(&p, libc::SYS_kill, [high, 0, 0, 0, 0, 0]), EPERM);
            for target in [own, 0, -own] {
                assert_eq!(kill(target), ALLOW, "kill({target})");
            }
            for nr in [
                libc::SYS_tkill,
                libc::SYS_tgkill,
                libc::SYS_rt_sigqueueinfo,
                libc::SYS_rt_tgsigqueueinfo,
                libc::SYS_pidfd_open,
            ] {
                assert_eq!(verdict(&p, nr, [pid(g), pid(g), 0, 0, 0, 0]), EPERM, "{nr}");
                assert_eq!(
                    verdict(&p, nr, [pid(own), pid(own), 0, 0, 0, 0]),
                    ALLOW,
                    "{nr}"
                );
            }
        }
    }

    #[test]
    fn without_the_signal_scope_a_same_account_backend_signals_only_itself() {
        // A gateway thread id (not its pid) and a child of the backend
        // cannot be told apart: both are refused.
        let p = params(true, false);
        for nr in [
            libc::SYS_kill,
            libc::SYS_tkill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
            libc::SYS_pidfd_open,
        ] {
            assert_eq!(verdict(&p, nr, [4243, 4243, 0, 0, 0, 0]), EPERM, "{nr}");
        }
        assert_eq!(
            verdict(&p, libc::SYS_pidfd_send_signal, [3, 15, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(verdict(&p, libc::SYS_fcntl, [3, 8, 4243, 0, 0, 0]), EPERM);
        assert_eq!(
            verdict(&p, libc::SYS_fcntl, [3, 8, u64::from(OWN), 0, 0, 0]),
            ALLOW
        );
        assert_eq!(verdict(&p, libc::SYS_fcntl, [3, 15, 0, 0, 0, 0]), EPERM);
        assert_eq!(verdict(&p, libc::SYS_fcntl, [3, 4, 0o4000, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&p, libc::SYS_ioctl, [3, 0x8901, 0, 0, 0, 0]), EPERM);
        // Another account (the kernel's permission check) or the Landlock
        // signal scope: its children may be signalled.
        for p in [params(false, false), params(true, true)] {
            assert_eq!(verdict(&p, libc::SYS_kill, [4243, 15, 0, 0, 0, 0]), ALLOW);
            assert_eq!(
                verdict(&p, libc::SYS_pidfd_send_signal, [3, 15, 0, 0, 0, 0]),
                ALLOW
            );
        }
    }

    #[test]
    fn resource_limits_of_other_processes_are_refused() {
        for p in [params(false, true), params(true, false)] {
            let prlimit = |target: u64, new: u64| {
                verdict(
                    &p,
                    libc::SYS_prlimit64,
                    [target, libc::RLIMIT_FSIZE as u64, new, 0, 0, 0],
                )
            };
            assert_eq!(prlimit(u64::from(GATEWAY), 0x7000), EPERM);
            assert_eq!(prlimit(4243, 0), EPERM);
            assert_eq!(prlimit(0, 0x7000), ALLOW);
            assert_eq!(prlimit(u64::from(OWN), 0x7000), ALLOW);
        }
    }

    #[test]
    fn a_same_account_backend_changes_no_mode_owner_or_schedule() {
        let same = params(true, true);
        let other = params(false, true);
        for nr in FILE_ATTRIBUTES {
            assert_eq!(verdict(&same, *nr, [0; 6]), EPERM, "{nr}");
            assert_eq!(verdict(&other, *nr, [0; 6]), ALLOW, "{nr}");
        }
        let g = u64::from(GATEWAY);
        assert_eq!(
            verdict(&same, libc::SYS_sched_setaffinity, [g, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(verdict(&same, libc::SYS_sched_setaffinity, [0; 6]), ALLOW);
        assert_eq!(
            verdict(&same, libc::SYS_setpriority, [0, g, 19, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            verdict(&same, libc::SYS_setpriority, [2, 0, 19, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            verdict(&same, libc::SYS_setpriority, [0, 0, 19, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(&same, libc::SYS_ioprio_set, [1, g, 0, 0, 0, 0]),
            EPERM
        );
        // truncate(2) by path: refused where Landlock cannot (before ABI 3).
        assert_eq!(verdict(&same, libc::SYS_truncate, [0; 6]), EPERM);
        let handled = Params {
            truncate_handled: true,
            ..same
        };
        assert_eq!(verdict(&handled, libc::SYS_truncate, [0; 6]), ALLOW);
        assert_eq!(verdict(&other, libc::SYS_truncate, [0; 6]), ALLOW);
        assert_eq!(verdict(&same, libc::SYS_ftruncate, [0; 6]), ALLOW);
        // chattr: append-only or immutable flags of a gateway file.
        for request in [FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR] {
            assert_eq!(
                verdict(&same, libc::SYS_ioctl, [3, request, 0, 0, 0, 0]),
                EPERM
            );
            assert_eq!(
                verdict(&other, libc::SYS_ioctl, [3, request, 0, 0, 0, 0]),
                ALLOW
            );
        }
        assert_eq!(
            verdict(&same, libc::SYS_ioctl, [1, 0x5401, 0, 0, 0, 0]),
            ALLOW,
            "TCGETS"
        );
    }
}
