//! Cluster membership, a service of its own: this node records itself in the shared store
//! at start and then at every heartbeat (with its load), and leaves when it stops cleanly.
//! A node whose heartbeats stop is no longer *live*: it leaves placement, though its record
//! stays until it returns or an operator removes it.

use std::sync::Arc;
use std::time::Duration;

use nimbus_scheduler::{InstanceState, Scheduler};
use nimbus_store::{NodeBeat, NodeRecord, NodeStore};
use serde::Serialize;

use crate::{store_error, Result};

/// How membership behaves.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node's id, kept across its restarts.
    pub node_id: String,
    /// How other nodes reach this one (`host:port`).
    pub address: String,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Heartbeats a node may miss before it is no longer live.
    pub missed_beats: u32,
}

/// A node as `GET /nimbus/v1/nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// What the store knows of it.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Whether its heartbeats are current: only live nodes take part in placement.
    pub live: bool,
    /// Whether it is the node answering.
    pub this_node: bool,
}

/// This node's membership in the cluster.
pub struct Membership {
    store: Arc<dyn NodeStore>,
    scheduler: Arc<Scheduler>,
    config: MembershipConfig,
    started_ms: i64,
    /// The live nodes as of the last heartbeat, for placement (no store read per invoke).
    live: std::sync::RwLock<Vec<NodeRecord>>,
}

impl Membership {
    /// Records this node now and keeps heartbeating in the background until the node
    /// leaves or the service is dropped.
    pub async fn start(
        store: Arc<dyn NodeStore>,
        scheduler: Arc<Scheduler>,
        config: MembershipConfig,
    ) -> Result<Arc<Self>> {
        let membership = Arc::new(Membership {
            store,
            scheduler,
            config,
            started_ms: chrono::Utc::now().timestamp_millis(),
            live: std::sync::RwLock::new(Vec::new()),
        });
        membership.beat().await?;
        tokio::spawn(beat_forever(Arc::downgrade(&membership)));
        Ok(membership)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Records one heartbeat with this node's current load.
    async fn beat(&self) -> Result<()> {
        let instances = self.scheduler.instances(None);
        let busy = instances
            .iter()
            .filter(|i| i.state == InstanceState::Busy)
            .count();
        let beat = NodeBeat {
            id: self.config.node_id.clone(),
            address: self.config.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms: self.started_ms,
            live_instances: u32::try_from(instances.len()).unwrap_or(u32::MAX),
            busy_instances: u32::try_from(busy).unwrap_or(u32::MAX),
        };
        self.store.heartbeat(&beat).await.map_err(store_error)?;
        self.live_nodes().await.map(drop)
    }

    /// The live nodes as of the last heartbeat (this one among them while it beats).
    pub fn live_now(&self) -> Vec<NodeRecord> {
        match self.live.read() {
            Ok(known) => known.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The home node (id, address) of `key` among the live nodes, if it is another node.
    /// On the invoke path: no copy of the membership, and nothing to hash when this node
    /// is alone.
    pub fn home_elsewhere(&self, key: &str) -> Option<(String, String)> {
        let live = match self.live.read() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        };
        if live.len() <= 1 {
            return None;
        }
        let home = nimbus_core::placement::home(key, live.iter().map(|n| n.beat.id.as_str()))?;
        if home == self.config.node_id {
            return None;
        }
        live.iter()
            .find(|n| n.beat.id == home)
            .map(|n| (n.beat.id.clone(), n.beat.address.clone()))
    }

    /// How old a heartbeat may be for its node to count as live.
    fn live_within_ms(&self) -> i64 {
        let window = self.config.heartbeat * self.config.missed_beats.max(1);
        i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Every node the store knows, live or not, by id (what placement uses is brought up
    /// to date on the way).
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let within = self.live_within_ms();
        let records = self.store.nodes().await.map_err(store_error)?;
        let nodes: Vec<NodeView> = records
            .into_iter()
            .map(|record| NodeView {
                live: record.heartbeat_age_ms <= within,
                this_node: record.beat.id == self.config.node_id,
                record,
            })
            .collect();
        let live: Vec<NodeRecord> = nodes
            .iter()
            .filter(|n| n.live)
            .map(|n| n.record.clone())
            .collect();
        match self.live.write() {
            Ok(mut known) => *known = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
        Ok(nodes)
    }

    /// The nodes that take part in placement now.
    pub async fn live_nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.live)
            .map(|n| n.record)
            .collect())
    }

    /// Takes this node out of the cluster (a clean stop): others see it gone at once.
    pub async fn leave(&self) {
        if let Err(e) = self.store.leave(&self.config.node_id).await {
            tracing::warn!(error = %e, "could not record this node's leaving; it drops out when its heartbeats stop");
        }
    }
}

/// Heartbeats until the service is gone; a failed beat is logged and retried at the next.
async fn beat_forever(membership: std::sync::Weak<Membership>) {
    let Some(interval) = membership.upgrade().map(|m| m.config.heartbeat) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first beat was at start
    loop {
        tick.tick().await;
        let Some(membership) = membership.upgrade() else {
            return;
        };
        if let Err(e) = membership.beat().await {
            tracing::warn!(error = %e, "a heartbeat failed; this node may drop out of the cluster until the next succeeds");
        }
    }
}
