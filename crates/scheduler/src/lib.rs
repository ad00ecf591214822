//! The data plane: turns an invocation of a function into an answer, reusing warm
//! instances, cold-starting new ones, retiring stale ones, and reclaiming idle ones.
//!
//! This is the simple per-function pool the foundation needs; admission control,
//! concurrency limits and provisioned instances build on it.

mod outcome;
mod pool;

pub use outcome::InvokeResult;
pub use pool::{InvokeRequest, Scheduler, SchedulerConfig};

/// A platform failure while invoking (not a function failure: those are results).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function's code could not be made ready on this node.
    #[error("preparing code: {0}")]
    Code(#[from] nimbus_store::StoreError),
    /// An instance could not be started.
    #[error("starting instance: {0}")]
    Start(#[from] nimbus_runtime::RuntimeError),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}
