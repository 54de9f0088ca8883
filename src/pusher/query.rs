//! The HTTP API's channel queries, answered by gathering each shard's part:
//! every shard counts its own subscribers, and a channel's owner adds what
//! only it knows (presence users, the cached event). In a cluster, every
//! other node adds its part through the link ([`ask_cluster`]).

use super::shard::Shard;
use crate::apps::AppIdx;
use crate::cluster::{NodeMsg, RemoteAsk, RemotePart};
use crate::errors::ApiError;
use crate::pusher::owned::owner_of;
use crate::runtime::sleep;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

/// A question sent to every shard (or to one channel's owner).
#[derive(Debug, Clone)]
pub enum QueryAsk {
    /// Occupied channels whose name starts with `prefix`.
    Channels { app: AppIdx, prefix: Box<str> },
    /// One channel's counts and cache.
    Channel { app: AppIdx, channel: Box<str> },
    /// A presence channel's user ids (asked of its owner).
    Users { app: AppIdx, channel: Box<str> },
    /// The app's open connections.
    Connections { app: AppIdx },
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
    /// The app's open connections (for [`QueryAsk::Connections`]).
    pub connections: u32,
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
                out.cache = owned
                    .cache
                    .get(*app, channel)
                    .map(|(e, left)| (e.data.clone(), left.as_secs()));
            }
        }
        QueryAsk::Users { app, channel } => {
            if let Some(members) = owned.presence.get(&(*app, channel.clone())) {
                out.user_ids = members.user_ids().into_iter().map(Box::from).collect();
            }
        }
        QueryAsk::Connections { app } => {
            out.connections = shard.conns.borrow().count_of(*app) as u32;
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

/// The app's open connections over all answers.
pub fn connections(answers: &[QueryAnswer]) -> u32 {
    answers
        .iter()
        .fold(0u32, |n, a| n.saturating_add(a.connections))
}

/// How long a channel query waits for the other nodes' parts.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(1);

/// This shard's channel queries waiting for other nodes' parts.
#[derive(Default)]
pub struct ClusterQueries {
    next: Cell<u32>,
    pending: RefCell<HashMap<u32, Gather>>,
}

#[derive(Default)]
struct Gather {
    parts: Vec<RemotePart>,
    waker: Option<Waker>,
}

/// Every shard's answer on this node, plus the part of every other live
/// node of the cluster (subscriber and connection counts, cached events;
/// presence members are on every node already). A node that does not answer within
/// `REMOTE_TIMEOUT` (1 s) is left out (it may have died); a shard of this
/// node that does not answer fails the query ([`Shard::ask_all`]).
pub async fn ask_cluster(shard: &Shard, ask: QueryAsk) -> Result<Vec<QueryAnswer>, ApiError> {
    let mut answers = shard.ask_all(ask.clone()).await?;
    let Some(cluster) = &shard.cluster else {
        return Ok(answers);
    };
    let expected = cluster.live_nodes.load(Ordering::Relaxed);
    let (app, remote) = match ask {
        QueryAsk::Channels { app, prefix } => (app, RemoteAsk::Channels(prefix)),
        QueryAsk::Channel { app, channel } => (app, RemoteAsk::Channel(channel)),
        QueryAsk::Connections { app } => (app, RemoteAsk::Connections),
        QueryAsk::Users { .. } => return Ok(answers),
    };
    if expected == 0 {
        return Ok(answers);
    }
    let queries = &shard.cluster_queries;
    let id = queries.next.get().wrapping_add(1);
    queries.next.set(id);
    queries.pending.borrow_mut().insert(id, Gather::default());
    let msg = NodeMsg::Query {
        id,
        shard: shard.id,
        app: shard.apps.get(app).id.as_str().into(),
        ask: remote,
    };
    cluster.send(&msg).await;
    let all_in = futures_lite::future::poll_fn(|cx| {
        let mut pending = queries.pending.borrow_mut();
        match pending.get_mut(&id) {
            Some(g) if g.parts.len() < expected => {
                g.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    });
    futures_lite::future::or(all_in, sleep(REMOTE_TIMEOUT)).await;
    let gather = queries.pending.borrow_mut().remove(&id).unwrap_or_default();
    if gather.parts.len() < expected {
        log::warn!(
            "cluster: channel query answered by {} of {expected} other nodes within {} ms",
            gather.parts.len(),
            REMOTE_TIMEOUT.as_millis()
        );
    }
    answers.extend(gather.parts.into_iter().map(|p| QueryAnswer {
        subscriptions: p.subscriptions,
        cache: p.cache,
        connections: p.connections,
        ..QueryAnswer::default()
    }));
    Ok(answers)
}

/// Another node's part of this shard's query `id`.
pub fn on_remote_answer(shard: &Shard, id: u32, part: &RemotePart) {
    let mut pending = shard.cluster_queries.pending.borrow_mut();
    if let Some(g) = pending.get_mut(&id) {
        g.parts.push(part.clone());
        if let Some(w) = g.waker.take() {
            w.wake();
        }
    }
}

/// Answers another node's query with this node's part.
pub async fn answer_remote(
    shard: Rc<Shard>,
    from: u64,
    id: u32,
    to_shard: u16,
    app: AppIdx,
    ask: RemoteAsk,
) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let ask = match ask {
        RemoteAsk::Channels(prefix) => QueryAsk::Channels { app, prefix },
        RemoteAsk::Channel(channel) => QueryAsk::Channel { app, channel },
        RemoteAsk::Connections => QueryAsk::Connections { app },
    };
    // A shard of this node that does not answer: no part is sent, and the
    // asking node leaves this node out when its time is up.
    let Ok(answers) = shard.ask_all(ask).await else {
        return;
    };
    let part = RemotePart {
        subscriptions: merge(&answers)
            .into_iter()
            .filter(|(_, t)| t.subscription_count > 0)
            .map(|(name, t)| (name, t.subscription_count))
            .collect(),
        cache: answers.iter().find_map(|a| a.cache.clone()),
        connections: connections(&answers),
    };
    cluster.send_now(&NodeMsg::Answer {
        to: from,
        id,
        shard: to_shard,
        part,
    });
}
