//! Client events (`client-*`): relayed by the server to the other subscribers
//! of a private or presence channel, when the app allows them.
//! Every refusal is a `pusher:error` 4301 that says why; the connection stays.
//! A relayed event is also reported to the app's `client_event` webhooks.

use super::shard::Shard;
use super::webhook_events;
use crate::apps::webhook::EventKind;
use crate::channel_name::{ChannelClass, ChannelKind};
use crate::pusher::broadcast::{publish_now, Publication};
use crate::pusher::conns::ConnKey;
use crate::pusher::delivery::Source;
use crate::pusher::messages;
use crate::pusher::tap::{excerpt, TapEvent, What};
use crate::socket_id::SocketId;
use crate::webhooks::WebhookEvent;

const REJECTED: u16 = 4301;

/// Handles a `client-` event from connection `key`.
pub fn relay(
    shard: &Shard,
    key: ConnKey,
    socket: SocketId,
    event: &str,
    channel: Option<&str>,
    data: &str,
) {
    match check(shard, key, event, channel, data) {
        Err(why) => shard.conns.borrow_mut().reply(
            key,
            &messages::error(
                Some(REJECTED),
                &format!("Client event {event} rejected: {why}"),
            ),
        ),
        Ok((app, channel, user_id)) => {
            let frame = messages::client_event(event, channel, data, user_id.as_deref());
            shard.tap.note(|| {
                let what = What::ClientEvent {
                    event: event.into(),
                    bytes: data.len(),
                    data: excerpt(data),
                    user_id: user_id.clone(),
                };
                TapEvent::new(app, what).on(channel).socket(Some(socket))
            });
            if webhook_events::wanted(shard, app, EventKind::ClientEvent) {
                webhook_events::emit(
                    shard,
                    app,
                    WebhookEvent::ClientEvent {
                        channel: channel.into(),
                        event: event.into(),
                        data: webhook_events::client_data(data),
                        socket_id: socket.to_string().into(),
                        user_id: user_id.clone(),
                    },
                );
            }
            publish_now(
                shard,
                Publication::one(
                    app,
                    channel.into(),
                    frame,
                    Some(socket),
                    Source::client(socket),
                ),
            );
        }
    }
}

fn check<'a>(
    shard: &Shard,
    key: ConnKey,
    event: &str,
    channel: Option<&'a str>,
    data: &str,
) -> Result<(crate::apps::AppIdx, &'a str, Option<Box<str>>), String> {
    let now = shard.now();
    let mut conns = shard.conns.borrow_mut();
    let Some(conn) = conns.get_mut(key) else {
        return Err("connection is closing".into());
    };
    let app = shard.apps.get(conn.app);
    if !app.enable_client_messages {
        return Err("client events are not enabled for this app".into());
    }
    let Some(channel) = channel else {
        return Err("a client event needs a `channel`".into());
    };
    match ChannelClass::of(channel).kind {
        ChannelKind::Private | ChannelKind::Presence => {}
        ChannelKind::PrivateEncrypted => {
            return Err("client events are not supported on encrypted channels".into())
        }
        _ => return Err(format!("{channel} is not a private or presence channel")),
    }
    let channels = shard.channels.borrow();
    let Some(id) = channels
        .find(conn.app, channel)
        .filter(|&id| channels.is_member(id, key))
    else {
        return Err(format!("this connection is not subscribed to {channel}"));
    };
    if event.len() > app.limits.max_event_name_length {
        return Err(format!(
            "event name is longer than {} characters",
            app.limits.max_event_name_length
        ));
    }
    if data.len() > app.limits.max_event_payload_bytes {
        return Err(format!(
            "data is larger than {} KB",
            app.limits.max_event_payload_bytes / 1024
        ));
    }
    let per_second = app.limits.max_client_events_per_second;
    let user_id = channels.presence_user(id, key).map(Box::from);
    drop(channels);
    let extra = conn.extra_mut();
    if extra.events_second != now {
        extra.events_second = now;
        extra.events_in_second = 0;
    }
    if extra.events_in_second >= per_second {
        return Err(format!("more than {per_second} client events per second"));
    }
    extra.events_in_second += 1;
    Ok((conn.app, channel, user_id))
}
