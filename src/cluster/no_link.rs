//! The cluster link in a build without an engine (cargo features `redis`
//! and `nats` both off): the same names as `link.rs`, but no handle or
//! inbox can exist, so nothing reaches another node, and [`start`] refuses
//! every adapter but `local` at start-up, naming the missing feature.

use super::inbound::{Inbound, LinkStats, OwnerOf};
use super::wire::NodeMsg;
use crate::apps::SharedApps;
use crate::config::{Adapter, ClusterSettings};
use crate::errors::FeatureMissing;
use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// A shard's way to the link; never made in this build.
#[derive(Clone)]
pub struct ClusterHandle {
    never: Infallible,
    pub node: u64,
    pub stats: Arc<LinkStats>,
    pub live_nodes: Arc<AtomicUsize>,
}

impl ClusterHandle {
    pub fn send_now(&self, _msg: &NodeMsg) {
        match self.never {}
    }

    pub async fn send(&self, _msg: &NodeMsg) {
        match self.never {}
    }

    pub async fn shard_synced(&self, _gen: u64) {
        match self.never {}
    }

    pub fn engine_silence(&self) -> std::time::Duration {
        match self.never {}
    }

    pub fn bucket(&self, _app_id: &str, _channel: &str) -> super::route::Stream {
        match self.never {}
    }

    pub fn hold(&self, _bucket: super::route::Stream) -> bool {
        match self.never {}
    }

    pub fn release(&self, _bucket: super::route::Stream) {
        match self.never {}
    }

    pub async fn opened(&self, _bucket: super::route::Stream) {
        match self.never {}
    }
}

/// A shard's end of the link's deliveries; never made in this build.
pub struct ClusterInbox(Infallible);

impl ClusterInbox {
    pub async fn recv(&mut self) -> Option<Arc<Inbound>> {
        match self.0 {}
    }
}

/// The link thread; never started in this build.
pub struct LinkThread(Infallible);

impl LinkThread {
    pub fn stop(self) {
        match self.0 {}
    }
}

/// `None` for the local adapter; any other is refused.
#[allow(clippy::type_complexity)]
pub fn start(
    settings: &ClusterSettings,
    _apps: Arc<SharedApps>,
    _shards: usize,
    _owner_of: OwnerOf,
) -> Result<Option<(ClusterHandle, Vec<ClusterInbox>, LinkThread)>, String> {
    match settings.adapter {
        Adapter::Local => Ok(None),
        Adapter::Redis { .. } => Err(super::not_built("redis", FeatureMissing::REDIS)),
        Adapter::Nats { .. } => Err(super::not_built("nats", FeatureMissing::NATS)),
    }
}
