//! The reaper: teardown of closed connections, deferred to the shard's bulk
//! task queue and done a slice at a time.
//!
//! When thousands of clients drop at once (a network blip, a deploy of the
//! page they were on), each one's teardown is small (leave its channels,
//! give back its quota) but together they are a lot of
//! work arriving at one instant. The connection's own task only marks it
//! gone (and closes its socket) and hands the rest here; the reaper runs
//! [`SLICE`] teardowns, then
//! lets other tasks run, in the bulk queue, so the clients still connected
//! are answered first.
//!
//! The queue is bounded by the connections the shard admitted: each holds
//! at most one entry, and its slot and quota stay taken until its entry has
//! run.

use super::tasks::yield_now;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Teardowns run before the reaper lets other tasks run.
const SLICE: usize = 64;

type Job = Box<dyn FnOnce()>;

#[derive(Default)]
pub struct Reaper {
    jobs: RefCell<VecDeque<Job>>,
    waker: RefCell<Option<Waker>>,
}

impl Reaper {
    /// Queues a teardown.
    pub fn defer(&self, job: impl FnOnce() + 'static) {
        self.jobs.borrow_mut().push_back(Box::new(job));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Teardowns waiting (metrics).
    pub fn len(&self) -> usize {
        self.jobs.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.borrow().is_empty()
    }

    /// Runs queued teardowns for the life of the shard (in the bulk queue).
    pub async fn run(self: Rc<Self>) {
        loop {
            futures_lite::future::poll_fn(|cx| {
                if self.jobs.borrow().is_empty() {
                    *self.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            for _ in 0..SLICE {
                // Taken out first: a job may queue another.
                let job = self.jobs.borrow_mut().pop_front();
                match job {
                    Some(job) => job(),
                    None => break,
                }
            }
            yield_now().await;
        }
    }
}
