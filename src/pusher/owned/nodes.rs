//! What a channel's owner shard knows of the other nodes of a cluster, and
//! tells them.
//!
//! Presence membership and subscription counts are kept per node: each
//! node's owner counts its own sockets and subscribers, tells the other
//! nodes when a presence member's first socket joins or last leaves on this
//! node ([`NodeMsg::MemberJoined`] / [`NodeMsg::MemberLeft`]) and its count
//! of a channel ([`NodeMsg::Occupancy`]): at once when the channel becomes
//! occupied or empty here, and for apps that announce counts also each
//! other change, coalesced per channel to at most one message per
//! housekeeping tick (100 ms, [`flush_counts`]). It merges what the others
//! say: a channel's cluster-wide count is this node's plus the last count
//! each other node told. Signed-in users likewise: a user's owner tells the
//! other nodes when the user's first connection on this node signs in and
//! when its last one leaves ([`NodeMsg::UserOnline`]), so watchlists see
//! a user online while any node has a connection. When a node goes silent,
//! its members, counts and users are dropped.
//!
//! A *full sync* replaces what this node holds of another: between that
//! node's `SyncStart` and `SyncEnd` it tells everything it holds (each
//! shard its part), and what it held before and did not tell again is
//! gone (a `MemberLeft` or an empty `Occupancy` that was lost). Nodes sync
//! when a node joins (it learns what is there), when a node lost some of
//! another's messages (gaps in its numbers) and when a node's own link
//! queue dropped a message. A node's first sync from another is history,
//! not news: it changes state and what clients see, but sends no webhook;
//! later ones are repairs, and their changes send webhooks like any change.
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
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Other nodes' counts of one channel: (node, count).
type NodeCounts = SmallVec<[(u64, u32); 2]>;

/// The owner's view of the other nodes.
#[derive(Default)]
pub struct Nodes {
    /// The other live nodes, as the cluster link last reported them.
    pub live: Vec<u64>,
    /// Channels (of channels this shard owns) occupied on other nodes, with
    /// each node's count. Invariant: no entry or count is 0.
    occupied: HashMap<(AppIdx, Box<str>), NodeCounts>,
    /// Channels whose count on this node changed since it was last told
    /// (sent by [`flush_counts`]).
    unsent: HashSet<(AppIdx, Box<str>)>,
    /// Other nodes' full syncs under way, by node.
    syncs: HashMap<u64, Sync>,
}

/// (app, channel, user for a member / none for occupancy).
type Held = (AppIdx, Box<str>, Option<Box<str>>);

/// A full sync of another node under way. Invariant: `touched` and
/// `users` hold every entry of that node this shard heard of since its
/// `SyncStart`; at its `SyncEnd`, the node's other entries are gone.
struct Sync {
    gen: u64,
    quiet: bool,
    touched: HashSet<Held>,
    users: HashSet<(AppIdx, Box<str>)>,
}

impl Nodes {
    fn occupied_elsewhere(&self, app: AppIdx, channel: &str) -> bool {
        self.occupied
            .get(&(app, Box::from(channel)))
            .is_some_and(|n| !n.is_empty())
    }

    /// Subscriptions of a channel on the other live nodes.
    pub fn counted_elsewhere(&self, app: AppIdx, channel: &str) -> u32 {
        self.occupied
            .get(&(app, Box::from(channel)))
            .map_or(0, |n| n.iter().fold(0u32, |t, (_, c)| t.saturating_add(*c)))
    }

    /// Notes an entry `node` told; whether a change it makes stays quiet
    /// (a `sync` entry of a first sync, or of no sync under way).
    fn heard(&mut self, node: u64, held: Held, sync: bool) -> bool {
        match self.syncs.get_mut(&node) {
            Some(s) => {
                s.touched.insert(held);
                sync && s.quiet
            }
            None => sync,
        }
    }
}

