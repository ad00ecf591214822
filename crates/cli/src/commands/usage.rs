//! `nimbus usage [--from DAY] [--to DAY] [--function N]`: the bill.

use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::{ExitCode, Output};

/// Arguments of `nimbus usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this function.
    #[arg(long)]
    pub function: Option<String>,
}

/// Prints requests, GB-seconds and cost per function and day, and the total.
pub async fn run(client: &Client, args: UsageArgs, output: Output) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (key, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("function", &args.function),
    ] {
        if let Some(v) = value {
            query.push((key, v.clone()));
        }
    }
    let bill = client
        .json(
            client
                .request(Method::GET, "/nimbus/v1/usage")
                .query(&query),
        )
        .await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&bill)?);
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:>10} {:>16} {:>14} {:>12}",
        "FUNCTION", "DAY", "REQUESTS", "BILLED GB-S", "OF WHICH INIT", "COST (USD)"
    );
    for line in bill
        .get("functions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| line.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let num = |k: &str| line.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "{:<24} {:<10} {:>10} {:>16.6} {:>14.6} {:>12.8}",
            text("function"),
            text("day"),
            line.get("requests").and_then(Value::as_u64).unwrap_or(0),
            num("billed_gb_seconds"),
            num("init_gb_seconds"),
            num("cost")
        );
    }
    let total = bill.get("total").cloned().unwrap_or(Value::Null);
    println!(
        "{:<35} {:>10} {:>16.6} {:>14} {:>12.8}",
        "TOTAL",
        total.get("requests").and_then(Value::as_u64).unwrap_or(0),
        total
            .get("billed_gb_seconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        "",
        total.get("cost").and_then(Value::as_f64).unwrap_or(0.0)
    );
    Ok(0)
}
