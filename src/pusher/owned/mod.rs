//! State a shard holds as the *owner* of a channel or user, and the owner's
//! side of the messages about it.
//!
//! Some state must have one home across all cores: presence members, the
//! cached event of a cache channel, a channel's total subscription count,
//! and whether a signed-in user is online. Each channel and each user has
//! one owner shard, chosen by hashing its name ([`owner_of`]); every other
//! shard sends it messages and the owner answers or announces the result
//! (as a broadcast, so announcements follow the same ordered path as events).
//! The owner is also where occupancy, membership and cache-miss webhooks are
//! decided, and where vacated/removed webhooks wait out their delay.
//! What the owner knows of other nodes' members, subscription counts and
//! signed-in users, and what it tells them, is [`nodes`].

pub mod nodes;

use crate::apps::webhook::EventKind;
use crate::apps::AppIdx;
use crate::pusher::broadcast::{publish_on_node, Publication};
use crate::pusher::cache::{CacheLimits, CacheTable};
use crate::pusher::counts::{subscription_count_event, CountTable};
use crate::pusher::delivery::Source;
pub use crate::pusher::presence::Member;
use crate::pusher::presence::{member_added, member_removed, Joined, PresenceChannel};
use crate::pusher::shard::Shard;
use crate::pusher::shard_msg::ShardMsg;
use crate::pusher::tap::{TapEvent, What};
use crate::pusher::users::{watchlist_event, UserTable};
use crate::pusher::webhook_events;
use crate::socket_id::SocketId;
use crate::webhooks::{DelayTable, WebhookEvent};
use crate::ws::frame::Frame;
use nodes::Nodes;
use std::collections::HashMap;
use std::time::Instant;

/// The owner shard of a channel or user name: FNV-1a of (app, name).
pub fn owner_of(app: AppIdx, name: &str, shards: u16) -> usize {
    (name_hash(0, app, name) % shards.max(1) as u64) as usize
}

