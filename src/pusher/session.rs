//! A client's session on its shard: what happens when a connection opens,
//! when it sends a message, and when it goes away.

use super::admission::Admitted;
use super::shard::Shard;
use super::shard_msg::ShardMsg;
use crate::apps::AppIdx;
use crate::pusher::conns::{ConnKey, NO_FD};
use crate::pusher::inbound::{self, ClientMessage};
use crate::pusher::owned::owner_of;
use crate::pusher::tap::{TapEvent, What};
use crate::pusher::{client_event, messages, signin, subscribe};
use crate::socket_id::SocketId;
use std::rc::Rc;

/// Registers a new connection and queues `pusher:connection_established`.
/// `direct_fd` is the socket the shard's flusher may write to (`None` for
/// TLS, whose task writes its own frames); `held` is what its admission
/// took (given back by [`finish_close`]).
pub fn open(
    shard: &Shard,
    app: AppIdx,
    direct_fd: Option<i32>,
    held: Admitted,
) -> (ConnKey, SocketId) {
    let now = shard.now();
    let mut conns = shard.conns.borrow_mut();
    let (key, serial) = conns.insert(app, direct_fd.unwrap_or(NO_FD), now);
    shard.counters.opened();
    let id = SocketId {
        nonce: shard.nonce,
        shard: shard.id,
        slot: key,
        serial,
    };
    let app_config = shard.apps.get(app);
    if app_config.enable_user_authentication {
        if let Some(conn) = conns.get_mut(key) {
            conn.extra_mut().sign_in_by = Some(now + app_config.user_authentication_timeout);
        }
    }
    if let Some(conn) = conns.get_mut(key) {
        conn.app_slot = held.app_slot;
        if held.ip.is_some() {
            conn.extra_mut().ip = held.ip;
        }
    }
    conns.reply(
        key,
        &messages::connection_established(id, shard.config.activity_timeout),
    );
    shard
        .tap
        .note(|| TapEvent::new(app, What::ConnectionOpened).socket(Some(id)));
    (key, id)
}

/// The socket id of a local connection.
fn socket_of(shard: &Shard, key: ConnKey) -> Option<SocketId> {
    let conns = shard.conns.borrow();
    let conn = conns.get(key)?;
    Some(SocketId {
        nonce: shard.nonce,
        shard: shard.id,
        slot: key,
        serial: conn.serial,
    })
}

/// Channels a closing connection leaves before it lets other tasks run.
const LEAVE_SLICE: usize = 256;

/// Removes a connection whose socket is gone: leaves its channels
/// (presence members and counts included), signs its user out, and frees
/// its slot and quota. A connection with many channels leaves them in
/// slices of [`LEAVE_SLICE`] from a task of its own that yields between
/// slices, so one client's departure never holds up the shard; its slot
/// stays taken ([`Phase::Gone`]) until it has left them all, so no new
/// connection can inherit its subscriptions.
pub fn close(shard: &Rc<Shard>, key: ConnKey) {
    let Some(socket) = socket_of(shard, key) else {
        return;
    };
    let subs = {
        let mut conns = shard.conns.borrow_mut();
        conns.retire(key);
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        // 1006: the socket went away without a close frame.
        let code = conn.close_code.unwrap_or(1006);
        shard.counters.closed(code);
        let app = conn.app;
        shard
            .tap
            .note(|| TapEvent::new(app, What::ConnectionClosed { code }).socket(Some(socket)));
        // Joins still waiting for their owner are undone by `on_joined`.
        if let Some(extra) = conn.extra.as_mut() {
            extra.pending = Vec::new();
        }
        conn.subs.len()
    };
    if subs <= LEAVE_SLICE {
        subscribe::leave_some(shard, key, LEAVE_SLICE);
        finish_close(shard, key, socket);
        return;
    }
    let shard = shard.clone();
    crate::runtime::spawn_bulk(async move {
        while subscribe::leave_some(&shard, key, LEAVE_SLICE) > 0 {
            crate::runtime::yield_now().await;
        }
        finish_close(&shard, key, socket);
    });
}

/// The last step of [`close`], once every channel is left.
fn finish_close(shard: &Shard, key: ConnKey, socket: SocketId) {
    let Some(conn) = shard.conns.borrow_mut().remove(key) else {
        return;
    };
    let mut ip = None;
    if let Some(mut extra) = conn.extra {
        ip = extra.ip.take();
        if let Some(user_id) = extra.user_id {
            let owner = owner_of(conn.app, &user_id, shard.count);
            shard.post(
                owner,
                ShardMsg::UserPresence {
                    app: conn.app,
                    user_id,
                    online: false,
                },
            );
            if !extra.watchlist.is_empty() {
                signin::post_watch(shard, conn.app, socket, extra.watchlist, false);
            }
        }
    }
    let held = Admitted {
        ip,
        app_slot: conn.app_slot,
    };
    shard.release_connection(conn.app, held);
}

/// Handles one text message from a client.
pub fn handle_text(shard: &Rc<Shard>, key: ConnKey, text: &mut [u8]) {
    let message = match inbound::parse(text) {
        Ok(m) => m,
        Err(why) => return reply_error(shard, key, None, &why),
    };
    let Some(socket) = socket_of(shard, key) else {
        return;
    };
    match message {
        ClientMessage::Ping => shard.conns.borrow_mut().reply(key, &messages::pong()),
        ClientMessage::Pong => {}
        ClientMessage::Subscribe {
            channel,
            auth,
            channel_data,
        } => subscribe::subscribe(
            shard,
            key,
            socket,
            &channel,
            auth.as_deref(),
            channel_data.as_deref(),
        ),
        ClientMessage::Unsubscribe { channel } => subscribe::unsubscribe(shard, key, &channel),
        ClientMessage::Signin { auth, user_data } => {
            signin::signin(shard, key, socket, auth.as_deref(), user_data.as_deref())
        }
        ClientMessage::ClientEvent {
            event,
            channel,
            data,
        } => client_event::relay(shard, key, socket, &event, channel.as_deref(), &data),
        ClientMessage::Unknown { event } => {
            reply_error(shard, key, None, &format!("Unknown event {event}"))
        }
    }
}

fn reply_error(shard: &Shard, key: ConnKey, code: Option<u16>, message: &str) {
    shard
        .conns
        .borrow_mut()
        .reply(key, &messages::error(code, message));
}

/// Closes every local connection signed in as `user_id` with 4009.
pub fn terminate_user(shard: &Shard, app: AppIdx, user_id: &str) {
    let now = shard.now();
    let mut conns = shard.conns.borrow_mut();
    let keys: Vec<ConnKey> = conns.of_user(app, user_id).to_vec();
    let why = crate::errors::ClientError::Unauthorized(format!(
        "Connections of user {user_id} were terminated by the app's server"
    ));
    for key in keys {
        conns.close(key, &why, now);
    }
}
