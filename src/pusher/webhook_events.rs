//! Which webhook events a shard reports, and when.
//!
//! Events are decided where the truth is: occupancy and presence members on
//! the channel's owner shard (which sees the channel-wide totals), client
//! events on the sender's shard, cache misses on the cache's owner. The
//! owner holds vacated/removed events back for `delay_ms` (the owner
//! state's `DelayTable`), so a quick return suppresses both. Events go to
//! the sender thread through its bounded queue; a shard never waits on
//! delivery (see `webhooks`).

use super::shard::Shard;
use crate::apps::webhook::EventKind;
use crate::apps::AppIdx;
use crate::webhooks::WebhookEvent;
use std::time::Instant;

/// Whether some webhook of `app` wants events of `kind` (check before
/// building an event).
pub fn wanted(shard: &Shard, app: AppIdx, kind: EventKind) -> bool {
    shard.webhooks.is_some() && shard.apps.get(app).webhook_kinds.contains(kind)
}

/// Hands an event to the sender thread, if the app wants its kind.
pub fn emit(shard: &Shard, app: AppIdx, event: WebhookEvent) {
    if let Some(queue) = &shard.webhooks {
        if shard.apps.get(app).webhook_kinds.contains(event.kind()) {
            queue.send(app, event);
        }
    }
}

/// Owner side: a channel's server-wide subscription count went from
/// `before` to `after`.
pub fn on_occupancy(shard: &Shard, app: AppIdx, channel: &str, before: u32, after: u32) {
    if before == 0 && after > 0 {
        let held = shard.owned.borrow_mut().delays.cancel(app, channel, None);
        if !held && wanted(shard, app, EventKind::ChannelOccupied) {
            emit(
                shard,
                app,
                WebhookEvent::ChannelOccupied {
                    channel: channel.into(),
                },
            );
        }
    } else if before > 0 && after == 0 && wanted(shard, app, EventKind::ChannelVacated) {
        hold(shard, app, channel, None);
    }
}

/// Owner side: `user_id` became a member of a presence channel (first
/// socket) or stopped being one (last socket).
pub fn on_member(shard: &Shard, app: AppIdx, channel: &str, user_id: &str, added: bool) {
    if added {
        let held = shard
            .owned
            .borrow_mut()
            .delays
            .cancel(app, channel, Some(user_id));
        if !held && wanted(shard, app, EventKind::MemberAdded) {
            emit(
                shard,
                app,
                WebhookEvent::MemberAdded {
                    channel: channel.into(),
                    user_id: user_id.into(),
                },
            );
        }
    } else if wanted(shard, app, EventKind::MemberRemoved) {
        hold(shard, app, channel, Some(user_id));
    }
}

fn hold(shard: &Shard, app: AppIdx, channel: &str, user_id: Option<&str>) {
    let delay = shard.config.webhooks.delay;
    if delay.is_zero() {
        let event = match user_id {
            Some(user_id) => WebhookEvent::MemberRemoved {
                channel: channel.into(),
                user_id: user_id.into(),
            },
            None => WebhookEvent::ChannelVacated {
                channel: channel.into(),
            },
        };
        return emit(shard, app, event);
    }
    shard.owned.borrow_mut().delays.hold(
        app,
        channel.into(),
        user_id.map(Box::from),
        Instant::now() + delay,
    );
}

/// Sends the held events whose delay is over (from the housekeeping tick),
/// or all of them when the shard stops (`at_shutdown`).
pub fn release_held(shard: &Shard, at_shutdown: bool) {
    if shard.webhooks.is_none() || shard.owned.borrow().delays.is_empty() {
        return;
    }
    let now = (!at_shutdown).then(Instant::now);
    let due = shard.owned.borrow_mut().delays.take_due(now);
    for (app, event) in due {
        emit(shard, app, event);
    }
}

/// The `data` of a `client_event` webhook: a string as is, anything else
/// as its JSON text (`data_json` is what the client sent).
pub fn client_data(data_json: &str) -> Box<str> {
    if data_json.starts_with('"') {
        let mut bytes = data_json.as_bytes().to_vec();
        if let Ok(s) = simd_json::from_slice::<String>(&mut bytes) {
            return s.into();
        }
    }
    data_json.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_data_unwraps_strings_only() {
        assert_eq!(&*client_data(r#""hi \"x\"""#), "hi \"x\"");
        assert_eq!(&*client_data(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(&*client_data("null"), "null");
    }
}