/// A node's rendezvous score for a channel.
fn score(node: u64, app: AppIdx, channel: &str) -> u64 {
    let h = name_hash(node, app, channel);
    h ^ (h >> 29)
}

/// The node that sends the webhooks of `channel` among `nodes`: the one
/// with the highest rendezvous score (tests use it to find which node's
/// webhook queue an event goes through).
pub fn webhook_decider(nodes: &[u64], app: AppIdx, channel: &str) -> Option<u64> {
    nodes
        .iter()
        .copied()
        .max_by_key(|&n| score(n, app, channel))
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
    let (frame, quiet) = {
        let mut owned = shard.owned.borrow_mut();
        let quiet = owned
            .nodes
            .heard(node, (app, channel.into(), Some(user_id.into())), sync);
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
        (frame, quiet)
    };
    if let Some(frame) = frame {
        if !quiet && decides_webhooks(shard, app, channel) {
            webhook_events::on_member(shard, app, channel, user_id, info.is_some());
        }
        publish_on_node(
            shard,
            Publication::one(app, channel.into(), frame, None, Source::owner(shard.id)),
        );
    }
}

/// This node's subscriber count of a channel went from `before` to
/// `after`: tell the other nodes (at once when it became occupied or empty
/// here, else at the next tick when the app announces counts), and run the
/// occupancy webhooks on the cluster-wide state.
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
    if let Some(cluster) = &shard.cluster {
        if (before == 0) != (after == 0) {
            let key = (app, Box::<str>::from(channel));
            shard.owned.borrow_mut().nodes.unsent.remove(&key);
            cluster.send_now(&NodeMsg::Occupancy {
                app: app_id(shard, app),
                channel: channel.into(),
                count: after,
                sync: false,
            });
        } else if before != after && super::counted(shard, app, channel) {
            let key = (app, Box::<str>::from(channel));
            shard.owned.borrow_mut().nodes.unsent.insert(key);
        }
    }
    if elsewhere || !decides_webhooks(shard, app, channel) {
        return;
    }
    webhook_events::on_occupancy(shard, app, channel, before, after);
}

/// Tells the other nodes this node's counts that changed since they were
/// last told (from the 100 ms tick): at most one message per channel and
/// tick.
pub fn flush_counts(shard: &Shard) {
    let Some(cluster) = &shard.cluster else {
        return;
    };
    let unsent: Vec<(AppIdx, Box<str>, u32)> = {
        let mut owned = shard.owned.borrow_mut();
        let owned = &mut *owned;
        if owned.nodes.unsent.is_empty() {
            return;
        }
        owned
            .nodes
            .unsent
            .drain()
            .map(|(app, channel)| {
                let n = owned.counts.local(app, &channel);
                (app, channel, n)
            })
            .collect()
    };
    for (app, channel, count) in unsent {
        cluster.send_now(&NodeMsg::Occupancy {
            app: app_id(shard, app),
            channel,
            count,
            sync: false,
        });
    }
}

/// Another node's count of a channel (0: empty there now).
pub fn on_remote_occupancy(
    shard: &Shard,
    node: u64,
    app: AppIdx,
    channel: &str,
    count: u32,
    sync: bool,
) {
    let (before, after, quiet) = {
        let mut owned = shard.owned.borrow_mut();
        let quiet = owned.nodes.heard(node, (app, channel.into(), None), sync);
        let here = owned.counts.local(app, channel) > 0;
        let key = (app, Box::<str>::from(channel));
        let nodes = owned.nodes.occupied.entry(key.clone()).or_default();
        let before = here || !nodes.is_empty();
        nodes.retain(|(n, _)| *n != node);
        if count > 0 {
            nodes.push((node, count));
        }
        let after = here || !nodes.is_empty();
        if nodes.is_empty() {
            owned.nodes.occupied.remove(&key);
        }
        (before, after, quiet)
    };
    if before != after && !quiet && decides_webhooks(shard, app, channel) {
        webhook_events::on_occupancy(shard, app, channel, before as u32, after as u32);
    }
    super::recount(shard, app, channel, !quiet);
}

