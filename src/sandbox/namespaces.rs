//! The namespace layer, applied by the helper while it still runs as the
//! gateway's user (root, for namespaces):
//!
//! For `egress = "none"` and egress by host name (a backend with the host's
//! network gets neither):
//!
//! - a new **mount namespace**, private, in which `/run` is an empty,
//!   read-only tmpfs: the UNIX sockets of the host's services (the system
//!   bus, systemd-resolved, nscd, container runtimes) are gone from the
//!   backend's view, whatever Landlock's ABI says about sockets (without
//!   it, systemd-resolved or nscd would resolve, and so carry, any name);
//! - a new **network namespace**:
//!   for `"none"` its loopback stays down (no network at all); for host
//!   egress the loopback is brought up and `/etc/hosts` is replaced (in the
//!   mount namespace only) by one that names each allowed host at its relay
//!   address, on which the gateway then listens from outside. There is no
//!   DNS server to ask, so no other name resolves.
//!
//! Nothing here is visible outside the backend: the mounts are private to
//! its namespace, and the files written live on its own tmpfs.

use std::io::Write as _;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::Egress;

/// Where the helper's tmpfs is mounted (hiding what was there).
pub const HIDDEN_RUN: &str = "/run";

/// Which namespaces the helper entered and set up.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// A new network namespace.
    pub netns: bool,
    /// A new mount namespace with `/run` hidden (and, for host egress,
    /// `/etc/hosts` replaced).
    pub mountns: bool,
}

/// Whether this egress puts the backend in a network namespace of its own.
pub fn wants_netns(egress: &Egress) -> bool {
    matches!(egress, Egress::None | Egress::Hosts(_))
}

/// Enters the namespaces (both in one call: a failure leaves the process
/// as it was). Then [`set_up`] must follow.
pub fn unshare(egress: &Egress) -> Result<Outcome, String> {
    use nix::sched::{unshare, CloneFlags};
    if !wants_netns(egress) {
        // A backend with the host's network keeps the host's view of /run:
        // its DNS configuration may live there (/etc/resolv.conf is often a
        // link into /run/systemd/resolve).
        return Ok(Outcome::default());
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("no new namespaces ({e})"))?;
    Ok(Outcome {
        netns: true,
        mountns: true,
    })
}

/// Sets up the namespaces [`unshare`] entered: the mounts, and for host
/// egress the loopback. `Err` names the step that failed.
pub fn set_up(egress: &Egress) -> Result<(), String> {
    set_up_mounts(egress).map_err(|e| format!("mount namespace: {e}"))?;
    if matches!(egress, Egress::Hosts(_)) {
        loopback_up().map_err(|e| format!("loopback of the network namespace: {e}"))?;
    }
    Ok(())
}

fn set_up_mounts(egress: &Egress) -> Result<(), String> {
    let none: Option<&str> = None;
    // Nothing mounted here propagates back to the host.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making / private: {e}"))?;
    if !Path::new(HIDDEN_RUN).is_dir() {
        return Err(format!("{HIDDEN_RUN} is not a directory"));
    }
    let fs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        HIDDEN_RUN,
        Some("tmpfs"),
        fs_flags,
        Some("size=64k,nr_inodes=16,mode=0755"),
    )
    .map_err(|e| format!("tmpfs on {HIDDEN_RUN}: {e}"))?;
    if matches!(egress, Egress::Hosts(_)) {
        let dir = Path::new(HIDDEN_RUN).join("sealgate");
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let hosts = dir.join("hosts");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&hosts)
                .map_err(|e| format!("{}: {e}", hosts.display()))?;
            f.write_all(egress.hosts_file().as_bytes())
                .map_err(|e| format!("{}: {e}", hosts.display()))?;
        }
        // Bind over the file (following a symbolic link), then make the
        // bind read-only.
        mount(
            Some(hosts.as_path()),
            "/etc/hosts",
            none,
            MsFlags::MS_BIND,
            none,
        )
        .map_err(|e| format!("binding /etc/hosts: {e}"))?;
        mount(
            none,
            "/etc/hosts",
            none,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            none,
        )
        .map_err(|e| format!("making /etc/hosts read-only: {e}"))?;
    }
    mount(
        none,
        HIDDEN_RUN,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | fs_flags,
        none,
    )
    .map_err(|e| format!("making {HIDDEN_RUN} read-only: {e}"))
}

/// Brings up `lo` (index 1 in a new network namespace) with one
/// RTM_NEWLINK request over rtnetlink, and waits for its acknowledgement.
fn loopback_up() -> Result<(), String> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
    };
    use netlink_packet_route::link::{LinkFlags, LinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    socket
        .bind_auto()
        .map_err(|e| format!("netlink bind: {e}"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| format!("netlink connect: {e}"))?;
    let mut link = LinkMessage::default();
    link.header.index = 1;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| format!("netlink send: {e}"))?;
    let mut reply = vec![0u8; 8192];
    let n = socket
        .recv(&mut &mut reply[..], 0)
        .map_err(|e| format!("netlink receive: {e}"))?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n])
        .map_err(|e| format!("netlink answer: {e}"))?;
    match answer.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(format!("the kernel refused: error {code}")),
        },
        other => Err(format!("unexpected netlink answer: {other:?}")),
    }
}
