//! A connected TCP socket owned by one shard.

use glommio::net::TcpStream;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct Socket {
    stream: TcpStream,
}

impl Socket {
    pub(super) fn new(stream: TcpStream) -> Socket {
        Socket { stream }
    }

    /// Reads what is available into `buf`; `Ok(0)` means the peer closed.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        futures_lite::AsyncRead::poll_read(Pin::new(&mut self.stream), cx, buf)
    }

    /// Writes part of `buf`, waiting for the socket to become writable.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut self.stream), cx, buf)
    }

    /// One non-blocking `sendmsg` of all the slices; `WouldBlock` when the
    /// socket buffer is full. Never raises SIGPIPE.
    pub fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.stream.as_raw_fd(), slices)
    }

    /// The address of the other end; `None` when it cannot be read (the
    /// connection is already gone).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.stream.peer_addr().ok().map(|a| a.ip())
    }

    /// The socket's file descriptor (for [`send_vectored`] by the flusher).
    pub fn raw_fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// Reads into `buf` (async convenience for request/response code).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = futures_lite::future::poll_fn(|cx| self.poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Half-closes the write side (FIN after the queued bytes).
    pub fn shutdown_write(&self) {
        // SAFETY: plain syscall on our own fd.
        unsafe {
            libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_WR);
        }
    }
}

/// One non-blocking `sendmsg` of all the slices to `fd`; `WouldBlock` when
/// the socket buffer is full. Never raises SIGPIPE.
pub fn send_vectored(fd: i32, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; the iovecs point into live slices
    // (IoSlice is ABI-compatible with iovec) for the duration of the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
