//! Coarse deadlines for reads that may wait long (idle keep-alive HTTP
//! connections, slow request heads): one slab entry per waiting reader,
//! expired by the shard's 100 ms housekeeping tick, instead of a timer per
//! read. A read that completes at once never touches the table.

use slab::Slab;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

#[derive(Default)]
pub struct Deadlines {
    entries: RefCell<Slab<Entry>>,
}

impl Deadlines {
    /// Wakes every waiter whose deadline has passed (called by the tick).
    pub fn expire_due(&self, now: Instant) {
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if !e.expired && now >= e.at {
                e.expired = true;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// Runs `fut` to completion, or gives up (`None`) once `timeout` has
    /// passed, give or take the tick.
    pub fn within<F: Future>(&self, timeout: Duration, fut: F) -> Within<'_, F> {
        Within {
            deadlines: self,
            timeout,
            fut: Box::pin(fut),
            entry: None,
        }
    }
}

pub struct Within<'a, F> {
    deadlines: &'a Deadlines,
    timeout: Duration,
    fut: Pin<Box<F>>,
    entry: Option<usize>,
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        let mut entries = self.deadlines.entries.borrow_mut();
        match self.entry {
            None => {
                let at = Instant::now() + self.timeout;
                let key = entries.insert(Entry {
                    at,
                    waker: Some(cx.waker().clone()),
                    expired: false,
                });
                drop(entries);
                self.entry = Some(key);
                Poll::Pending
            }
            Some(key) if entries[key].expired => Poll::Ready(None),
            Some(key) => {
                entries[key].waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<F> Drop for Within<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.entry {
            self.deadlines.entries.borrow_mut().remove(key);
        }
    }
}
