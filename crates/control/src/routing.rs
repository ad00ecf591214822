//! Which node runs an invocation. In a cluster each function has a home node (rendezvous
//! hashing over the live nodes, `core::placement`), so its warm instances gather in one
//! place; an invocation that arrives elsewhere is forwarded there, and runs here instead
//! when the home is saturated or cannot be reached. The answer is the same wherever it
//! ran. The forwarding itself is HTTP, so it lives in the `api` crate behind [`Forwarder`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nimbus_core::{Error, ErrorKind};
use nimbus_scheduler::InvokeResult;
use nimbus_store::ChangeFeed;

use crate::{Invoke, Membership, Platform, Result};

/// What the home node did with a forwarded invocation.
#[derive(Debug)]
pub enum Forwarded {
    /// It ran there (successfully or with a function error).
    Ran(InvokeResult),
    /// The home is at its limits: run it elsewhere.
    Saturated,
}

/// Why an invocation could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The home node did not answer (it may have just died).
    #[error("node {address} could not be reached: {why}")]
    Unreachable {
        /// The node's address.
        address: String,
        /// What went wrong.
        why: String,
    },
    /// The home node answered with an error of the platform's (not of the function's).
    #[error("{0}")]
    Refused(Error),
}

/// Talks to the other nodes: sends an invocation to run there (never forwarded again), and
/// tells them a function changed.
#[async_trait]
pub trait Forwarder: Send + Sync {
    /// Runs `invoke` on the node at `address`.
    async fn forward(
        &self,
        address: &str,
        invoke: &Invoke,
    ) -> std::result::Result<Forwarded, ForwardError>;
    /// Tells the node at `address` that `function` changed: it drops what it cached of it.
    async fn announce_change(
        &self,
        address: &str,
        function: &str,
    ) -> std::result::Result<(), ForwardError>;
    /// How many provisioned instances of `function`'s `version` are ready on the node at
    /// `address` (its home).
    async fn provisioned_ready(
        &self,
        address: &str,
        function: &str,
        version: &str,
    ) -> std::result::Result<u32, ForwardError>;
}

/// This node's view of the cluster, for routing.
pub(crate) struct Routing {
    pub(crate) membership: Arc<Membership>,
    pub(crate) forwarder: Arc<dyn Forwarder>,
    pub(crate) feed: Arc<dyn ChangeFeed>,
}

/// Longest a change waits for the other nodes to drop their cached copies before the
/// mutation answers (a node that does not answer in time reads the feed within a second).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(1);

/// How often a node reads the change feed for what it was not told.
const FEED_POLL: Duration = Duration::from_secs(1);

impl Platform {
    /// Routes invocations through the cluster from now on (to each function's home node),
    /// and keeps this node's cache in step with changes made on others (`feed`).
    pub async fn route_through(
        self: &Arc<Self>,
        membership: Arc<Membership>,
        forwarder: Arc<dyn Forwarder>,
        feed: Arc<dyn ChangeFeed>,
    ) -> Result<()> {
        let (_, start) = feed
            .changes_since(i64::MAX)
            .await
            .map_err(crate::store_error)?;
        let _ = self.routing.set(Routing {
            membership,
            forwarder,
            feed,
        });
        tokio::spawn(follow_changes(Arc::downgrade(self), start));
        // Provisioned instances on their functions' home nodes, from now on.
        self.reconcile_provisioned().await
    }

