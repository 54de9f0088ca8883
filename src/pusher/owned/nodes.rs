//! What a channel's owner shard knows of the other nodes of a cluster, and
//! tells them.
//!
//! Presence membership and occupancy are kept per node: each node's owner
//! counts its own sockets and subscribers, tells the other nodes when a
//! presence member's first socket joins or last leaves on this node
//! ([`NodeMsg::MemberJoined`] / [`NodeMsg::MemberLeft`]) and when a channel
//! becomes occupied or empty here ([`NodeMsg::Occupancy`]), and merges what
//! the others say. When a node (re)joins, every node tells it again
//! (`sync`, which changes state but sends no webhook); when a node goes
//! silent, its members and occupancy are dropped.
//!
//! Webhooks are decided once per cluster: for each channel one live node,
//! chosen by rendezvous hashing of (node, app, channel), sends them
//! ([`decides_webhooks`]); every node knows the same list of live nodes, so
//! they agree without talking. While that list changes (a node joining or
//! dying) a webhook can be sent twice or not at all.

use super::name_hash;
use crate::apps::AppIdx;
use crate::cluster::NodeMsg;
use crate::pusher::broadcast::{publish_on_node, Publication};
use crate::pusher::delivery::Source;
use crate::pusher::presence::{member_added, member_removed, Member};
use crate::pusher::shard::Shard;
use crate::pusher::tap::{TapEvent, What};
use crate::pusher::webhook_events;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::rc::Rc;

/// The owner's view of the other nodes.
#[derive(Default)]
pub struct Nodes {
    /// The other live nodes, as the cluster link last reported them.
    pub live: Vec<u64>,
    /// Channels (of channels this shard owns) occupied on other nodes.
    occupied: HashMap<(AppIdx, Box<str>), SmallVec<[u64; 2]>>,
}

impl Nodes {
    fn occupied_elsewhere(&self, app: AppIdx, channel: &str) -> bool {
        self.occupied
            .get(&(app, Box::from(channel)))
            .is_some_and(|n| !n.is_empty())
    }
}

/// A node's rendezvous score for a channel.
fn score(node: u64, app: AppIdx, channel: &str) -> u64 {
    let h = name_hash(node, app, channel);
    h ^ (h >> 29)
}

/// Whether this node sends the webhooks of `channel` (always on a single
/// node): the live node with the highest rendezvous score does.
pub fn decides_webhooks(shard: &Shard, app: AppIdx, channel: &str) -> bool {
    let Some(cluster) = &shard.cluster else {
        return true;
    };
    let owned = shard.owned.borrow();
    let mine = score(cluster.node, app, channel);
    owned
        .nodes
        .live
        .iter()
        .all(|&n| score(n, app, channel) < mine)
}

fn app_id(shard: &Shard, app: AppIdx) -> Box<str> {
    shard.apps.get(app).id.as_str().into()
}

/// Tells the other nodes that this node has (`info` is `Some`) or no
/// longer has sockets of a presence member.
pub fn tell_member(shard: &Shard, app: AppIdx, channel: &str, user_id: &str, info: Option<&str>) {
    let Some(cluster) = &shard.cluster else {
        return;
    };
    let (app, channel, user_id) = (app_id(shard, app), channel.into(), user_id.into());
    cluster.send_now(&match info {
        Some(info) => NodeMsg::MemberJoined {
            app,
            channel,
            user_id,
            user_info: info.into(),
            sync: false,
        },
        None => NodeMsg::MemberLeft {
            app,
            channel,
            user_id,
        },
    });
}

/// Another node has (`info` is `Some`) or no longer has sockets of a
/// presence member: `member_added` / `member_removed` to this node's
/// subscribers when the cluster gained or lost the user, and the webhook
/// if this node decides them (not for `sync`: nothing changed then).
pub fn on_remote_member(
    shard: &Shard,
    node: u64,
    app: AppIdx,
    channel: &str,
    user_id: &str,
    info: Option<&str>,
    sync: bool,
) {
    let frame = {
        let mut owned = shard.owned.borrow_mut();
        let key = (app, Box::<str>::from(channel));
        let members = owned.presence.entry(key.clone()).or_default();
        let frame = match info {
            Some(info) => {
                let member = Member {
                    user_id: user_id.into(),
                    user_info: info.into(),
                };
                members
                    .remote_join(node, &member)
                    .then(|| member_added(channel, &member))
            }
            None => members
                .remote_leave(node, user_id)
                .then(|| member_removed(channel, user_id)),
        };
        if members.is_empty() {
            owned.presence.remove(&key);
        }
        frame
    };
    if let Some(frame) = frame {
        if !sync && decides_webhooks(shard, app, channel) {
            webhook_events::on_member(shard, app, channel, user_id, info.is_some());
        }
        publish_on_node(
            shard,
            Publication::one(app, channel.into(), frame, None, Source::owner(shard.id)),
        );
    }
}

