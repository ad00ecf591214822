//! One module per client command.

pub mod alias;
pub mod deploy;
pub mod dlq;
pub mod get;
pub mod init;
pub mod instances;
pub mod invoke;
pub mod list;
pub mod logs;
pub mod nodes;
pub mod provision;
pub mod remove;
pub mod schedule;
pub mod usage;
pub mod versions;
