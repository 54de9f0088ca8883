//! Subscribing and unsubscribing: name and auth checks per channel kind,
//! local subscription for plain channels, and the join through the owner
//! shard for channels with owner-held state (presence, cache).
//!
//! A join that needs the owner completes in [`on_joined`], which runs when
//! the owner's answer arrives, before any later message from that owner, so
//! a new presence member never misses a `member_added` sent after its
//! snapshot.
//!
//! In a cluster every subscribe first holds its channel's event bucket
//! ([`node_interest`]); one whose bucket the cluster link has not yet
//! opened on the engine goes on once it has (marked pending on the
//! connection meanwhile, like a join), so `subscription_succeeded` is
//! never sent before events from other nodes can arrive.
//!
//! Interest between shards (`pusher::interest`): a subscription makes this
//! shard hold the channel in the node's interest table before it is
//! confirmed: a plain channel when it is added to the channel table, in the
//! step that queues `subscription_succeeded`; a join through the owner from
//! the moment its `Join` is posted until its `Joined` is handled (exactly
//! one per `Join`), by when the channel table holds it if the join
//! succeeded.

use super::node_interest;
use super::shard::Shard;
use super::shard_msg::ShardMsg;
use crate::apps::webhook::wants_occupancy;
use crate::apps::AppIdx;
use crate::auth::verify_client_auth;
use crate::channel_name::{validate_name, ChannelClass, ChannelKind, SERVER_TO_USER_PREFIX};
use crate::member::parse_channel_data;
use crate::pusher::conns::{ChannelId, ConnKey};
use crate::pusher::messages;
use crate::pusher::owned::{counted, owner_of, JoinOutcome, Member};
use crate::pusher::tap::{TapEvent, What};
use crate::socket_id::SocketId;
use std::rc::Rc;

/// A subscription refused before it reached the channel table.
struct Refused {
    kind: &'static str,
    message: String,
    status: u16,
}

fn refused(kind: &'static str, message: String, status: u16) -> Refused {
    Refused {
        kind,
        message,
        status,
    }
}

/// Handles `pusher:subscribe`.
pub fn subscribe(
    shard: &Rc<Shard>,
    key: ConnKey,
    socket: SocketId,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) {
    match check(shard, key, socket, channel, auth, channel_data) {
        Err(r) => reply_refusal(shard, key, channel, r.kind, &r.message, r.status),
        Ok((app, class, member)) => {
            if class.kind == ChannelKind::Private
                || class.kind == ChannelKind::PrivateEncrypted
                || class.kind == ChannelKind::Presence
            {
                // A private or presence subscription satisfies the sign-in requirement.
                if let Some(conn) = shard.conns.borrow_mut().get_mut(key) {
                    if let Some(extra) = conn.extra.as_mut() {
                        extra.sign_in_by = None;
                    }
                }
            }
            match node_interest::hold(shard, app, channel) {
                None => proceed(shard, key, socket, app, class, member, channel),
                Some(bucket) => {
                    proceed_when_open(shard, key, socket, app, class, member, channel, bucket)
                }
            }
        }
    }
}

/// Goes on with a subscribe once the link has `bucket` open, unless the
/// connection unsubscribed or closed meanwhile (then the hold is given
/// back).
#[allow(clippy::too_many_arguments)]
fn proceed_when_open(
    shard: &Rc<Shard>,
    key: ConnKey,
    socket: SocketId,
    app: AppIdx,
    class: ChannelClass,
    member: Option<Member>,
    channel: &str,
    bucket: crate::cluster::route::Stream,
) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    if let Some(conn) = shard.conns.borrow_mut().get_mut(key) {
        conn.extra_mut().pending.push(channel.into());
    }
    let shard = shard.clone();
    let channel: Box<str> = channel.into();
    crate::runtime::spawn(async move {
        cluster.opened(bucket).await;
        let found = shard.conns.borrow().find(socket, shard.nonce, shard.id);
        let wanted = found == Some(key) && {
            let mut conns = shard.conns.borrow_mut();
            let pending = conns
                .get_mut(key)
                .and_then(|c| c.extra.as_mut())
                .map(|e| &mut e.pending);
            match pending.and_then(|p| p.iter().position(|c| *c == channel).map(|at| (p, at))) {
                Some((p, at)) => {
                    p.swap_remove(at);
                    true
                }
                None => false,
            }
        };
        match wanted {
            true => proceed(&shard, key, socket, app, class, member, &channel),
            false => node_interest::release(&shard, app, &channel),
        }
    });
}

