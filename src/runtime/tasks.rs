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
