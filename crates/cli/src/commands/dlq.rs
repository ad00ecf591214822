//! `nimbus dlq ls|redrive|rm`: async events that could not be delivered.

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// The dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (of one function, if named).
    Ls {
        /// Only this function's.
        function: Option<String>,
    },
    /// Send a dead letter back for delivery, or all of them (of `--function`) with `--all`.
    Redrive {
        /// The dead letter's id.
        id: Option<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: only this function's.
        #[arg(long, requires = "all")]
        function: Option<String>,
    },
    /// Delete a dead letter for good.
    Rm {
        /// The dead letter's id.
        id: String,
    },
}

/// Runs a dead-letter command.
pub async fn run(client: &Client, command: DlqCommand, output: Output) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::Ls { function } => {
            let mut request = client.request(Method::GET, "/nimbus/v1/dead-letters");
            if let Some(f) = &function {
                request = request.query(&[("function", f)]);
            }
            let answer = client.json(request).await?;
            let letters = answer
                .get("dead_letters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:<38} {:<24} {:<18} {:>8}  PAYLOAD",
                    "ID", "FUNCTION", "CONDITION", "ATTEMPTS"
                );
                for l in &letters {
                    let text = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    println!(
                        "{:<38} {:<24} {:<18} {:>8}  {}",
                        text("id"),
                        text("function"),
                        text("condition"),
                        l.get("attempts").and_then(Value::as_u64).unwrap_or(0),
                        l.get("payload").map(Value::to_string).unwrap_or_default()
                    );
                }
            }
        }
        DlqCommand::Redrive { id, all, function } => {
            let request = match (id, all) {
                (Some(id), _) => client.request(
                    Method::POST,
                    &format!("/nimbus/v1/dead-letters/{}/redrive", segment(&id)),
                ),
                (None, true) => {
                    let mut r = client.request(Method::POST, "/nimbus/v1/dead-letters/redrive");
                    if let Some(f) = &function {
                        r = r.query(&[("function", f)]);
                    }
                    r
                }
                (None, false) => anyhow::bail!("name a dead letter's id, or pass --all"),
            };
            let answer = client.json(request).await?;
            println!(
                "re-driven: {}",
                answer.get("redriven").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        DlqCommand::Rm { id } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/nimbus/v1/dead-letters/{}", segment(&id)),
                ))
                .await?;
            println!("deleted dead letter {id}");
        }
    }
    Ok(0)
}
