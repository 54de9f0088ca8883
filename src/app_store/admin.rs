//! Writes from the admin API (`http::admin`) to the store: the shard that
//! serves the request hands an [`AdminOp`] to the store thread through a
//! bounded queue ([`ADMIN_QUEUE`]; full: the request is refused with 503)
//! and waits for its answer. The store writes the row; the change then
//! reaches every shard like any other (NOTIFY, or an immediate read).
//! The file store has no writer: its [`AdminHandle`] refuses (409).

use crate::apps::App;

/// Admin writes queued to the store thread before more are refused.
pub const ADMIN_QUEUE: usize = 16;

/// One write.
#[derive(Debug)]
pub enum AdminOp {
    /// Insert a new app (the caller checked its id is free).
    Create(App),
    /// Write every column of an existing app.
    Replace(App),
    /// Delete the app with this id.
    Delete(String),
}

/// Why a write was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The store cannot be written (the file store).
    ReadOnly(String),
    /// The database refused the row (a key another app has...).
    Conflict(String),
    /// The store or its database is unavailable, or its queue is full.
    Unavailable(String),
}

pub type AdminReply = Result<(), AdminError>;

/// A write and where its answer goes.
pub struct AdminRequest {
    pub op: AdminOp,
    pub reply: flume::Sender<AdminReply>,
}

/// How the admin API reaches the store's writer (clone per shard).
#[derive(Clone)]
pub struct AdminHandle(Option<flume::Sender<AdminRequest>>);

impl AdminHandle {
    /// The file store's: every write refused.
    pub fn read_only() -> AdminHandle {
        AdminHandle(None)
    }

    /// A handle and the store thread's end of its queue.
    pub fn new() -> (AdminHandle, flume::Receiver<AdminRequest>) {
        let (tx, rx) = flume::bounded(ADMIN_QUEUE);
        (AdminHandle(Some(tx)), rx)
    }

    /// Queues `op`; the receiver of its answer (`Err` at once when refused).
    pub fn send(&self, op: AdminOp) -> Result<flume::Receiver<AdminReply>, AdminError> {
        let Some(tx) = &self.0 else {
            return Err(AdminError::ReadOnly(
                "the apps come from the config file (app_store.driver = \"file\"): edit it and send SIGHUP".into(),
            ));
        };
        let (reply, answer) = flume::bounded(1);
        tx.try_send(AdminRequest { op, reply })
            .map_err(|e| match e {
                flume::TrySendError::Full(_) => {
                    AdminError::Unavailable("too many admin writes in progress; retry".into())
                }
                flume::TrySendError::Disconnected(_) => {
                    AdminError::Unavailable("the app store has stopped".into())
                }
            })?;
        Ok(answer)
    }
}
