//! Small task helpers over glommio so other layers need not name it.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Runs `fut` on the current shard in the background.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// A task queue of the shard besides glommio's default one (which runs
/// accepts, HTTP requests, the flusher and the housekeeping tick, with 1000
/// shares). Shards on one executor share its queues. glommio gives each
/// queue with work a share of the time in proportion to its shares, in runs
/// that end at the executor's preemption tick; so no queue's backlog can
/// hold up another's for longer than one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The connections' own tasks (reading client messages): many of them
    /// wake at once when a crowd drops, and then they must not delay new
    /// connections and the HTTP API.
    Connections,
    /// Work that is large by nature (delivering to huge channels, writing
    /// their frames, tearing down closed connections): a tenth of the time
    /// when others have work.
    Bulk,
    /// The loops that take other shards' messages (and a shard's own): a
    /// queue of their own, so a shard's answer to another (a connection
    /// lease, a rate check) waits at most one run of whatever else is
    /// busy, not behind every task a flood of sockets put in the default
    /// queue.
    Mailboxes,
}

impl Queue {
    fn shares(self) -> usize {
        match self {
            Queue::Connections => 1000,
            Queue::Bulk => 100,
            Queue::Mailboxes => 1000,
        }
    }
}

thread_local! {
    /// This executor's queues, made on first use.
    static QUEUES: [std::cell::OnceCell<glommio::TaskQueueHandle>; 3] =
        const { [std::cell::OnceCell::new(), std::cell::OnceCell::new(), std::cell::OnceCell::new()] };
}

/// Runs `fut` on the current shard in the background, in `queue`.
pub fn spawn_in(queue: Queue, fut: impl Future<Output = ()> + 'static) {
    let handle = QUEUES.with(|q| {
        *q[queue as usize].get_or_init(|| {
            glommio::executor().create_task_queue(
                glommio::Shares::Static(queue.shares()),
                glommio::Latency::NotImportant,
                &format!("{queue:?}"),
            )
        })
    });
    match glommio::spawn_local_into(fut, handle) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => panic!("the {queue:?} task queue is gone: {e}"),
    }
}

/// Runs `fut` in the shard's bulk queue (see [`Queue::Bulk`]).
pub fn spawn_bulk(fut: impl Future<Output = ()> + 'static) {
    spawn_in(Queue::Bulk, fut)
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await
}

/// Lets other tasks run if this one has used its time slice.
pub async fn yield_now() {
    glommio::yield_if_needed().await
}

/// A one-shot, shard-local signal: [`Signal::raise`] wakes every
/// [`Signal::wait`]er, and later waits return at once.
#[derive(Clone, Default)]
pub struct Signal(Rc<RefCell<SignalState>>);

#[derive(Default)]
struct SignalState {
    raised: bool,
    waiters: Vec<Waker>,
}

impl Signal {
    pub fn raise(&self) {
        let waiters = {
            let mut s = self.0.borrow_mut();
            s.raised = true;
            std::mem::take(&mut s.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    pub fn is_raised(&self) -> bool {
        self.0.borrow().raised
    }

    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            let mut s = self.0.borrow_mut();
            if s.raised {
                Poll::Ready(())
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}
