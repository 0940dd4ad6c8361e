//! Listening: the dual-stack listener group of the loops (`SO_REUSEPORT`), the one-instance
//! lock, and what a peer address says. Called by [`crate::server::loops`] at start-up and accept.

use mio::net::TcpListener;
use std::io;
use std::net::SocketAddr;

/// Binds `loops` listeners on `addr`, with `SO_REUSEPORT` when there are several so that the
/// kernel spreads new connections across the loops by a hash of the connection.
///
/// `SO_REUSEPORT` alone would let a second `sse-server` (same user, same address) join the
/// group and silently take half of the new connections. So before binding the group:
///
/// 1. an abstract Unix socket named after the address is bound and held for the server's
///    life: a second `sse-server` on the same address fails there, race-free, and the kernel
///    releases the name when the process dies, however it dies;
/// 2. a probe socket without `SO_REUSEPORT` is bound to the address and closed: it fails with
///    `EADDRINUSE` when any other program listens there, with `SO_REUSEPORT` or not.
///
/// Both map to `EADDRINUSE` ("Address already in use"). The default `::` is dual-stack (IPv6
/// with `IPV6_V6ONLY` off, so IPv4 clients arrive as mapped addresses); where IPv6 is absent
/// it falls back to `0.0.0.0`.
pub fn bind(
    addr: SocketAddr,
    loops: usize,
) -> io::Result<(Vec<TcpListener>, Option<std::os::unix::net::UnixDatagram>)> {
    let stack = match addr.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) {
        true => Stack::Dual,
        false => Stack::AsGiven,
    };
    match bind_group(addr, loops, stack) {
        Err(e) if stack == Stack::Dual && ipv6_absent(&e) => {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            bind_group(v4, loops, Stack::AsGiven)
        }
        other => other,
    }
}

/// `::` as both IPv6 and IPv4 (`IPV6_V6ONLY` off), or the address as given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Dual,
    AsGiven,
}

/// Whether an error from creating or binding an IPv6 socket means this host has no IPv6.
fn ipv6_absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

fn bind_group(
    addr: SocketAddr,
    loops: usize,
    stack: Stack,
) -> io::Result<(Vec<TcpListener>, Option<std::os::unix::net::UnixDatagram>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let reuse_port = loops > 1;
    let socket = |reuse_port: bool| -> io::Result<Socket> {
        let s = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        if stack == Stack::Dual {
            s.set_only_v6(false)?;
        }
        // Lets a restarted server bind while its predecessor's connections sit in TIME_WAIT.
        s.set_reuse_address(true)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        Ok(s)
    };
    let mut lock = None;
    // Port 0 asks the kernel for a port nobody holds: there is nothing to share by mistake.
    if reuse_port && addr.port() != 0 {
        lock = Some(instance_lock(addr)?);
        socket(false)?.bind(&addr.into())?;
    }
    let mut listeners = Vec::with_capacity(loops);
    let mut addr = addr;
    for _ in 0..loops {
        let s = socket(reuse_port)?;
        s.bind(&addr.into())?;
        // The kernel caps this at net.core.somaxconn; ask for the most so a burst of
        // thousands of connects queues instead of dropping SYNs.
        s.listen(65_535)?;
        let listener = TcpListener::from_std(s.into());
        addr = listener.local_addr()?; // the port 0 picked, for the next loops
        listeners.push(listener);
    }
    Ok((listeners, lock))
}

/// The per-address lock of step 1 in [`bind`]: an abstract Unix socket (Linux; no file is
/// created, and the name lives in the network namespace, as the port does).
fn instance_lock(addr: SocketAddr) -> io::Result<std::os::unix::net::UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sse-server/{addr}");
    let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixDatagram::bind_addr(&sa).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("Address already in use (another sse-server holds {addr})"),
            )
        } else {
            e
        }
    })
}

/// `::ffff:127.x.y.z`, as a dual-stack listener sees an IPv4 loopback peer.
pub fn is_mapped_loopback(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}
