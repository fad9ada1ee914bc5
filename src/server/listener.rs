//! The gateway's listening socket: bound with a backlog deep enough for a
//! flood of connections that are shed at once.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// The listen backlog asked of the kernel (which caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4). tokio's
/// `TcpListener::bind` asks for 1024: a flood of connections from one source,
/// each shed at once, can fill that while the accept loop waits for a core,
/// and then the kernel drops every new SYN, a legitimate client's too, which
/// it retries only after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener for the gateway's ports with [`LISTEN_BACKLOG`]
/// (and `SO_REUSEADDR`, as `TcpListener::bind` sets it).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
