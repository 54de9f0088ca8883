//! A client's session on its shard: what happens when a connection opens,
//! when it sends a message, and when it goes away.

use crate::apps::AppIdx;
use crate::pusher::channel::{validate_name, ChannelClass, ChannelKind};
use crate::pusher::conns::ConnKey;
use crate::pusher::inbound::{self, ClientMessage};
use crate::pusher::messages;
use crate::pusher::socket_id::SocketId;
use crate::runtime::Shard;
use std::rc::Rc;

/// Registers a new connection and queues `pusher:connection_established`.
pub fn open(shard: &Shard, app: AppIdx) -> (ConnKey, SocketId) {
    let now = shard.now();
    let mut conns = shard.conns.borrow_mut();
    let (key, serial) = conns.insert(app, now);
    let id = SocketId {
        nonce: shard.nonce,
        shard: shard.id,
        slot: key,
        serial,
    };
    conns.reply(
        key,
        &messages::connection_established(id, shard.config.activity_timeout),
    );
    (key, id)
}

/// Removes a connection: leaves its channels and frees its slot and quota.
pub fn close(shard: &Rc<Shard>, key: ConnKey) {
    let Some(conn) = shard.conns.borrow_mut().remove(key) else {
        return;
    };
    let mut channels = shard.channels.borrow_mut();
    for id in conn.subs {
        channels.unsubscribe(id, key);
    }
    shard.release_connection(conn.app);
}

/// Handles one text message from a client.
pub fn handle_text(shard: &Shard, key: ConnKey, text: &mut [u8]) {
    let message = match inbound::parse(text) {
        Ok(m) => m,
        Err(why) => return reply_error(shard, key, None, &why),
    };
    match message {
        ClientMessage::Ping => shard.conns.borrow_mut().reply(key, &messages::pong()),
        ClientMessage::Pong => {}
        ClientMessage::Subscribe { channel, .. } => subscribe(shard, key, &channel),
        ClientMessage::Unsubscribe { channel } => unsubscribe(shard, key, &channel),
        ClientMessage::ClientEvent { event, .. } => reply_error(
            shard,
            key,
            Some(4301),
            &format!("Client event {event} rejected: client events are not enabled on this server"),
        ),
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

fn subscribe(shard: &Shard, key: ConnKey, channel: &str) {
    let Some(app) = shard.conns.borrow().get(key).map(|c| c.app) else {
        return;
    };
    let limits = &shard.apps.get(app).limits;
    let refuse = |kind: &str, why: &str, status: u16| {
        shard.conns.borrow_mut().reply(
            key,
            &messages::subscription_error(channel, kind, why, status),
        );
    };
    if let Err(e) = validate_name(channel, limits.max_channel_name_length) {
        return refuse("InvalidChannel", &format!("Invalid channel name: {e}"), 400);
    }
    let class = ChannelClass::of(channel);
    if class.kind != ChannelKind::Public {
        return refuse(
            "UnsupportedChannel",
            &format!("{channel}: only public channels are served by this version"),
            501,
        );
    }
    let (id, added) = shard.channels.borrow_mut().subscribe(app, channel, key);
    let mut conns = shard.conns.borrow_mut();
    if added {
        if let Some(conn) = conns.get_mut(key) {
            conn.subs.push(id);
        }
    }
    conns.reply(key, &messages::subscription_succeeded(channel));
}

fn unsubscribe(shard: &Shard, key: ConnKey, channel: &str) {
    let mut conns = shard.conns.borrow_mut();
    let Some(conn) = conns.get_mut(key) else {
        return;
    };
    let mut channels = shard.channels.borrow_mut();
    let Some(id) = channels.find(conn.app, channel) else {
        return;
    };
    if channels.unsubscribe(id, key) {
        if let Some(pos) = conn.subs.iter().position(|&s| s == id) {
            conn.subs.swap_remove(pos);
        }
    }
}
