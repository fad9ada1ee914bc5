//! The filters run through a classic-BPF interpreter: what the kernel
//! would answer, without installing anything.

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

#[test]
fn no_child_is_handed_to_the_gateway() {
    for p in [params(false, true), params(true, false)] {
        let clone = |flags: u64| verdict(&p, libc::SYS_clone, [flags, 0, 0, 0, 0, 0]);
        // CLONE_PARENT | SIGCHLD: the child's parent would be the gateway.
        assert_eq!(clone(0x8000 | 17), EPERM);
        // glibc's fork and pthread_create.
        assert_eq!(clone(0x0120_0011), ALLOW, "fork");
        assert_eq!(clone(0x003d_0f00), ALLOW, "pthread_create");
        // clone3, whose flags live in memory: ENOSYS, the C library falls back.
        assert_eq!(
            verdict(&p, libc::SYS_clone3, [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }
}

#[test]
fn no_device_node_is_made() {
    for p in [params(false, true), params(true, true)] {
        for (mode, verdict_wanted) in [
            (0o060_600, EPERM), // S_IFBLK
            (0o020_600, EPERM), // S_IFCHR
            (0o010_600, ALLOW), // S_IFIFO
            (0o140_600, ALLOW), // S_IFSOCK
            (0o100_600, ALLOW), // S_IFREG
        ] {
            assert_eq!(
                verdict(&p, libc::SYS_mknod, [0, mode, 0x0801, 0, 0, 0]),
                verdict_wanted,
                "mknod {mode:o}"
            );
            assert_eq!(
                verdict(&p, libc::SYS_mknodat, [3, 0, mode, 0x0801, 0, 0]),
                verdict_wanted,
                "mknodat {mode:o}"
            );
        }
    }
}

#[test]
fn only_the_socket_families_a_backend_needs_are_open() {
    const AF_VSOCK: u64 = 40;
    let none = params(false, true);
    let network = Params {
        no_inet: false,
        ..none
    };
    let socket = |p: &Params, family: u64| verdict(p, libc::SYS_socket, [family, 1, 0, 0, 0, 0]);
    for p in [&none, &network] {
        assert_eq!(socket(p, libc::AF_UNIX as u64), ALLOW);
        assert_eq!(socket(p, libc::AF_NETLINK as u64), ALLOW);
        for family in [
            AF_VSOCK,
            libc::AF_PACKET as u64,
            libc::AF_BLUETOOTH as u64,
            libc::AF_CAN as u64,
            libc::AF_ALG as u64,
            44,            // AF_XDP
            0x1_0000_0001, // AF_UNIX in the low half only: int family
        ] {
            let want = if family == 0x1_0000_0001 {
                ALLOW
            } else {
                EPERM
            };
            assert_eq!(socket(p, family), want, "family {family}");
        }
        assert_eq!(
            verdict(p, libc::SYS_socketpair, [AF_VSOCK, 1, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            verdict(
                p,
                libc::SYS_socketpair,
                [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]
            ),
            ALLOW
        );
    }
    for family in [libc::AF_INET as u64, libc::AF_INET6 as u64] {
        assert_eq!(socket(&none, family), EPERM, "egress none: {family}");
        assert_eq!(socket(&network, family), ALLOW, "egress: {family}");
    }
}

#[test]
fn no_backend_types_into_a_terminal() {
    for p in [params(false, true), params(true, false)] {
        assert_eq!(
            verdict(&p, libc::SYS_ioctl, [0, TIOCSTI, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            verdict(&p, libc::SYS_ioctl, [0, TIOCLINUX, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            verdict(&p, libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]),
            ALLOW,
            "TCGETS"
        );
    }
}

#[test]
fn a_same_account_backend_sets_no_file_times_by_path() {
    let same = params(true, true);
    let other = params(false, true);
    for nr in [libc::SYS_utime, libc::SYS_utimes] {
        assert_eq!(verdict(&same, nr, [0x7000, 0, 0, 0, 0, 0]), EPERM, "{nr}");
        assert_eq!(verdict(&other, nr, [0x7000, 0, 0, 0, 0, 0]), ALLOW, "{nr}");
    }
    for nr in [libc::SYS_utimensat, libc::SYS_futimesat] {
        let at = |p: &Params, path: u64| verdict(p, nr, [3, path, 0, 0, 0, 0]);
        assert_eq!(at(&same, 0x7000), EPERM, "{nr} by path");
        // A path whose low half is zero is still a path.
        assert_eq!(at(&same, 0x7f00_0000_0000), EPERM, "{nr} high path");
        // futimens(fd): a file it could open.
        assert_eq!(at(&same, 0), ALLOW, "{nr} by fd");
        assert_eq!(at(&other, 0x7000), ALLOW, "{nr} other account");
    }
}
