//! TLS on the main port (`wss://`, `https://`), with rustls driven by hand
//! over the shard's own sockets.
//!
//! [`TlsIdentity`] is the certificate chain and key, read and checked once
//! at startup (a bad file stops the server with a message naming it). Each
//! shard builds its own [`TlsAcceptor`] from it, so the TLS session cache is
//! per shard and nothing mutable is shared between cores.
//!
//! [`Stream`] is what the HTTP and WebSocket layers read and write: a plain
//! [`Socket`] or a [`TlsSocket`]. A plain stream lets the shard's flusher
//! write straight to its file descriptor; a TLS stream encrypts per
//! connection, so its frames are written by the connection's own task
//! ([`Stream::direct_fd`] is `None`). Ciphertext that rustls produced but the
//! socket did not take yet is [`Stream::has_pending_output`] and is written
//! before anything else.

use super::socket::{send_vectored, Socket};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Ciphertext rustls may hold for one connection before writes report a
/// full socket (back-pressure to the connection's queue).
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// The server's certificate chain and private key, parsed and checked.
#[derive(Debug)]
pub struct TlsIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1) and checks that rustls accepts them together.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, String> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "TLS certificate {}: no PEM CERTIFICATE block in the file",
                cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("TLS key {}: {e}", key.display()))?;
        let identity = TlsIdentity { certs, key };
        identity.acceptor().map_err(|e| {
            format!(
                "TLS certificate {} and key do not work together: {e}",
                cert.display()
            )
        })?;
        Ok(identity)
    }

    /// A shard's own acceptor (its own session cache).
    pub fn acceptor(&self) -> Result<TlsAcceptor, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor(Arc::new(config)))
    }
}

/// Accepts TLS connections for one shard.
#[derive(Clone)]
pub struct TlsAcceptor(Arc<rustls::ServerConfig>);

impl TlsAcceptor {
    /// Runs the TLS handshake on a freshly accepted socket. The caller
    /// bounds the time it may take.
    pub async fn accept(&self, socket: Socket) -> io::Result<Stream> {
        let mut tls = ServerConnection::new(self.0.clone()).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let mut stream = TlsSocket { socket, tls };
        while stream.tls.is_handshaking() {
            if stream.tls.wants_write() {
                stream.write_out().await?;
                continue;
            }
            let n = futures_lite::future::poll_fn(|cx| stream.poll_read_tls(cx)).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        stream.write_out().await?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// A connection's byte stream, plain or TLS.
pub enum Stream {
    Plain(Socket),
    Tls(Box<TlsSocket>),
}

/// A socket with its rustls server connection.
pub struct TlsSocket {
    socket: Socket,
    tls: ServerConnection,
}

/// `io::Read` over a socket for rustls: a read that would wait registers
/// the task's waker and reports `WouldBlock`.
struct PollReader<'a, 'b> {
    socket: &'a mut Socket,
    cx: &'a mut Context<'b>,
}

impl Read for PollReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.socket.poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// `io::Write` over a socket for rustls, waiting like [`PollReader`].
struct PollWriter<'a, 'b> {
    socket: &'a mut Socket,
    cx: &'a mut Context<'b>,
}

impl Write for PollWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.socket.poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `io::Write` as one non-blocking `sendmsg`, registering nothing.
struct NowWriter(i32);

impl Write for NowWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSocket {
    /// Reads ciphertext once and processes it; `Ok(0)` at end of stream.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut reader = PollReader {
            socket: &mut self.socket,
            cx,
        };
        let n = match self.tls.read_tls(&mut reader) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the peer why (an alert), as far as the socket takes it.
            let _ = self.write_now();
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.tls.wants_write() {
                // Alerts or key updates rustls wants to send.
                let _ = self.write_now();
            }
            match self.poll_read_tls(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(_)) => {}
                other => return other,
            }
        }
    }

    /// Writes pending ciphertext without waiting; `WouldBlock` when the
    /// socket is full.
    fn write_now(&mut self) -> io::Result<()> {
        let mut out = NowWriter(self.socket.raw_fd());
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out)?;
        }
        Ok(())
    }

    /// Writes pending ciphertext, waiting for room (registers the waker).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut out = PollWriter {
                socket: &mut self.socket,
                cx,
            };
            match self.tls.write_tls(&mut out) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    async fn write_out(&mut self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Encrypts what rustls takes of `slices` and sends what the socket
    /// takes; `WouldBlock` when earlier ciphertext is still waiting.
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_now()?;
        let n = self.tls.writer().write_vectored(slices)?;
        if n == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.write_now() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        Ok(n)
    }
}

impl Stream {
    /// Reads what is available into `buf`; `Ok(0)` means the peer closed.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Plain(s) => s.poll_read(cx, buf),
            Stream::Tls(t) => t.poll_read(cx, buf),
        }
    }

    /// Reads into `buf` (async convenience for request/response code).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(t) => {
                let mut rest = buf;
                while !rest.is_empty() {
                    let n = t.tls.writer().write(rest)?;
                    rest = &rest[n..];
                    t.write_out().await?;
                }
                t.write_out().await
            }
        }
    }

    /// One non-blocking write of the slices (encrypted first on TLS);
    /// `WouldBlock` when the socket is full.
    pub fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_write_vectored(slices),
            Stream::Tls(t) => t.try_write_vectored(slices),
        }
    }

    /// After `try_write_vectored` reported a full socket: waits for room
    /// (the task's waker is registered while `Pending`) and then writes.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            // glommio may write part of the first slice right away.
            Stream::Plain(s) => s.poll_write(cx, &slices[0]),
            Stream::Tls(t) => loop {
                match t.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                match t.try_write_vectored(slices) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return Poll::Ready(other),
                }
            },
        }
    }

    /// TLS output rustls still holds (the queue is not on the wire yet).
    pub fn has_pending_output(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.tls.wants_write(),
        }
    }

    /// Writes held TLS output, waiting for room while `Pending`.
    pub fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(t) => t.poll_write_out(cx),
        }
    }

    /// The descriptor the shard's flusher may write plaintext frames to:
    /// `None` for TLS, whose frames the connection's task encrypts.
    pub fn direct_fd(&self) -> Option<i32> {
        match self {
            Stream::Plain(s) => Some(s.raw_fd()),
            Stream::Tls(_) => None,
        }
    }

    /// Half-closes the write side (after TLS close_notify on TLS).
    pub fn shutdown_write(&mut self) {
        match self {
            Stream::Plain(s) => s.shutdown_write(),
            Stream::Tls(t) => {
                t.tls.send_close_notify();
                let _ = t.write_now();
                t.socket.shutdown_write();
            }
        }
    }
}
