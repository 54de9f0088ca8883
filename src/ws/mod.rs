//! WebSocket on the wire: the upgrade handshake and frame encoding and
//! decoding. The task that runs a connection is the protocol's
//! (`pusher::connection`).

pub mod frame;
pub mod handshake;
