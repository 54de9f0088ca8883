//! Questions to other shards that await an answer, with a time limit.
//!
//! A shard that asks another shard something (over the mesh) registers the
//! question here under a fresh id, posts it, and waits at most a given time
//! for the answer with that id. An answer that arrives after its asker gave
//! up is handed back to the caller of [`Requests::answer`], so whatever it
//! carries (slots lent, a count taken) can still be accounted for.
//!
//! # Invariants
//! - Ids are never reused while the process runs long enough to matter
//!   (u32 wraps after 4 billion questions), so a late answer cannot be
//!   taken for another question's.
//! - An entry lives exactly while its asker waits: it is removed when the
//!   answer is taken or the time runs out, so the map holds at most one
//!   entry per waiting task.

use super::tasks::sleep;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use std::time::Duration;

struct Waiting<R> {
    answer: Option<R>,
    waker: Option<Waker>,
}

/// The questions one shard has asked and not yet had answered.
pub struct Requests<R> {
    waiting: RefCell<FxHashMap<u32, Waiting<R>>>,
    next_id: Cell<u32>,
}

impl<R> Default for Requests<R> {
    fn default() -> Self {
        Requests {
            waiting: RefCell::new(FxHashMap::default()),
            next_id: Cell::new(0),
        }
    }
}

impl<R> Requests<R> {
    /// Registers a question, lets `post` send it under its id, and waits
    /// for the answer at most `limit`; `None` when none came in time.
    pub async fn ask(&self, limit: Duration, post: impl FnOnce(u32)) -> Option<R> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        self.waiting.borrow_mut().insert(
            id,
            Waiting {
                answer: None,
                waker: None,
            },
        );
        post(id);
        let answer = futures_lite::future::poll_fn(|cx| {
            let mut waiting = self.waiting.borrow_mut();
            let Some(slot) = waiting.get_mut(&id) else {
                return Poll::Ready(None);
            };
            match slot.answer.take() {
                Some(answer) => Poll::Ready(Some(answer)),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let expiry = async {
            sleep(limit).await;
            None
        };
        let answer = futures_lite::future::or(answer, expiry).await;
        self.waiting.borrow_mut().remove(&id);
        answer
    }

    /// Hands the answer to question `id` to its asker; gives it back when
    /// nobody waits for it any more (it came late).
    pub fn answer(&self, id: u32, answer: R) -> Result<(), R> {
        let mut waiting = self.waiting.borrow_mut();
        match waiting.get_mut(&id) {
            Some(slot) => {
                slot.answer = Some(answer);
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
                Ok(())
            }
            None => Err(answer),
        }
    }
}
