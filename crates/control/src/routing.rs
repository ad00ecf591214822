//! Which node runs an invocation. In a cluster each function has a home node (rendezvous
//! hashing over the live nodes, `core::placement`), so its warm instances gather in one
//! place; an invocation that arrives elsewhere is forwarded there, and runs here instead
//! when the home is saturated or cannot be reached. The answer is the same wherever it
//! ran. The forwarding itself is HTTP, so it lives in the `api` crate behind [`Forwarder`].

use std::sync::Arc;

use async_trait::async_trait;
use nimbus_core::{Error, ErrorKind};
use nimbus_scheduler::InvokeResult;

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

/// Sends an invocation to another node, which runs it without forwarding it again.
#[async_trait]
pub trait Forwarder: Send + Sync {
    /// Runs `invoke` on the node at `address`.
    async fn forward(
        &self,
        address: &str,
        invoke: &Invoke,
    ) -> std::result::Result<Forwarded, ForwardError>;
}

/// This node's view of the cluster, for routing.
pub(crate) struct Routing {
    pub(crate) membership: Arc<Membership>,
    pub(crate) forwarder: Arc<dyn Forwarder>,
}

impl Platform {
    /// Routes invocations through the cluster from now on: to each function's home node.
    pub fn route_through(&self, membership: Arc<Membership>, forwarder: Arc<dyn Forwarder>) {
        let _ = self.routing.set(Routing {
            membership,
            forwarder,
        });
    }

    /// The node an invocation of `function` should run on, if not this one.
    fn home_elsewhere(&self, function: &str) -> Option<(String, String)> {
        let routing = self.routing.get()?;
        let live = routing.membership.live_now();
        let home = nimbus_core::placement::home(function, live.iter().map(|n| n.beat.id.as_str()))?;
        if home == routing.membership.node_id() {
            return None;
        }
        live.iter()
            .find(|n| n.beat.id == home)
            .map(|n| (n.beat.id.clone(), n.beat.address.clone()))
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