/// A checked subscribe whose bucket is open (or no cluster): subscribes
/// locally, or joins through the channel's owner.
fn proceed(
    shard: &Shard,
    key: ConnKey,
    socket: SocketId,
    app: AppIdx,
    class: ChannelClass,
    member: Option<Member>,
    channel: &str,
) {
    if member.is_some() || class.cache {
        let already = shard.conns.borrow().get(key).is_some_and(|c| {
            c.extra
                .as_ref()
                .is_some_and(|e| e.pending.iter().any(|p| &**p == channel))
        });
        let subscribed = {
            let channels = shard.channels.borrow();
            channels
                .find(app, channel)
                .is_some_and(|id| channels.is_member(id, key))
        };
        if already || subscribed {
            // A join is under way or done; nothing to repeat.
            return node_interest::release(shard, app, channel);
        }
        if let Some(conn) = shard.conns.borrow_mut().get_mut(key) {
            conn.extra_mut().pending.push(channel.into());
        }
        // Interest before the join leaves: events published once it is
        // confirmed, and the owner's own announcements after the snapshot,
        // must come here. Released in `on_joined`.
        shard.channels.borrow_mut().hold(app, channel);
        let owner = owner_of(app, channel, shard.count);
        shard.post(
            owner,
            ShardMsg::Join {
                app,
                channel: channel.into(),
                socket,
                member,
                want_cache: class.cache,
            },
        );
    } else {
        let (_, added) = add_local(shard, key, app, channel, None);
        shard
            .conns
            .borrow_mut()
            .reply(key, &messages::subscription_succeeded(channel));
        if added {
            report_count(shard, app, channel, 1);
        } else {
            node_interest::release(shard, app, channel);
        }
    }
}

