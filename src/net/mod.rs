//! Sockets: the per-shard SO_REUSEPORT listener, the connected [`Socket`],
//! and the [`Stream`] over it, plain or TLS.
//!
//! Together with `runtime/`, the only place glommio's types appear. A
//! [`Socket`] exposes just what the HTTP and WebSocket layers need: polled
//! reads, a vectored non-blocking write that sends every queued frame of a
//! connection in one syscall, and a way to wait until the socket is writable.

mod listener;
mod socket;
mod tls;

pub use listener::{bind_reuseport, bind_single, probe_port, BoundListener, Listener};
pub use socket::{send_vectored, Socket};
pub use tls::{Stream, TlsAcceptor, TlsIdentity};
