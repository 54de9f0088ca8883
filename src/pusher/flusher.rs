//! The shard's flusher: one task that writes every connection whose queue
//! has frames, straight to its socket.
//!
//! Delivery only queues frames and marks the connection in the shard's flush
//! list; the flusher runs after the tasks that were already ready (more HTTP
//! requests, mailbox messages), so frames that pile up in the meantime leave
//! in one `sendmsg` per connection, and no per-connection task is woken for
//! the common case. A full socket hands the connection over to its own task,
//! which waits for room.

use crate::runtime::{yield_now, Shard};
use std::rc::Rc;
use std::task::Poll;

/// Connections written between two chances for other tasks to run.
const BATCH: usize = 256;

/// Runs the flusher for the life of the shard.
pub async fn run(shard: Rc<Shard>) {
    let mut keys = Vec::new();
    loop {
        futures_lite::future::poll_fn(|cx| {
            let mut conns = shard.conns.borrow_mut();
            if conns.flush.keys.is_empty() {
                conns.flush.waker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                conns.flush.waker = None;
                std::mem::swap(&mut keys, &mut conns.flush.keys);
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
