//! Execution environments ("instances"): one runtime process per instance, the Lambda
//! Runtime API endpoint that process talks to, and Nimbus's built-in runtime clients.
//!
//! The Runtime API is the instance-facing HTTP edge, so this crate is the one place below
//! `api` that serves HTTP; it only ever listens on loopback, one port per instance.

pub mod builtin;
pub mod instance;
pub mod launch;
mod output;
mod runtime_api;
mod shells;

pub use instance::{Instance, Invocation, Outcome};
pub use launch::{InitType, Launcher, RuntimeConfig};

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The instance's Runtime API endpoint could not be opened.
    #[error("opening the runtime api endpoint: {0}")]
    Endpoint(std::io::Error),
    /// The runtime process could not be started.
    #[error(transparent)]
    Spawn(#[from] nimbus_sandbox::SandboxError),
    /// The instance's cgroup could not be set up.
    #[error("setting up the instance's cgroup: {0}")]
    Cgroup(std::io::Error),
    /// Every unprivileged user id is held by a live instance.
    #[error("no free user id for a new instance: too many live instances")]
    NoUserIds,
    /// The built-in runtime clients could not be written out.
    #[error("installing built-in runtimes in {dir}: {source}")]
    Install {
        /// Where they were to go.
        dir: String,
        /// The failure.
        source: std::io::Error,
    },
}
