//! WebSocket: the upgrade handshake, frame encoding and decoding, and the
//! per-connection task that reads client frames and writes queued frames.

pub mod conn;
pub mod frame;
pub mod handshake;
