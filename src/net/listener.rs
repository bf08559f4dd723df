//! Listening sockets. Every shard owns one listener per bind address, all bound to
//! the same port with SO_REUSEPORT, so the kernel spreads accepted connections over
//! the shards without any shared accept queue or hand-off between threads.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// A TCP socket for `addr` with SO_REUSEADDR (and IPV6_V6ONLY for IPv6, so
/// [::1] and 127.0.0.1 are bound separately and explicitly).
fn tcp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Binds a non-blocking listener with SO_REUSEADDR and SO_REUSEPORT set.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = tcp_socket(addr)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A blocking listener on `addr` (no SO_REUSEPORT: one per address), IPv6
/// only for an IPv6 address, so `0.0.0.0` and `::` can both be bound: the
/// HTTP servers' listeners.
pub fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = tcp_socket(addr)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Fails if something already listens on `addr`. SO_REUSEPORT would otherwise let
/// a second broker bind the same port and silently take a share of the clients;
/// a probe bound without it gets EADDRINUSE instead.
pub fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    tcp_socket(addr)?.bind(&addr.into())
}
