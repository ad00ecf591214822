//! The `nimbus` binary: the server and the client commands, as one program.

mod datadir;
mod parts;
mod server;
mod stores;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Nimbus: a self-hosted functions-as-a-service platform that speaks the AWS Lambda API.
#[derive(Debug, Parser)]
#[command(name = "nimbus", version, about)]
struct Cli {
    /// The server the client commands talk to.
    #[arg(
        long,
        global = true,
        env = "NIMBUS_ENDPOINT",
        default_value = "http://127.0.0.1:9300"
    )]
    endpoint: String,
    /// How client commands print results.
    #[arg(long, global = true, value_enum, default_value = "human")]
    output: nimbus_cli::Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Nimbus server.
    Server(Box<nimbus_config::ServerArgs>),
    #[command(flatten)]
    Client(nimbus_cli::Command),
}

/// The hidden command the server starts each instance's jailer with.
const JAIL_COMMAND: &str = "jail";

fn main() {
    // The jailer: before anything else, so it stays single-threaded.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == JAIL_COMMAND)
    {
        nimbus_sandbox::jail::main();
    }
    // The matches are kept: which settings came from a flag or variable decides what
    // overrides the config file.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                let server_matches = matches.subcommand_matches("server").unwrap_or(&matches);
                server::run(&args, server_matches).await.map(|()| 0)
            }
            Command::Client(command) => {
                let options = nimbus_cli::Options {
                    endpoint: cli.endpoint,
                    output: cli.output,
                };
                nimbus_cli::run(command, options).await
            }
        }
    });
    // Dropping the runtime here would wait for instance tasks; exit directly instead.
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
