//! The server as a process: everything that ties the layers together and
//! nothing else. Start-up builds the process-wide services and one Pusher
//! [`Shard`](crate::pusher::shard::Shard) per core on the runtime, each
//! core accepts on its own listener and hands sockets to the HTTP server;
//! shutdown waits for every shard to drain.

mod accept;
mod start;

pub use start::run;
