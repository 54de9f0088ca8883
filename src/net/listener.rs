//! The per-shard listener: every shard binds the same address with
//! SO_REUSEPORT and the kernel spreads new connections across them.
//!
//! SO_REUSEPORT would also let a second server process join the group and
//! silently take a share of the connections. So before the shards bind,
//! [`probe_port`] binds the address once *without* it: any socket of
//! another process already listening there (with SO_REUSEPORT or not) makes
//! that bind fail with `AddrInUse`, and startup stops naming the address.

use super::socket::Socket;
use socket2::{Domain, Protocol, Socket as RawSocket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};

const BACKLOG: i32 = 4096;

fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")))
}

/// A bound TCP socket; SO_REUSEADDR (a restart may bind over connections
/// in TIME_WAIT), and SO_REUSEPORT only when `shared`.
fn bound_socket(addr: SocketAddr, shared: bool) -> io::Result<RawSocket> {
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds (without listening, without SO_REUSEPORT) to check that no other
/// process listens on the address (`AddrInUse` if one does) and to find
/// the port the shards will share when the configured port is 0. Keep the
/// returned socket alive until every shard has bound, so the port stays
/// reserved for this process.
pub fn probe_port(host: &str, port: u16) -> io::Result<(SocketAddr, RawSocket)> {
    let socket = bound_socket(resolve(host, port)?, false)?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))?;
    Ok((addr, socket))
}

/// A shard's listening socket.
pub struct Listener(glommio::net::TcpListener);

/// Binds `addr` with SO_REUSEPORT and starts listening.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<Listener> {
    let socket = bound_socket(addr, true)?;
    socket.listen(BACKLOG)?;
    Listener::adopt(socket)
}

/// A listening socket bound before the shards start (the metrics port,
/// served by one shard), movable to that shard's thread.
pub struct BoundListener(RawSocket);

/// Binds and listens on `host:port` (0 picks a free port) without
/// SO_REUSEPORT, so a port another process listens on fails with
/// `AddrInUse`; returns the address.
pub fn bind_single(host: &str, port: u16) -> io::Result<(SocketAddr, BoundListener)> {
    let socket = bound_socket(resolve(host, port)?, false)?;
    socket.listen(BACKLOG)?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))?;
    Ok((addr, BoundListener(socket)))
}

impl BoundListener {
    /// Hands the socket to the current shard's executor.
    pub fn into_listener(self) -> io::Result<Listener> {
        Listener::adopt(self.0)
    }
}

impl Listener {
    fn adopt(socket: RawSocket) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        // SAFETY: the fd comes from a socket we own and hand over whole.
        let listener = unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) };
        Ok(Listener(listener))
    }

    /// Waits for the next connection; Nagle is turned off on it.
    pub async fn accept(&self) -> io::Result<Socket> {
        let stream = self.0.accept().await.map_err(io::Error::from)?;
        let _ = stream.set_nodelay(true);
        Ok(Socket::new(stream))
    }
}
