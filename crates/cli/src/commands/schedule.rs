//! `nimbus schedule add|ls|rm`: invoke a function on a cron or rate expression.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// The schedule commands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule: FUNCTION is invoked asynchronously with PAYLOAD at each fire.
    Add {
        /// The schedule's name.
        name: String,
        /// The function (NAME or NAME:ALIAS).
        #[arg(long)]
        function: String,
        /// Cron in UTC (5 fields, or 6 with seconds first) or rate(N minutes|hours|days).
        #[arg(long)]
        expression: String,
        /// The event each fire sends (JSON).
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// List schedules.
    Ls,
    /// Delete a schedule.
    Rm {
        /// The schedule's name.
        name: String,
    },
}

/// Runs a schedule command.
pub async fn run(
    client: &Client,
    command: ScheduleCommand,
    output: Output,
) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Add {
            name,
            function,
            expression,
            payload,
            disabled,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?;
            let body = json!({
                "name": name, "function": function, "expression": expression,
                "payload": payload, "enabled": !disabled,
            });
            let created = client
                .json(
                    client
                        .request(Method::POST, "/nimbus/v1/schedules")
                        .json(&body),
                )
                .await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                let next = created
                    .get("next_fire_ms")
                    .and_then(Value::as_i64)
                    .and_then(chrono::DateTime::from_timestamp_millis);
                println!(
                    "scheduled {name}: {function} on {expression}{}",
                    next.map(|t| format!(", next at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default()
                );
            }
        }
        ScheduleCommand::Ls => {
            let answer = client
                .json(client.request(Method::GET, "/nimbus/v1/schedules"))
                .await?;
            let schedules = answer
                .get("schedules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&schedules)?);
            } else if schedules.is_empty() {
                println!("no schedules; add one with `nimbus schedule add NAME --function F --expression 'rate(5 minutes)'`");
            } else {
                println!(
                    "{:<24} {:<24} {:<22} {:<8} NEXT FIRE",
                    "NAME", "FUNCTION", "EXPRESSION", "ENABLED"
                );
                for s in &schedules {
                    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let next = s
                        .get("next_fire_ms")
                        .and_then(Value::as_i64)
                        .and_then(chrono::DateTime::from_timestamp_millis);
                    println!(
                        "{:<24} {:<24} {:<22} {:<8} {}",
                        text("name"),
                        text("function"),
                        text("expression"),
                        s.get("enabled").and_then(Value::as_bool).unwrap_or(false),
                        next.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_default()
                    );
                }
            }
        }
        ScheduleCommand::Rm { name } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/nimbus/v1/schedules/{}", segment(&name)),
                ))
                .await?;
            println!("deleted schedule {name}");
        }
    }
    Ok(0)
}
