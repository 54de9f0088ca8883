//! Accepting sockets on a shard's listener and handing each to the HTTP
//! server (which upgrades WebSocket requests), until the shard drains.

use crate::http::Site;
use crate::net::Listener;
use crate::pusher::shard::Shard;
use crate::runtime::{sleep, spawn};
use std::rc::Rc;
use std::time::Duration;

/// Accepts connections on `listener` for `site` until the shard starts
/// draining; dropping the listener then stops accepting.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener, site: Site) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.draining.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(socket)) => {
                let shard = shard.clone();
                spawn(async move { crate::http::serve(shard, socket, site).await });
            }
            Some(Err(e)) => {
                crate::warn_limited!("shard {}: accept failed: {e}", shard.id);
                // Out of file descriptors or similar: back off briefly.
                sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
