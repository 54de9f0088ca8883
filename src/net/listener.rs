//! The per-shard listener: every shard binds the same address with
//! SO_REUSEPORT and the kernel spreads new connections across them.

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

fn reuseport_socket(addr: SocketAddr) -> io::Result<RawSocket> {
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds (without listening) to find the port the shards will share when the
/// configured port is 0. Keep the returned socket alive until every shard has
/// bound, so the port stays reserved for this process.
pub fn probe_port(host: &str, port: u16) -> io::Result<(SocketAddr, RawSocket)> {
    let socket = reuseport_socket(resolve(host, port)?)?;
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
    let socket = reuseport_socket(addr)?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    // SAFETY: the fd comes from a socket we own and hand over whole.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) };
    Ok(Listener(listener))
}

impl Listener {
    /// Waits for the next connection; Nagle is turned off on it.
    pub async fn accept(&self) -> io::Result<Socket> {
        let stream = self.0.accept().await.map_err(io::Error::from)?;
        let _ = stream.set_nodelay(true);
        Ok(Socket::new(stream))
    }
}
