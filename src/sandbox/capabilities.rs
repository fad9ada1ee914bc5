//! No capability survives into a backend. A backend run as root keeps, after
//! `setuid(0)`, every capability the gateway holds (`CAP_MKNOD` would let
//! it make a block device of the disk holding the gateway's files and read
//! it raw, past every Landlock rule; `CAP_NET_ADMIN` or `CAP_SYS_ADMIN`
//! would let it reconfigure the host), and a gateway started with ambient
//! capabilities hands them to a backend of its own account. The helper
//! therefore empties the bounding set while it still may (before the user
//! switch), then the ambient, inheritable, effective and permitted sets
//! just before it executes the backend. With `no_new_privs` set, nothing
//! the backend executes gets one back, root or not.

use ::caps::{CapSet, Capability};

/// Empties the bounding set, so that nothing executed later can regain a
/// capability. Needs `CAP_SETPCAP`; a process without it (a gateway run
/// without capabilities) has none to hand on, and nothing is done.
pub fn drop_bounding() -> Result<(), String> {
    let can = ::caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| format!("reading capabilities: {e}"))?;
    if can {
        ::caps::clear(None, CapSet::Bounding).map_err(|e| format!("bounding set: {e}"))?;
    }
    Ok(())
}

/// Empties the ambient, inheritable, effective and permitted sets (the
/// effective set before the permitted one, which must hold it), then reads
/// them back.
pub fn drop_all() -> Result<(), String> {
    // Ambient capabilities exist from Linux 4.3; before, there is nothing
    // to clear and the call fails with EINVAL.
    let _ = ::caps::clear(None, CapSet::Ambient);
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        ::caps::clear(None, set).map_err(|e| format!("{set:?} set: {e}"))?;
    }
    for set in [
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Ambient,
    ] {
        match ::caps::read(None, set) {
            Ok(held) if !held.is_empty() => {
                return Err(format!("{set:?} set still holds {held:?}"))
            }
            Ok(_) => {}
            // No ambient set on this kernel.
            Err(_) if matches!(set, CapSet::Ambient) => {}
            Err(e) => return Err(format!("reading the {set:?} set: {e}")),
        }
    }
    Ok(())
}