/// Validates the name and the auth a channel kind requires.
fn check(
    shard: &Shard,
    key: ConnKey,
    socket: SocketId,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> Result<(AppIdx, ChannelClass, Option<Member>), Refused> {
    let conns = shard.conns.borrow();
    let Some(conn) = conns.get(key) else {
        return Err(refused("InvalidState", "connection is closing".into(), 400));
    };
    let app_idx = conn.app;
    let app = shard.apps.get(app_idx);
    validate_name(channel, app.limits.max_channel_name_length)
        .map_err(|e| refused("InvalidChannel", format!("Invalid channel name: {e}"), 400))?;
    let max = shard.config.limits.max_subscriptions_per_connection;
    let held = conn.subs.len() + conn.extra.as_ref().map_or(0, |e| e.pending.len());
    if held >= max as usize && !is_subscribed(shard, app_idx, channel, key) {
        return Err(refused(
            "LimitReached",
            format!(
                "this connection already has {max} subscriptions, the most \
                 server.limits.max_subscriptions_per_connection allows: \
                 unsubscribe from a channel first"
            ),
            4100,
        ));
    }
    let class = ChannelClass::of(channel);
    let need_auth = |to_sign: &str| -> Result<(), Refused> {
        let Some(auth) = auth else {
            return Err(refused(
                "AuthError",
                format!("Subscribing to {channel} needs an auth signature"),
                401,
            ));
        };
        if verify_client_auth(&app, auth, to_sign) {
            Ok(())
        } else {
            Err(refused("AuthError", format!("Invalid signature for {channel}: check the app key and secret your auth endpoint uses"), 401))
        }
    };
    let member = match class.kind {
        ChannelKind::Public => None,
        ChannelKind::Private | ChannelKind::PrivateEncrypted => {
            need_auth(&format!("{socket}:{channel}"))?;
            None
        }
        ChannelKind::Presence => {
            let Some(data) = channel_data else {
                return Err(refused(
                    "AuthError",
                    format!("Subscribing to {channel} needs channel_data"),
                    401,
                ));
            };
            need_auth(&format!("{socket}:{channel}:{data}"))?;
            Some(parse_channel_data(data).map_err(|e| refused("InvalidChannelData", e, 400))?)
        }
        ChannelKind::ServerToUser => {
            let user = &channel[SERVER_TO_USER_PREFIX.len()..];
            if conn.user_id() != Some(user) {
                return Err(refused(
                    "AuthError",
                    format!("{channel} is only for a connection signed in as user {user}"),
                    403,
                ));
            }
            None
        }
    };
    Ok((app_idx, class, member))
}

/// Whether the connection already holds (or is joining) the channel: a
/// repeated subscribe is not a new one and never hits the limit.
fn is_subscribed(shard: &Shard, app: AppIdx, channel: &str, key: ConnKey) -> bool {
    let channels = shard.channels.borrow();
    channels
        .find(app, channel)
        .is_some_and(|id| channels.is_member(id, key))
}

fn reply_refusal(
    shard: &Shard,
    key: ConnKey,
    channel: &str,
    kind: &str,
    message: &str,
    status: u16,
) {
    shard.conns.borrow_mut().reply(
        key,
        &messages::subscription_error(channel, kind, message, status),
    );
}

/// Adds the connection to the local channel table (with the presence user
/// it declared). Returns the channel and whether the connection is new on
/// it; the caller reports the count change *after* queueing
/// `subscription_succeeded`, so the subscriber never sees a count for a
/// channel it has not yet joined.
fn add_local(
    shard: &Shard,
    key: ConnKey,
    app: AppIdx,
    channel: &str,
    user: Option<Box<str>>,
) -> (ChannelId, bool) {
    let mut conns = shard.conns.borrow_mut();
    let Some(conn) = conns.get_mut(key) else {
        return (0, false);
    };
    let added = shard
        .channels
        .borrow_mut()
        .subscribe(app, channel, key, &mut conn.subs, user);
    if added.1 {
        let serial = conn.serial;
        shard.tap.note(|| {
            let socket = socket_id(shard, key, serial);
            TapEvent::new(app, What::Subscribed)
                .on(channel)
                .socket(Some(socket))
        });
    }
    added
}

/// A local connection's socket id, for the console's tap.
fn socket_id(shard: &Shard, key: ConnKey, serial: u32) -> SocketId {
    SocketId {
        nonce: shard.nonce,
        shard: shard.id,
        slot: key,
        serial,
    }
}

/// Tells the channel's owner about a subscription count change, when the
/// app wants counts (`pusher_internal:subscription_count` or the
/// `subscription_count` webhook; not for presence channels, which count
/// members instead) or occupancy webhooks (every kind of channel).
fn report_count(shard: &Shard, app: AppIdx, channel: &str, delta: i32) {
    let occupancy = shard.webhooks.is_some() && wants_occupancy(shard.apps.get(app).webhook_kinds);
    // With the console on, owners keep counts so occupancy shows there.
    let console = shard.config.console.is_some();
    if !occupancy && !console && !counted(shard, app, channel) {
        return;
    }
    let owner = owner_of(app, channel, shard.count);
    shard.post(
        owner,
        ShardMsg::CountDelta {
            app,
            channel: channel.into(),
            delta,
        },
    );
}

/// Finishes a join when the owner's answer arrives.
pub fn on_joined(
    shard: &Shard,
    app: AppIdx,
    channel: Box<str>,
    socket: SocketId,
    outcome: JoinOutcome,
) {
    let key = shard.conns.borrow().find(socket, shard.nonce, shard.id);
    let wanted = key.is_some_and(|key| {
        let mut conns = shard.conns.borrow_mut();
        let Some(extra) = conns.get_mut(key).and_then(|c| c.extra.as_mut()) else {
            return false;
        };
        match extra.pending.iter().position(|p| *p == channel) {
            Some(pos) => {
                extra.pending.swap_remove(pos);
                true
            }
            None => false,
        }
    });
    let (Some(key), true) = (key, wanted) else {
        node_interest::release(shard, app, &channel);
        shard.channels.borrow_mut().release(app, &channel);
        // Gone or unsubscribed meanwhile: undo the membership the owner added.
        if let Some((member, _)) = outcome.presence {
            let owner = owner_of(app, &channel, shard.count);
            shard.post(
                owner,
                ShardMsg::Leave {
                    app,
                    channel,
                    user_id: member.user_id,
                },
            );
        }
        return;
    };
    if let Some(r) = outcome.refused {
        node_interest::release(shard, app, &channel);
        shard.channels.borrow_mut().release(app, &channel);
        return reply_refusal(shard, key, &channel, r.kind, &r.message, r.status);
    }
    let user = outcome.presence.as_ref().map(|(m, _)| m.user_id.clone());
    let (_, added) = add_local(shard, key, app, &channel, user);
    // The channel holds the interest now (the hold ends after the channel's
    // own began, so the bit never drops in between).
    shard.channels.borrow_mut().release(app, &channel);
    let mut conns = shard.conns.borrow_mut();
    match outcome.presence {
        Some((_, snapshot)) => {
            let frame = messages::internal_event(
                "pusher_internal:subscription_succeeded",
                Some(&channel),
                &snapshot,
            );
            conns.reply(key, &frame);
        }
        None => conns.reply(key, &messages::subscription_succeeded(&channel)),
    }
    match outcome.cache {
        Some(Some(frame)) => conns.reply(key, &frame),
        Some(None) => conns.reply(key, &messages::cache_miss(&channel)),
        None => {}
    }
    drop(conns);
    if added {
        report_count(shard, app, &channel, 1);
    } else {
        node_interest::release(shard, app, &channel);
    }
}

/// Handles `pusher:unsubscribe` (silently, as Pusher does).
pub fn unsubscribe(shard: &Shard, key: ConnKey, channel: &str) {
    let Some(app) = shard.conns.borrow().get(key).map(|c| c.app) else {
        return;
    };
    // A join still waiting for its owner is dropped; on_joined undoes it.
    if let Some(extra) = shard
        .conns
        .borrow_mut()
        .get_mut(key)
        .and_then(|c| c.extra.as_mut())
    {
        extra.pending.retain(|p| &**p != channel);
    }
    let Some(id) = shard.channels.borrow().find(app, channel) else {
        return;
    };
    leave(shard, key, app, id, channel);
}

/// Removes one subscription and tells owners what they need to know.
fn leave(shard: &Shard, key: ConnKey, app: AppIdx, id: ChannelId, channel: &str) {
    let user = {
        let mut conns = shard.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let user = match shard
            .channels
            .borrow_mut()
            .unsubscribe(id, key, &mut conn.subs)
        {
            Some(user) => user,
            None => return,
        };
        let serial = conn.serial;
        shard.tap.note(|| {
            let socket = socket_id(shard, key, serial);
            TapEvent::new(app, What::Unsubscribed)
                .on(channel)
                .socket(Some(socket))
        });
        user
    };
    node_interest::release(shard, app, channel);
    report_count(shard, app, channel, -1);
    if let Some(user_id) = user {
        let owner = owner_of(app, channel, shard.count);
        shard.post(
            owner,
            ShardMsg::Leave {
                app,
                channel: channel.into(),
                user_id,
            },
        );
    }
}

/// Leaves up to `budget` channels of a closing connection, last joined
/// first (each step O(1)); returns how many remain.
pub fn leave_some(shard: &Shard, key: ConnKey, budget: usize) -> usize {
    for _ in 0..budget {
        let next = shard
            .conns
            .borrow()
            .get(key)
            .and_then(|c| Some((c.app, *c.subs.last()?)));
        let Some((app, id)) = next else {
            return 0;
        };
        let name = shard.channels.borrow().get(id).map(|c| c.name.clone());
        match name {
            Some(name) => leave(shard, key, app, id, &name),
            None => return 0, // cannot happen: the index is exact
        }
    }
    shard.conns.borrow().get(key).map_or(0, |c| c.subs.len())
}