/// FNV-1a of (app, name), its start varied by `seed`.
pub fn name_hash(seed: u64, app: AppIdx, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in app.0.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why the owner refused a join, as a `pusher:subscription_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub message: String,
    pub status: u16,
}

/// The owner's answer to a [`ShardMsg::Join`].
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub refused: Option<Refusal>,
    /// The member that joined, and the presence data for `subscription_succeeded`.
    pub presence: Option<(Member, String)>,
    /// `Some(frame or none)` when the cache was asked for.
    pub cache: Option<Option<Frame>>,
}

#[derive(Default)]
pub struct Owned {
    pub presence: HashMap<(AppIdx, Box<str>), PresenceChannel>,
    pub cache: CacheTable,
    pub users: UserTable,
    pub counts: CountTable,
    /// Webhook events held back for `delay_ms`.
    pub delays: DelayTable,
    /// What the other nodes of a cluster have of this shard's channels.
    pub nodes: Nodes,
}

/// Owner side of a join: presence membership and the cached event.
pub fn on_join(
    shard: &Shard,
    app: AppIdx,
    channel: Box<str>,
    socket: SocketId,
    member: Option<Member>,
    want_cache: bool,
) {
    let mut outcome = JoinOutcome {
        refused: None,
        presence: None,
        cache: None,
    };
    let mut announce = None;
    let mut added = None;
    if let Some(member) = member {
        let max = shard.apps.get(app).limits.max_presence_members;
        let mut owned = shard.owned.borrow_mut();
        let members = owned.presence.entry((app, channel.clone())).or_default();
        match members.join(&member, max) {
            Joined::Full => {
                outcome.refused = Some(Refusal {
                    kind: "LimitReached",
                    message: format!("{channel} already has the maximum of {max} members"),
                    status: 4100,
                });
                if members.is_empty() {
                    owned.presence.remove(&(app, channel.clone()));
                }
            }
            joined => {
                if joined == Joined::NewMember {
                    announce = Some(member_added(&channel, &member));
                    added = Some(member.user_id.clone());
                }
                if joined != Joined::SameMember {
                    let info = Some(&*member.user_info);
                    nodes::tell_member(shard, app, &channel, &member.user_id, info);
                }
                outcome.presence = Some((member, members.snapshot()));
            }
        }
    }
    if want_cache && outcome.refused.is_none() {
        let owned = shard.owned.borrow();
        outcome.cache = Some(owned.cache.get(app, &channel).map(|(e, _)| e.frame.clone()));
    }
    if let Some(user_id) = added {
        shard.tap.note(|| {
            let what = What::MemberAdded {
                user_id: user_id.clone(),
            };
            TapEvent::new(app, what).on(&channel)
        });
        if nodes::decides_webhooks(shard, app, &channel) {
            webhook_events::on_member(shard, app, &channel, &user_id, true);
        }
    }
    if matches!(outcome.cache, Some(None))
        && webhook_events::wanted(shard, app, EventKind::CacheMiss)
    {
        webhook_events::emit(
            shard,
            app,
            WebhookEvent::CacheMiss {
                channel: channel.clone(),
            },
        );
    }
    if let Some(frame) = announce {
        // Everyone else on the channel; the joiner learns from its snapshot.
        publish_on_node(
            shard,
            Publication::one(
                app,
                channel.clone(),
                frame,
                Some(socket),
                Source::owner(shard.id),
            ),
        );
    }
    shard.post(
        socket.shard as usize,
        ShardMsg::Joined {
            app,
            channel,
            socket,
            outcome,
        },
    );
}

/// Owner side of a cache channel's event: keep it for the app's
/// `cache_ttl`, within this shard's share of the cache limits.
pub fn on_cache_store(shard: &Shard, app: AppIdx, channel: Box<str>, frame: Frame, data: Box<str>) {
    let ttl = shard.apps.get(app).cache_ttl;
    let evicted =
        shard
            .owned
            .borrow_mut()
            .cache
            .store(app, channel, frame, data, ttl, cache_limits(shard));
    shard.counters.cache_evicted(evicted);
}

/// This shard's share of `max_cached_channels` and `max_cache_kb`: cache
/// channels are spread over owners by name hash, so an even share.
fn cache_limits(shard: &Shard) -> CacheLimits {
    let l = &shard.config.limits;
    let shards = shard.count.max(1) as usize;
    CacheLimits {
        max_channels: (l.max_cached_channels as usize).div_ceil(shards).max(1),
        max_bytes: l.max_cache_bytes.div_ceil(shards),
    }
}

/// Owner side of a presence leave: `member_removed` on the user's last socket.
pub fn on_leave(shard: &Shard, app: AppIdx, channel: Box<str>, user_id: &str) {
    let removed = {
        let mut owned = shard.owned.borrow_mut();
        let key = (app, channel.clone());
        let Some(members) = owned.presence.get_mut(&key) else {
            return;
        };
        let left = members.leave(user_id);
        if members.is_empty() {
            owned.presence.remove(&key);
        }
        if left.last_here {
            nodes::tell_member(shard, app, &channel, user_id, None);
        }
        left.gone
    };
    if removed {
        shard.tap.note(|| {
            let what = What::MemberRemoved {
                user_id: user_id.into(),
            };
            TapEvent::new(app, what).on(&channel)
        });
        if nodes::decides_webhooks(shard, app, &channel) {
            webhook_events::on_member(shard, app, &channel, user_id, false);
        }
        let frame = member_removed(&channel, user_id);
        publish_on_node(
            shard,
            Publication::one(app, channel, frame, None, Source::owner(shard.id)),
        );
    }
}

/// Owner side of a subscription count change on this node: the occupancy
/// webhooks and what the other nodes are told, then the channel-wide count.
pub fn on_count_delta(shard: &Shard, app: AppIdx, channel: Box<str>, delta: i32) {
    let (before, after) = shard.owned.borrow_mut().counts.apply(app, &channel, delta);
    nodes::on_local_occupancy(shard, app, &channel, before, after);
    recount(shard, app, &channel, true);
}

/// Whether subscribers of `channel` are told `pusher_internal:subscription_count`:
/// when the app enables it, and never on presence channels (they count members).
pub fn counts_announced(shard: &Shard, app: AppIdx, channel: &str) -> bool {
    shard.apps.get(app).enable_subscription_count && !is_presence(channel)
}

fn is_presence(channel: &str) -> bool {
    crate::channel_name::ChannelClass::of(channel).kind
        == crate::channel_name::ChannelKind::Presence
}

/// Whether `channel`'s count is announced at all: to its subscribers, or
/// to a `subscription_count` webhook (never for presence channels).
pub fn counted(shard: &Shard, app: AppIdx, channel: &str) -> bool {
    counts_announced(shard, app, channel)
        || (!is_presence(channel)
            && webhook_events::wanted(shard, app, EventKind::SubscriptionCount))
}

/// The channel-wide count of `channel` may have changed (here or on
/// another node): announce it if it is due (to the webhook too, unless
/// `webhooks` is false: a node's first sync is history, not news).
pub fn recount(shard: &Shard, app: AppIdx, channel: &str, webhooks: bool) {
    let counted = counted(shard, app, channel);
    let announce = {
        let mut owned = shard.owned.borrow_mut();
        let owned = &mut *owned;
        let total = owned
            .counts
            .local(app, channel)
            .saturating_add(owned.nodes.counted_elsewhere(app, channel));
        owned
            .counts
            .announce(app, channel, total, Instant::now(), counted)
    };
    if let Some(count) = announce {
        announce_count(shard, app, channel.into(), count, webhooks);
    }
}

/// Tells `count` to the channel's subscribers on this node (when the app
/// enables it) and to the `subscription_count` webhook (from the node that
/// decides the channel's webhooks).
fn announce_count(shard: &Shard, app: AppIdx, channel: Box<str>, count: u32, webhooks: bool) {
    if webhooks
        && webhook_events::wanted(shard, app, EventKind::SubscriptionCount)
        && nodes::decides_webhooks(shard, app, &channel)
    {
        webhook_events::emit(
            shard,
            app,
            WebhookEvent::SubscriptionCount {
                channel: channel.clone(),
                count,
            },
        );
    }
    if counts_announced(shard, app, &channel) {
        let frame = subscription_count_event(&channel, count);
        publish_on_node(
            shard,
            Publication::one(app, channel, frame, None, Source::owner(shard.id)),
        );
    }
}

/// Announces counts held back by the large-channel rate limit (from the tick).
pub fn flush_due_counts(shard: &Shard) {
    let due = shard.owned.borrow_mut().counts.due(Instant::now());
    for (app, channel, count) in due {
        announce_count(shard, app, channel, count, true);
    }
}

/// Owner side of a user's connection coming or going on this node: the
/// other nodes are told of its first and last connection here, and the
/// watchers when the user came online or went offline in the whole cluster.
pub fn on_user_presence(shard: &Shard, app: AppIdx, user_id: Box<str>, online: bool) {
    let change = shard
        .owned
        .borrow_mut()
        .users
        .set_presence(app, &user_id, online);
    if change.edge_here {
        nodes::tell_user(shard, app, &user_id, online);
    }
    tell_watchers(shard, online, user_id, change.watchers);
}

/// `online` / `offline` for `user_id` to each of `watchers`.
pub fn tell_watchers(shard: &Shard, online: bool, user_id: Box<str>, watchers: Vec<SocketId>) {
    if watchers.is_empty() {
        return;
    }
    let frame = watchlist_event(online, std::slice::from_ref(&user_id));
    for watcher in watchers {
        shard.post(
            watcher.shard as usize,
            ShardMsg::ToSocket {
                socket: watcher,
                frame: frame.clone(),
            },
        );
    }
}

/// Owner side of a watch: remember the watcher, tell it who is online now.
pub fn on_watch(shard: &Shard, app: AppIdx, watcher: SocketId, users: Vec<Box<str>>, watch: bool) {
    let online = shard
        .owned
        .borrow_mut()
        .users
        .watch(app, watcher, &users, watch);
    if watch && !online.is_empty() {
        let frame = watchlist_event(true, &online);
        shard.post(
            watcher.shard as usize,
            ShardMsg::ToSocket {
                socket: watcher,
                frame,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_and_are_stable() {
        let a = owner_of(AppIdx(0), "presence-x", 4);
        assert_eq!(a, owner_of(AppIdx(0), "presence-x", 4));
        assert_eq!(owner_of(AppIdx(0), "anything", 1), 0);
        let mut seen = [0; 4];
        for i in 0..400 {
            seen[owner_of(AppIdx(0), &format!("c{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
