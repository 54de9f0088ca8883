//! What a shard does with each protocol message another shard sends it,
//! and with what another node of the cluster sends (through the link).

use super::shard::Shard;
use super::shard_msg::ShardMsg;
use crate::channel_name::ChannelClass;
use crate::cluster::Inbound;
use crate::pusher::broadcast::Publication;
use crate::pusher::delivery::Source;
use crate::pusher::owned::nodes;
use crate::pusher::owned::owner_of;
use crate::pusher::{broadcast, owned, query, session, subscribe};
use std::rc::Rc;
use std::sync::Arc;

/// Handles a protocol message. Called with no borrow of shard state held.
pub fn handle(shard: &Shard, msg: ShardMsg) {
    match msg {
        ShardMsg::Publish(publication) => {
            shard.counters.publication_received();
            broadcast::deliver_local(shard, &publication)
        }
        ShardMsg::ToSocket { socket, frame } => {
            let mut conns = shard.conns.borrow_mut();
            if let Some(key) = conns.find(socket, shard.nonce, shard.id) {
                conns.reply(key, &frame);
            }
        }
        ShardMsg::Join {
            app,
            channel,
            socket,
            member,
            want_cache,
        } => owned::on_join(shard, app, channel, socket, member, want_cache),
        ShardMsg::Joined {
            app,
            channel,
            socket,
            outcome,
        } => subscribe::on_joined(shard, app, channel, socket, outcome),
        ShardMsg::Leave {
            app,
            channel,
            user_id,
        } => owned::on_leave(shard, app, channel, &user_id),
        ShardMsg::CacheStore {
            app,
            channel,
            frame,
            data,
        } => owned::on_cache_store(shard, app, channel, frame, data),
        ShardMsg::CountDelta {
            app,
            channel,
            delta,
        } => owned::on_count_delta(shard, app, channel, delta),
        ShardMsg::UserPresence {
            app,
            user_id,
            online,
        } => owned::on_user_presence(shard, app, user_id, online),
        ShardMsg::Watch {
            app,
            watcher,
            users,
            watch,
        } => owned::on_watch(shard, app, watcher, users, watch),
        ShardMsg::TerminateUser { app, user_id } => session::terminate_user(shard, app, &user_id),
        // Requests, replies and quota messages are the runtime's own.
        ShardMsg::Request { .. }
        | ShardMsg::Reply { .. }
        | ShardMsg::Return { .. }
        | ShardMsg::IpRelease(_) => {}
    }
}

/// Handles what another node published (decoded once by the link thread).
pub fn handle_remote(shard: &Rc<Shard>, inbound: &Inbound) {
    match inbound {
        Inbound::Publish {
            app,
            except,
            frames,
        } => {
            let publication = Arc::new(Publication {
                app: *app,
                except: *except,
                frames: frames.clone(),
                source: Source::CLUSTER,
                ticket: None,
            });
            broadcast::deliver_local(shard, &publication);
            keep_cached(shard, &publication);
        }
        Inbound::TerminateUser { app, user_id } => session::terminate_user(shard, *app, user_id),
        Inbound::Member {
            node,
            app,
            channel,
            user_id,
            joined,
            sync,
        } => nodes::on_remote_member(
            shard,
            *node,
            *app,
            channel,
            user_id,
            joined.as_deref(),
            *sync,
        ),
        Inbound::Occupancy {
            node,
            app,
            channel,
            count,
            sync,
        } => nodes::on_remote_occupancy(shard, *node, *app, channel, *count, *sync),
        Inbound::UserOnline {
            node,
            app,
            user_id,
            online,
            sync,
        } => nodes::on_remote_user(shard, *node, *app, user_id, *online, *sync),
        Inbound::Nodes(live) => nodes::on_live_nodes(shard, live),
        Inbound::Resend { gen } => crate::runtime::spawn(nodes::resend(shard.clone(), *gen)),
        Inbound::SyncStart { node, gen, quiet } => nodes::on_sync_start(shard, *node, *gen, *quiet),
        Inbound::SyncEnd { node, gen } => nodes::on_sync_end(shard, *node, *gen),
        Inbound::Query {
            from,
            id,
            shard: to_shard,
            app,
            ask,
        } => {
            let task =
                query::answer_remote(shard.clone(), *from, *id, *to_shard, *app, ask.clone());
            crate::runtime::spawn(task);
        }
        Inbound::Answer { id, part } => query::on_remote_answer(shard, *id, part),
        Inbound::NodeGone(node) => nodes::on_node_gone(shard, *node),
    }
}

/// Cache channels keep the last event triggered on any node: the channel's
/// owner on this node keeps it too (its `data` read back from the frame).
fn keep_cached(shard: &Shard, publication: &Publication) {
    for (channel, frame) in &publication.frames {
        if !ChannelClass::of(channel).cache
            || owner_of(publication.app, channel, shard.count) != shard.id as usize
        {
            continue;
        }
        let Some(data) = event_data(frame.payload()) else {
            continue;
        };
        owned::on_cache_store(shard, publication.app, channel.clone(), frame.clone(), data);
    }
}

/// The `data` string of an event frame's JSON payload.
fn event_data(payload: &[u8]) -> Option<Box<str>> {
    use simd_json::prelude::*;
    let mut bytes = payload.to_vec();
    let value = crate::json::parse(&mut bytes).ok()?;
    value.get("data")?.as_str().map(Box::from)
}
