//! The data plane: turns an invocation of a function into an answer. Per function version
//! it keeps a pool of warm instances (frozen while idle), cold-starts new ones within the
//! node's concurrency and memory limits and each function's reserved concurrency, queues
//! briefly and then throttles when over a limit, and reclaims idle instances after their
//! keep-alive, down to zero.

mod outcome;
mod scheduler;
mod state;

pub use outcome::InvokeResult;
pub use scheduler::{FunctionView, InstanceView, InvokeRequest, Scheduler, SchedulerConfig};
pub use state::{FunctionCounters, InstanceState, ThrottleReason};

/// A platform failure while invoking (not a function failure: those are results).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function's code could not be made ready on this node.
    #[error("preparing code: {0}")]
    Code(#[from] nimbus_store::StoreError),
    /// An instance could not be started.
    #[error("starting instance: {0}")]
    Start(#[from] nimbus_runtime::RuntimeError),
    /// A limit was reached and stayed reached for the queue timeout.
    #[error("throttled: {}", .0.as_str())]
    Throttled(ThrottleReason),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}