/// Tells the other nodes that this node has its first connection signed
/// in as `user_id` (`online`) or no longer has one.
pub fn tell_user(shard: &Shard, app: AppIdx, user_id: &str, online: bool) {
    if let Some(cluster) = &shard.cluster {
        cluster.send_now(&NodeMsg::UserOnline {
            app: app_id(shard, app),
            user_id: user_id.into(),
            online,
            sync: false,
        });
    }
}

/// Another node has (`online`) or no longer has a connection signed in as
/// `user_id`: this node's watchers are told when the user came online or
/// went offline in the whole cluster.
pub fn on_remote_user(
    shard: &Shard,
    node: u64,
    app: AppIdx,
    user_id: &str,
    online: bool,
    sync: bool,
) {
    let watchers = {
        let mut owned = shard.owned.borrow_mut();
        if sync {
            if let Some(s) = owned.nodes.syncs.get_mut(&node) {
                s.users.insert((app, user_id.into()));
            }
        }
        owned.users.set_remote(app, user_id, node, online)
    };
    super::tell_watchers(shard, online, user_id.into(), watchers);
}

/// The cluster link's list of live nodes changed.
pub fn on_live_nodes(shard: &Shard, live: &[u64]) {
    shard.owned.borrow_mut().nodes.live = live.to_vec();
}

/// Node `node` starts full sync `gen`.
pub fn on_sync_start(shard: &Shard, node: u64, gen: u64, quiet: bool) {
    shard.owned.borrow_mut().nodes.syncs.insert(
        node,
        Sync {
            gen,
            quiet,
            touched: HashSet::new(),
            users: HashSet::new(),
        },
    );
}

/// Node `node`'s full sync `gen` arrived whole: its members and occupied
/// channels this shard holds but did not hear of since the start are gone
/// (`member_removed` to clients; webhooks unless the sync is quiet).
pub fn on_sync_end(shard: &Shard, node: u64, gen: u64) {
    let (members, vacated, recounted, offline, quiet) = {
        let mut owned = shard.owned.borrow_mut();
        let owned = &mut *owned;
        let sync = match owned.nodes.syncs.remove(&node) {
            Some(s) if s.gen == gen => s,
            Some(other) => {
                // A newer sync started meanwhile; this end is not its.
                owned.nodes.syncs.insert(node, other);
                return;
            }
            None => return,
        };
        let mut offline = Vec::new();
        for (app, user_id) in owned.users.of_node(node) {
            if !sync.users.contains(&(app, user_id.clone())) {
                let watchers = owned.users.set_remote(app, &user_id, node, false);
                offline.push((user_id, watchers));
            }
        }
        let mut members = Vec::new();
        owned.presence.retain(|(app, channel), m| {
            for user_id in m.users_of_node(node) {
                let held = (*app, channel.clone(), Some(user_id.clone()));
                if !sync.touched.contains(&held) && m.remote_leave(node, &user_id) {
                    members.push((*app, channel.clone(), user_id));
                }
            }
            !m.is_empty()
        });
        let mut vacated = Vec::new();
        let mut recounted = Vec::new();
        owned.nodes.occupied.retain(|(app, channel), nodes| {
            let had = nodes.iter().any(|(n, _)| *n == node);
            if had && !sync.touched.contains(&(*app, channel.clone(), None)) {
                nodes.retain(|(n, _)| *n != node);
                recounted.push((*app, channel.clone()));
                if nodes.is_empty() {
                    vacated.push((*app, channel.clone()));
                }
            }
            !nodes.is_empty()
        });
        vacated.retain(|(app, channel)| owned.counts.local(*app, channel) == 0);
        (members, vacated, recounted, offline, sync.quiet)
    };
    if !members.is_empty() || !vacated.is_empty() {
        log::info!(
            "cluster: node {node:016x}'s full sync removed {} members and {} channels this node still had",
            members.len(),
            vacated.len()
        );
    }
    drop_remote(shard, members, vacated, !quiet);
    for (app, channel) in recounted {
        super::recount(shard, app, &channel, !quiet);
    }
    for (user_id, watchers) in offline {
        super::tell_watchers(shard, false, user_id, watchers);
    }
}