    /// A function changed through this node: its cached entries go here and, before this
    /// returns, on every live node that answers within [`ANNOUNCE_WAIT`]; the change feed
    /// tells the rest.
    pub(crate) async fn changed(&self, function: &str) {
        self.cache.invalidate(function);
        let Some(routing) = self.routing.get() else {
            return;
        };
        if let Err(e) = routing.feed.record_change(function).await {
            tracing::warn!(%function, error = %e, "recording a change in the feed failed; other nodes are told directly");
        }
        let me = routing.membership.node_id();
        let peers: Vec<String> = routing
            .membership
            .live_now()
            .into_iter()
            .filter(|n| n.beat.id != me)
            .map(|n| n.beat.address)
            .collect();
        let mut told = tokio::task::JoinSet::new();
        for address in peers {
            let forwarder = routing.forwarder.clone();
            let function = function.to_owned();
            told.spawn(async move {
                let result = tokio::time::timeout(
                    ANNOUNCE_WAIT,
                    forwarder.announce_change(&address, &function),
                )
                .await;
                (address, result)
            });
        }
        while let Some(joined) = told.join_next().await {
            match joined {
                Ok((_, Ok(Ok(())))) => {}
                Ok((address, Ok(Err(e)))) => {
                    tracing::warn!(%address, %function, error = %e, "a node was not told of a change; it reads the feed")
                }
                Ok((address, Err(_))) => {
                    tracing::warn!(%address, %function, "a node did not confirm a change in time; it reads the feed")
                }
                Err(e) => tracing::warn!(error = %e, "telling a node of a change failed"),
            }
        }
    }

    /// Another node changed `function`: what this node cached of it goes, and if the
    /// function is gone, so are its instances here.
    pub async fn apply_change(&self, function: &str) {
        self.cache.invalidate(function);
        if let Ok(None) = self.meta.get_function(function).await {
            self.scheduler.retire(function, None, None);
        }
    }

    /// The node (id, address) an invocation of `function` should run on, if not this one.
    pub(crate) fn home_elsewhere(&self, function: &str) -> Option<(String, String)> {
        self.routing.get()?.membership.home_elsewhere(function)
    }

    /// Invoke, in the cluster: on the function's home node, or here when that is this node,
    /// the home is saturated or cannot be reached.
    pub async fn invoke(self: &Arc<Self>, request: Invoke) -> Result<InvokeResult> {
        let home = match self.resolve(&request.function, request.qualifier.as_deref()) {
            Ok((name, _)) => self.home_elsewhere(&name),
            Err(e) => return Err(e),
        };
        let Some((node, address)) = home else {
            return self.invoke_here(request).await;
        };
        let Some(routing) = self.routing.get() else {
            return self.invoke_here(request).await;
        };
        match routing.forwarder.forward(&address, &request).await {
            Ok(Forwarded::Ran(result)) => Ok(result),
            Ok(Forwarded::Saturated) => {
                tracing::debug!(%node, function = %request.function, "home node saturated; running here");
                self.invoke_here(request).await
            }
            Err(ForwardError::Unreachable { address, why }) => {
                tracing::warn!(%node, %address, %why, "home node unreachable; running here");
                self.invoke_here(request).await
            }
            Err(ForwardError::Refused(e)) if e.kind == ErrorKind::Service => {
                tracing::warn!(%node, error = %e.message, "home node failed; running here");
                self.invoke_here(request).await
            }
            Err(ForwardError::Refused(e)) => Err(e),
        }
    }
}

/// Reads the change feed every [`FEED_POLL`] for changes made on other nodes that this one
/// was not told of (it was briefly unreachable, or the announcement was lost), until the
/// platform is gone.
async fn follow_changes(platform: std::sync::Weak<Platform>, mut seen: i64) {
    let mut tick = tokio::time::interval(FEED_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(platform) = platform.upgrade() else {
            return;
        };
        let Some(routing) = platform.routing.get() else {
            continue;
        };
        match routing.feed.changes_since(seen).await {
            Ok((functions, latest)) => {
                if latest - seen > nimbus_store::CHANGES_KEPT {
                    // Further behind than the feed keeps: drop everything.
                    platform.cache.clear();
                } else {
                    for function in functions {
                        platform.apply_change(&function).await;
                    }
                }
                seen = latest.max(seen);
            }
            Err(e) => tracing::warn!(error = %e, "reading the change feed failed; retrying"),
        }
        // Homes move as nodes come and go, and configurations change on other nodes.
        if let Err(e) = platform.reconcile_provisioned().await {
            tracing::warn!(error = %e, "reconciling provisioned concurrency failed; retrying");
        }
    }
}
