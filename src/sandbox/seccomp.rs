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
//! which the gateway ends whole, or giving a child to the gateway
//! (`clone(CLONE_PARENT)`, a zombie it never reaps); device nodes
//! (`mknod`/`mknodat` of a character or block device); typing into a
//! terminal (`ioctl` `TIOCSTI`, `TIOCLINUX`); and every socket family but
//! UNIX and netlink, plus IPv4 and IPv6 unless `egress = "none"` (no vsock,
//! packet, Bluetooth, CAN, `AF_ALG`, XDP, ...).
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
//! itself; no change of a file's times by path (`utime`, `utimes`,
//! `futimesat`/`utimensat` with a path: Landlock cannot refuse it, and it
//! would hide a rewrite of the gateway's files); no `truncate(2)` by path when Landlock cannot refuse it (ABI
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

/// `clone` flags refused: those that create a namespace, and
/// `CLONE_PARENT`, whose child would be the gateway's, which never reaps
/// it (a zombie charged to the backend's process limit and the service's
/// task limit until the gateway exits). The C library's `fork`,
/// `posix_spawn` and `pthread_create` set none of them.
const REFUSED_CLONE_FLAGS: &[i32] = &[
    libc::CLONE_PARENT,
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

/// `ioctl` requests that push input into a terminal (TIOCSTI) or act on a
/// virtual console (TIOCLINUX, which can paste its selection): a backend
/// that kept the operator's controlling terminal could type commands into
/// the operator's shell. Refused to every backend.
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

/// Setting a file's times by path: refused to a backend of the gateway's
/// own account (it owns the gateway's files, and Landlock has no right for
/// it), which could otherwise hide a rewrite of the audit trail or of the
/// enrolled keys (whose change poll keys on time and length). Setting the
/// times of a file it has open stays allowed: Landlock decides what it may
/// open.
const TIMES_BY_PATH: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utime,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utimes,
];
/// `futimesat` and `utimensat` take a path in their second argument; a null
/// path means the file descriptor itself.
const TIMES_AT: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_futimesat,
    libc::SYS_utimensat,
];

/// The file type bits of a mode, and the two that make a device node.
const S_IFMT: u64 = 0o170_000;
const DEVICE_TYPES: [u64; 2] = [0o020_000 /* S_IFCHR */, 0o060_000 /* S_IFBLK */];

/// `ioctl` requests that set a file's SIGIO owner (asm-generic/sockios.h).
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;
/// `fcntl` F_SETOWN_EX (asm-generic/fcntl.h).
const F_SETOWN_EX: u64 = 15;

/// What the filter is built for.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// `egress = "none"`: no IPv4 or IPv6 socket (other families but UNIX
    /// and netlink are refused to every backend).
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

/// A 64-bit comparison, for a pointer argument (its upper half counts).
fn cond64(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
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
    // clone(flags, ...): any namespace flag, or CLONE_PARENT.
    let clone = REFUSED_CLONE_FLAGS
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
    // Terminal input injection, for every backend.
    rules.entry(libc::SYS_ioctl).or_default().extend([
        rule(vec![cond(1, SeccompCmpOp::Eq, TIOCSTI)?])?,
        rule(vec![cond(1, SeccompCmpOp::Eq, TIOCLINUX)?])?,
    ]);
    // mknod(path, mode, dev) and mknodat(dirfd, path, mode, dev): no device
    // node (a block device of the gateway's disk would bypass every file
    // rule); fifos, sockets and regular files stay allowed.
    #[cfg(target_arch = "x86_64")]
    let mknods = [(libc::SYS_mknod, 1u8), (libc::SYS_mknodat, 2u8)];
    #[cfg(not(target_arch = "x86_64"))]
    let mknods = [(libc::SYS_mknodat, 2u8)];
    for (nr, mode) in mknods {
        let r = DEVICE_TYPES
            .iter()
            .map(|t| rule(vec![cond(mode, SeccompCmpOp::MaskedEq(S_IFMT), *t)?]))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(nr, r);
    }
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
        for nr in TIMES_BY_PATH {
            rules.insert(*nr, Vec::new());
        }
        for nr in TIMES_AT {
            rules.insert(*nr, vec![rule(vec![cond64(1, SeccompCmpOp::Ne, 0)?])?]);
        }
    }
    // socket(family, ...): an allowlist of families. UNIX and netlink
    // (the C library's interface queries) for every backend, IPv4 and
    // IPv6 where egress allows a network; never vsock (out of a VM past
    // the network namespace), packet, Bluetooth, CAN, AF_ALG, XDP, ...
    let mut families = vec![libc::AF_UNIX, libc::AF_NETLINK];
    if !p.no_inet {
        families.extend([libc::AF_INET, libc::AF_INET6]);
    }
    let other_family = families
        .iter()
        .map(|f| cond(0, SeccompCmpOp::Ne, *f as u64))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_socket, vec![rule(other_family)?]);
    // socketpair(): UNIX only (the only family that implements it, but for
    // rarely built ones).
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?],
    );
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
mod tests;