/// A node is gone: the members only it had leave every presence channel
/// this shard owns, channels only it had are vacated, its subscriptions
/// leave the channels' counts, and the users only it had go offline.
pub fn on_node_gone(shard: &Shard, node: u64) {
    shard.owned.borrow_mut().nodes.syncs.remove(&node);
    let (members, vacated, recounted, offline) = {
        let mut owned = shard.owned.borrow_mut();
        let mut offline = Vec::new();
        for (app, user_id) in owned.users.of_node(node) {
            let watchers = owned.users.set_remote(app, &user_id, node, false);
            offline.push((user_id, watchers));
        }
        let mut members = Vec::new();
        owned.presence.retain(|(app, channel), m| {
            for user_id in m.node_gone(node) {
                members.push((*app, channel.clone(), user_id));
            }
            !m.is_empty()
        });
        let mut vacated = Vec::new();
        let mut recounted = Vec::new();
        owned.nodes.occupied.retain(|(app, channel), nodes| {
            let had = nodes.len();
            nodes.retain(|(n, _)| *n != node);
            if nodes.len() != had {
                recounted.push((*app, channel.clone()));
                if nodes.is_empty() {
                    vacated.push((*app, channel.clone()));
                }
            }
            !nodes.is_empty()
        });
        vacated.retain(|(app, channel)| owned.counts.local(*app, channel) == 0);
        (members, vacated, recounted, offline)
    };
    drop_remote(shard, members, vacated, true);
    for (app, channel) in recounted {
        super::recount(shard, app, &channel, true);
    }
    for (user_id, watchers) in offline {
        super::tell_watchers(shard, false, user_id, watchers);
    }
}

/// Members that left the cluster and channels no node has any more:
/// `member_removed` to this node's subscribers, and (with `webhooks`) the
/// webhooks if this node decides them.
fn drop_remote(
    shard: &Shard,
    members: Vec<(AppIdx, Box<str>, Box<str>)>,
    vacated: Vec<(AppIdx, Box<str>)>,
    webhooks: bool,
) {
    for (app, channel, user_id) in members {
        if webhooks && decides_webhooks(shard, app, &channel) {
            webhook_events::on_member(shard, app, &channel, &user_id, false);
        }
        let frame = member_removed(&channel, &user_id);
        publish_on_node(
            shard,
            Publication::one(app, channel, frame, None, Source::owner(shard.id)),
        );
    }
    for (app, channel) in vacated {
        if webhooks && decides_webhooks(shard, app, &channel) {
            webhook_events::on_occupancy(shard, app, &channel, 1, 0);
        }
    }
}

/// This shard's part of this node's full sync `gen`: tells the other
/// nodes again what this shard's channels and users have on this node
/// (presence members, channel counts, signed-in users), then marks its
/// part done. Waits for
/// room in the link's queue, so nothing is dropped however much there is
/// to tell.
pub async fn resend(shard: Rc<Shard>, gen: u64) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let (members, occupied, users) = {
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
        (members, owned.counts.occupied(), owned.users.local())
    };
    for (app, user_id) in users {
        let msg = NodeMsg::UserOnline {
            app: app_id(&shard, app),
            user_id,
            online: true,
            sync: true,
        };
        cluster.send(&msg).await;
    }
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
    for (app, channel, count) in occupied {
        let msg = NodeMsg::Occupancy {
            app: app_id(&shard, app),
            channel,
            count,
            sync: true,
        };
        cluster.send(&msg).await;
    }
    cluster.shard_synced(gen).await;
}
