//! The shard's flushers: tasks that write every connection whose queue
//! has frames, straight to its socket.
//!
//! Delivery only queues frames and marks the connection in the shard's flush
//! list; the flusher runs after the tasks that were already ready (more HTTP
//! requests, mailbox messages), so frames that pile up in the meantime leave
//! in one `sendmsg` per connection, and no per-connection task is woken for
//! the common case. A full socket hands the connection over to its own task,
//! which waits for room.
//!
//! There are two: one for connections marked by ordinary delivery, and one,
//! in the bulk task queue, for those marked by bulk delivery to huge
//! channels (`pusher::delivery`), so the first never waits behind the
//! thousands of sockets of the second.

use super::shard::Shard;
use crate::pusher::conns::FlushList;
use crate::runtime::yield_now;
use std::rc::Rc;
use std::task::Poll;

/// Connections written between two chances for other tasks to run.
const BATCH: usize = 256;

/// Which of the shard's flush lists a flusher serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Ordinary,
    Bulk,
}

/// Runs a flusher for the life of the shard.
pub async fn run(shard: Rc<Shard>, lane: Lane) {
    let mut keys = Vec::new();
    loop {
        futures_lite::future::poll_fn(|cx| {
            let mut conns = shard.conns.borrow_mut();
            let FlushList {
                keys: ordinary,
                waker,
                bulk,
                bulk_waker,
                ..
            } = &mut conns.flush;
            let (list, waker) = match lane {
                Lane::Ordinary => (ordinary, waker),
                Lane::Bulk => (bulk, bulk_waker),
            };
            if list.is_empty() {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                *waker = None;
                std::mem::swap(&mut keys, list);
                Poll::Ready(())
            }
        })
        .await;
        for batch in keys.chunks(BATCH) {
            {
                let mut conns = shard.conns.borrow_mut();
                for &key in batch {
                    conns.flush_direct(key);
                }
            }
            if batch.len() == BATCH {
                yield_now().await;
            }
        }
        keys.clear();
    }
}
