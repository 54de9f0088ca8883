//! The thread-per-core runtime: one pinned glommio executor per configured
//! CPU ([`start_cores`]) running the shards listed on that CPU, joined by a
//! full mesh of bounded lock-free mailboxes ([`Mesh`]; in-thread queues
//! between shards of one executor) that carry one message type chosen by
//! the layer above, plus what every core needs to run work fairly: task queues and
//! timers ([`spawn`], [`sleep`], [`Queue`]), coarse deadlines, the reaper
//! for teardown in slices, questions to other cores with a time limit
//! ([`Requests`]) and the allocator's housekeeping.
//!
//! This layer knows nothing of Pusher: no apps, channels or connections.
//! Everything glommio-specific lives here and in `net/`.

mod allocator;
mod boot;
mod deadlines;
pub mod env_check;
mod mailbox;
mod reaper;
mod requests;
mod tasks;

pub use allocator::{collect_thread_heap, COLLECT_EVERY_SECS};
pub use boot::{check_environment, start_cores, Ready, Seat};
pub use deadlines::Deadlines;
pub use mailbox::{Inbox, Mesh, MAILBOX_CAPACITY, OUTBOX_HIGH_WATER, OUTBOX_LOW_WATER};
pub use reaper::Reaper;
pub use requests::Requests;
pub use tasks::{sleep, spawn, spawn_bulk, spawn_in, yield_now, Queue, Signal};