/// This node's subscriber count of a channel went from `before` to
/// `after`: tell the other nodes when it became occupied or empty here,
/// and run the occupancy webhooks on the cluster-wide state.
pub fn on_local_occupancy(shard: &Shard, app: AppIdx, channel: &str, before: u32, after: u32) {
    if (before == 0) != (after == 0) {
        shard.tap.note(|| {
            let what = match after {
                0 => What::ChannelVacated,
                _ => What::ChannelOccupied,
            };
            TapEvent::new(app, what).on(channel)
        });
    }
    let elsewhere = shard.owned.borrow().nodes.occupied_elsewhere(app, channel);
    if (before == 0) != (after == 0) {
        if let Some(cluster) = &shard.cluster {
            cluster.send_now(&NodeMsg::Occupancy {
                app: app_id(shard, app),
                channel: channel.into(),
                occupied: after > 0,
                sync: false,
            });
        }
    }
    if elsewhere || !decides_webhooks(shard, app, channel) {
        return;
    }
    webhook_events::on_occupancy(shard, app, channel, before, after);
}

/// Another node's channel became occupied or empty.
pub fn on_remote_occupancy(
    shard: &Shard,
    node: u64,
    app: AppIdx,
    channel: &str,
    occupied: bool,
    sync: bool,
) {
    let (before, after) = {
        let mut owned = shard.owned.borrow_mut();
        let here = owned.counts.total(app, channel) > 0;
        let key = (app, Box::<str>::from(channel));
        let nodes = owned.nodes.occupied.entry(key.clone()).or_default();
        let before = here || !nodes.is_empty();
        nodes.retain(|n| *n != node);
        if occupied {
            nodes.push(node);
        }
        let after = here || !nodes.is_empty();
        if nodes.is_empty() {
            owned.nodes.occupied.remove(&key);
        }
        (before, after)
    };
    if before != after && !sync && decides_webhooks(shard, app, channel) {
        webhook_events::on_occupancy(shard, app, channel, before as u32, after as u32);
    }
}

/// The cluster link's list of live nodes changed.
pub fn on_live_nodes(shard: &Shard, live: &[u64]) {
    shard.owned.borrow_mut().nodes.live = live.to_vec();
}

/// A node is gone: the members only it had leave every presence channel
/// this shard owns, and channels only it had are vacated.
pub fn on_node_gone(shard: &Shard, node: u64) {
    let (members, vacated) = {
        let mut owned = shard.owned.borrow_mut();
        let mut members = Vec::new();
        owned.presence.retain(|(app, channel), m| {
            for user_id in m.node_gone(node) {
                members.push((*app, channel.clone(), user_id));
            }
            !m.is_empty()
        });
        let mut vacated = Vec::new();
        owned.nodes.occupied.retain(|(app, channel), nodes| {
            nodes.retain(|n| *n != node);
            if nodes.is_empty() {
                vacated.push((*app, channel.clone()));
            }
            !nodes.is_empty()
        });
        vacated.retain(|(app, channel)| owned.counts.total(*app, channel) == 0);
        (members, vacated)
    };
    for (app, channel, user_id) in members {
        if decides_webhooks(shard, app, &channel) {
            webhook_events::on_member(shard, app, &channel, &user_id, false);
        }
        let frame = member_removed(&channel, &user_id);
        publish_on_node(
            shard,
            Publication::one(app, channel, frame, None, Source::owner(shard.id)),
        );
    }
    for (app, channel) in vacated {
        if decides_webhooks(shard, app, &channel) {
            webhook_events::on_occupancy(shard, app, &channel, 1, 0);
        }
    }
}

/// Tells the other nodes again what this shard's channels have on this
/// node: presence members and occupied channels (a node joined or came
/// back). Waits for room in the link's queue, so nothing is dropped however
/// much there is to tell.
pub async fn resend(shard: Rc<Shard>) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let (members, occupied) = {
        let owned = shard.owned.borrow();
        let members: Vec<(AppIdx, Box<str>, Member)> = owned
            .presence
            .iter()
            .flat_map(|((app, channel), members)| {
                members
                    .local_members()
                    .into_iter()
                    .map(move |m| (*app, channel.clone(), m))
            })
            .collect();
        (members, owned.counts.occupied())
    };
    for (app, channel, m) in members {
        let msg = NodeMsg::MemberJoined {
            app: app_id(&shard, app),
            channel,
            user_id: m.user_id,
            user_info: m.user_info,
            sync: true,
        };
        cluster.send(&msg).await;
    }
    for (app, channel) in occupied {
        let msg = NodeMsg::Occupancy {
            app: app_id(&shard, app),
            channel,
            occupied: true,
            sync: true,
        };
        cluster.send(&msg).await;
    }
}
