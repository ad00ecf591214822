//! One module per client command.

pub mod deploy;
pub mod get;
pub mod init;
pub mod instances;
pub mod invoke;
pub mod list;
pub mod remove;
