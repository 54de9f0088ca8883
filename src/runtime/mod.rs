//! The thread-per-core runtime: one pinned glommio executor per configured
//! CPU, each running one [`Shard`], joined by a full mesh of bounded
//! lock-free mailboxes that carry [`ShardMsg`] and nothing else.
//!
//! Everything glommio-specific lives here and in `net/`; the protocol layers
//! call [`spawn`], [`sleep`] and the [`Shard`] methods.

mod allocator;
mod boot;
mod deadlines;
pub mod env_check;
pub mod ip_quota;
mod mailbox;
mod quota;
mod reaper;
mod shard;
mod tasks;

pub use boot::run;
pub use deadlines::Deadlines;
pub use mailbox::{Quota, Reply, Request, ShardMsg};
/// Public for the `quota_leases` fuzz target (`tests/fuzz`), which plays
/// several shards' leases against one another without a runtime.
pub use quota::Quotas;
pub use reaper::Reaper;
pub use shard::{Shard, ShardId};
pub use tasks::{sleep, spawn, spawn_bulk, spawn_in, yield_now, Queue, Signal};
