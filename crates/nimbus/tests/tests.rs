//! End-to-end tests: each starts the real `nimbus` binary on a free port with a fresh data
//! directory and drives it as a user would, through the CLI and over HTTP.

mod support;

mod async_events;
mod cli;
mod config;
mod extensions;
mod lifecycle;
mod observability;
mod scheduler;
mod schedules;
