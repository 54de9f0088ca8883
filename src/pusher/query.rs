//! The HTTP API's channel queries, answered by gathering each shard's part:
//! every shard counts its own subscribers, and a channel's owner adds what
//! only it knows (presence users, the cached event).

use crate::apps::AppIdx;
use crate::pusher::owned::owner_of;
use crate::runtime::Shard;
use std::collections::BTreeMap;

/// A question sent to every shard (or to one channel's owner).
#[derive(Debug, Clone)]
pub enum QueryAsk {
    /// Occupied channels whose name starts with `prefix`.
    Channels { app: AppIdx, prefix: Box<str> },
    /// One channel's counts and cache.
    Channel { app: AppIdx, channel: Box<str> },
    /// A presence channel's user ids (asked of its owner).
    Users { app: AppIdx, channel: Box<str> },
}

/// One shard's part of the answer.
#[derive(Debug, Clone, Default)]
pub struct QueryAnswer {
    /// Channel name → this shard's subscriber count.
    pub subscriptions: Vec<(Box<str>, u32)>,
    /// Presence channel name → distinct users (from the owner only).
    pub users: Vec<(Box<str>, u32)>,
    /// The cached event's data and seconds left (owner only).
    pub cache: Option<(Box<str>, u64)>,
    pub user_ids: Vec<Box<str>>,
}

/// This shard's part of the answer to `ask`.
pub fn answer(shard: &Shard, ask: &QueryAsk) -> QueryAnswer {
    let mut out = QueryAnswer::default();
    let channels = shard.channels.borrow();
    let owned = shard.owned.borrow();
    match ask {
        QueryAsk::Channels { app, prefix } => {
            out.subscriptions = channels
                .iter_app(*app)
                .filter(|(name, _)| name.starts_with(&**prefix))
                .map(|(name, n)| (Box::from(name), n))
                .collect();
            out.users = owned
                .presence
                .iter()
                .filter(|((a, name), _)| a == app && name.starts_with(&**prefix))
                .map(|((_, name), members)| (name.clone(), members.user_count() as u32))
                .collect();
        }
        QueryAsk::Channel { app, channel } => {
            let subs = channels.subscribers(*app, channel).len() as u32;
            if subs > 0 {
                out.subscriptions.push((channel.clone(), subs));
            }
            if owner_of(*app, channel, shard.count) == shard.id as usize {
                if let Some(members) = owned.presence.get(&(*app, channel.clone())) {
                    out.users
                        .push((channel.clone(), members.user_count() as u32));
                }
                let ttl = shard.apps.get(*app).cache_ttl;
                out.cache = owned
                    .cache
                    .get(*app, channel, ttl)
                    .map(|(e, left)| (e.data.clone(), left.as_secs()));
            }
        }
        QueryAsk::Users { app, channel } => {
            if let Some(members) = owned.presence.get(&(*app, channel.clone())) {
                out.user_ids = members.user_ids().into_iter().map(Box::from).collect();
            }
        }
    }
    out
}

/// Channel-wide totals merged from every shard's answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelTotals {
    pub subscription_count: u32,
    pub user_count: Option<u32>,
}

/// Merges per-shard answers into per-channel totals, by channel name.
pub fn merge(answers: &[QueryAnswer]) -> BTreeMap<Box<str>, ChannelTotals> {
    let mut totals: BTreeMap<Box<str>, ChannelTotals> = BTreeMap::new();
    for a in answers {
        for (name, n) in &a.subscriptions {
            totals.entry(name.clone()).or_default().subscription_count += n;
        }
        for (name, n) in &a.users {
            *totals
                .entry(name.clone())
                .or_default()
                .user_count
                .get_or_insert(0) += n;
        }
    }
    totals
}
