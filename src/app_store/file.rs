//! The file store: the config file's `[[apps]]`, read again on SIGHUP.
//!
//! A thread waits for SIGHUP and then reads the file with the start-up
//! validation (`config::apps_from_file`). A file that cannot be read or
//! does not validate is refused with the reason in the log, and the apps
//! stay as they were; other settings in the file need a restart.

use super::Publisher;
use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::sync::Arc;

/// Starts the SIGHUP thread; returns what stops it.
pub fn start(
    path: Option<PathBuf>,
    publisher: Publisher,
    webhooks: bool,
) -> Result<super::StopStore, String> {
    let mut signals =
        Signals::new([SIGHUP]).map_err(|e| format!("app store: cannot watch SIGHUP: {e}"))?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("app-store".into())
        .spawn(move || {
            for _ in signals.forever() {
                reload(path.as_deref(), &publisher, webhooks);
            }
        })
        .map_err(|e| format!("app store: cannot start its thread: {e}"))?;
    Ok(Box::new(move || {
        handle.close();
        let _ = thread.join();
    }))
}

/// Reads the file's apps again and publishes them, or says why not.
fn reload(path: Option<&std::path::Path>, publisher: &Publisher, webhooks: bool) {
    let Some(path) = path else {
        log::warn!("SIGHUP: no config file (--config) to reload apps from; apps unchanged");
        return;
    };
    let apps = match crate::config::apps_from_file(path, &|k| std::env::var(k).ok()) {
        Ok(apps) => apps,
        Err(e) => {
            log::error!("SIGHUP: {} refused, apps unchanged: {e}", path.display());
            return;
        }
    };
    let old = publisher.current();
    let (next, refused) = old.replaced(apps);
    for why in refused {
        log::error!("SIGHUP: {why}; that app is unchanged");
    }
    if !webhooks && next.any_webhooks() && !old.any_webhooks() {
        log::warn!(
            "SIGHUP: an app now has webhooks, but the webhook sender was not started \
             with this server (no app had webhooks): restart to deliver them"
        );
    }
    log::info!(
        "SIGHUP: apps reloaded from {}: {}",
        path.display(),
        super::describe_change(&old, &next)
    );
    publisher.publish(Arc::new(next));
}
