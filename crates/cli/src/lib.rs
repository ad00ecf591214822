//! The `nimbus` client commands: they talk to a Nimbus server through the Lambda API.

mod client;
mod commands;
mod manifest;

use clap::{Subcommand, ValueEnum};

pub use client::{Client, ClientError};
pub use commands::{deploy::DeployArgs, init::InitArgs, invoke::InvokeArgs};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Readable text.
    #[default]
    Human,
    /// JSON, for scripts.
    Json,
}

/// Options every client command shares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's base URL.
    pub endpoint: String,
    /// How to print results.
    pub output: Output,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a ready-to-deploy function template in DIR.
    Init(InitArgs),
    /// Zip and upload a function, creating or updating it.
    Deploy(DeployArgs),
    /// Invoke a function and print its result.
    Invoke(InvokeArgs),
    /// List functions.
    Ls,
    /// Show a function's configuration.
    Get {
        /// The function's name.
        name: String,
    },
    /// Publish $LATEST as a new immutable version.
    Publish {
        /// The function's name.
        name: String,
        /// The version's description.
        #[arg(long)]
        description: Option<String>,
    },
    /// List a function's versions.
    Versions {
        /// The function's name.
        name: String,
    },
    /// Manage aliases (names for versions, with traffic shifting).
    #[command(subcommand)]
    Alias(commands::alias::AliasCommand),
    /// Keep instances of a version or alias warm ahead of demand.
    Provision {
        /// NAME:VERSION or NAME:ALIAS.
        target: String,
        /// How many instances (0 stops).
        #[arg(long)]
        count: u32,
    },
    /// Show a function's invocation logs, or follow them.
    Logs(commands::logs::LogsArgs),
    /// Requests, GB-seconds and cost per function and day.
    Usage(commands::usage::UsageArgs),
    /// Invoke a function on a cron or rate expression.
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Inspect, re-drive or delete async events that could not be delivered.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Show live instances and cold/warm/throttle counters.
    Instances {
        /// Only this function's.
        name: Option<String>,
    },
    /// Show the cluster's nodes (`*` marks the one answering), their load and heartbeats.
    Nodes,
    /// Delete a function.
    Rm {
        /// The function's name.
        name: String,
    },
}

/// What a command run ended with: the process exit code.
pub type ExitCode = i32;

/// Runs a client command.
pub async fn run(command: Command, options: Options) -> anyhow::Result<ExitCode> {
    let client = Client::new(&options.endpoint)?;
    match command {
        Command::Init(args) => commands::init::run(args),
        Command::Deploy(args) => commands::deploy::run(&client, args, options.output).await,
        Command::Invoke(args) => commands::invoke::run(&client, args).await,
        Command::Ls => commands::list::run(&client, options.output).await,
        Command::Get { name } => commands::get::run(&client, &name, options.output).await,
        Command::Publish { name, description } => {
            commands::versions::publish(&client, &name, description, options.output).await
        }
        Command::Versions { name } => {
            commands::versions::list(&client, &name, options.output).await
        }
        Command::Alias(command) => commands::alias::run(&client, command, options.output).await,
        Command::Provision { target, count } => {
            commands::provision::run(&client, &target, count, options.output).await
        }
        Command::Logs(args) => commands::logs::run(&client, args, options.output).await,
        Command::Usage(args) => commands::usage::run(&client, args, options.output).await,
        Command::Schedule(command) => {
            commands::schedule::run(&client, command, options.output).await
        }
        Command::Dlq(command) => commands::dlq::run(&client, command, options.output).await,
        Command::Instances { name } => {
            commands::instances::run(&client, name.as_deref(), options.output).await
        }
        Command::Nodes => commands::nodes::run(&client, options.output).await,
        Command::Rm { name } => commands::remove::run(&client, &name).await,
    }
}
