//! The sandbox's decisions that do not depend on the kernel call that
//! informs them: which layers a backend needs, and which backends cannot
//! run at all, whatever `sandbox` says. Pure functions, unit-tested here.

use super::Egress;

/// Whether Landlock's TCP rules are a layer `egress` needs (ABI 4, Linux
/// 6.7): for ports they are the only thing holding the backend to them, and
/// for host names they keep it to the relay's ports. For `"none"` with a
/// network namespace of its own (no interface but a loopback that is down)
/// and seccomp refusing IPv4 and IPv6 sockets, they add nothing, so
/// `required` does not demand them there (Linux 5.13 to 6.6 run such a
/// backend); without the namespace they are the second layer and are.
pub(super) fn tcp_rules_needed(egress: &Egress, netns: bool) -> bool {
    match egress {
        Egress::Any => false,
        Egress::None => !netns,
        Egress::TcpPorts(_) | Egress::Hosts(_) => true,
    }
}

/// Why a backend running as root cannot run at all here: without a mount
/// namespace hiding `/run` (egress `"any"` or ports, or a gateway that
/// could not create one), uid 0 owns the host's service sockets there (the
/// service manager's private socket, the system bus, a container
/// runtime's): connecting to one, it could start an unconfined root
/// process. Capabilities and Landlock (before ABI 9) do not stop it.
pub(super) fn root_without_hidden_run(uid: u32, mountns: bool) -> Option<String> {
    (uid == 0 && !mountns).then(|| {
        "a backend running as root needs a mount namespace that hides /run (root owns the service manager's and the system bus's sockets there): egress \"any\" and ports get none, nor does a gateway without CAP_SYS_ADMIN; use egress \"none\" or host names, or give it an account of its own".to_string()
    })
}

/// Why a backend of the gateway's own account (or root) cannot run at all
/// here: without Landlock's filesystem rules (`abi` None), nothing but
/// seccomp stands between it and the gateway's files and `/proc/<gateway>`
/// (`environ`, `mem`, `oom_score_adj`), which its account owns.
pub(super) fn same_account_unconfined(same_account: bool, abi: Option<u32>) -> Option<String> {
    (same_account && abi.is_none()).then(|| {
        "a backend of the gateway's own account (or root) needs Landlock's filesystem rules, which are not in force on this kernel; give it an account of its own".to_string()
    })
}

/// Why a backend of the gateway's own account (or root) is not held to
/// what docs/BACKENDS.md promises on this kernel: Landlock before ABI 3
/// cannot refuse `truncate(2)`, so such a backend could cut the audit file
/// short (seccomp refuses the call by path, but `sandbox = "required"`
/// promises the filesystem rules themselves). `abi`: the Landlock ABI whose
/// filesystem rules are in force.
pub(super) fn same_account_gap(same_account: bool, abi: Option<u32>) -> Option<String> {
    match abi {
        _ if !same_account => None,
        Some(a) if a >= 3 => None,
        Some(a) => Some(format!(
            "a backend of the gateway's own account needs Landlock ABI 3 (truncate), the kernel has {a}; give it an account of its own"
        )),
        None => Some(
            "a backend of the gateway's own account needs Landlock ABI 3 (truncate); give it an account of its own".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::HostPort;

    fn hosts(items: &[&str]) -> Egress {
        Egress::Hosts(
            items
                .iter()
                .map(|i| HostPort::parse(i).expect("valid"))
                .collect(),
        )
    }

    #[test]
    fn tcp_rules_are_required_where_they_hold_the_backend_as_docs_say() {
        // docs/BACKENDS.md: "its TCP rules when `egress` names ports or hosts".
        assert!(tcp_rules_needed(&Egress::TcpPorts(vec![443]), false));
        assert!(tcp_rules_needed(&hosts(&["example.org:443"]), true));
        assert!(!tcp_rules_needed(&Egress::Any, false));
        // "none" in its own network namespace: the namespace and seccomp.
        assert!(!tcp_rules_needed(&Egress::None, true));
        // Without the namespace (best-effort), Landlock is the second layer.
        assert!(tcp_rules_needed(&Egress::None, false));
    }

    #[test]
    fn a_same_account_backend_without_landlock_or_a_root_one_without_hidden_run_is_refused() {
        assert!(same_account_unconfined(true, None).is_some());
        assert!(same_account_unconfined(true, Some(1)).is_none());
        assert!(same_account_unconfined(false, None).is_none());
        assert!(root_without_hidden_run(0, false).is_some());
        assert!(root_without_hidden_run(0, true).is_none());
        assert!(root_without_hidden_run(998, false).is_none());
    }

    #[test]
    fn a_same_account_backend_needs_landlock_truncate_rules() {
        assert_eq!(same_account_gap(false, None), None);
        assert_eq!(same_account_gap(false, Some(1)), None);
        assert_eq!(same_account_gap(true, Some(3)), None);
        assert_eq!(same_account_gap(true, Some(7)), None);
        for abi in [None, Some(1), Some(2)] {
            let gap = same_account_gap(true, abi).expect("a gap");
            assert!(gap.contains("Landlock ABI 3"), "{gap}");
        }
    }
}
