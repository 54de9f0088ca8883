//! The thread a database store runs on: a current-thread tokio runtime
//! beside the shards (the drivers are tokio clients), and the way to stop it.
//!
//! Both database drivers start the same way: read the table once on the
//! caller's thread (a bad table stops the start), then follow it here
//! until [`StopStore`] is called.

use super::StopStore;
use std::future::Future;
use tokio::sync::oneshot;

/// The runtime a database driver runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("app store: cannot start its runtime: {e}"))
}

/// Runs `follow` on `runtime` in the "app-store" thread until it ends or
/// the returned stop is called.
pub fn spawn(
    runtime: tokio::runtime::Runtime,
    follow: impl Future<Output = ()> + Send + 'static,
) -> Result<StopStore, String> {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("app-store".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = follow => {}
                    _ = stop_rx => {}
                }
            })
        })
        .map_err(|e| format!("app store: cannot start its thread: {e}"))?;
    Ok(Box::new(move || {
        let _ = stop_tx.send(());
        let _ = thread.join();
    }))
}
