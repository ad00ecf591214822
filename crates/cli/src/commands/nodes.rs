//! `nimbus nodes`: the cluster's nodes, their load and their last heartbeat.

use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::{ExitCode, Output};

/// Prints every node the cluster knows, live or not.
pub async fn run(client: &Client, output: Output) -> anyhow::Result<ExitCode> {
    let answer = client
        .json(client.request(Method::GET, "/nimbus/v1/nodes"))
        .await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(0);
    }
    let nodes = answer
        .get("nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<34} {:<22} {:<8} {:>9} {:>5} {:>10} {:<5}",
        "NODE", "ADDRESS", "VERSION", "INSTANCES", "BUSY", "HEARTBEAT", "STATE"
    );
    for node in &nodes {
        let text = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let num = |k: &str| node.get(k).and_then(Value::as_u64).unwrap_or(0);
        let flag = |k: &str| node.get(k).and_then(Value::as_bool).unwrap_or(false);
        let id = if flag("this_node") {
            format!("{} *", text("id"))
        } else {
            text("id")
        };
        println!(
            "{:<34} {:<22} {:<8} {:>9} {:>5} {:>9.1}s {:<5}",
            id,
            text("address"),
            text("version"),
            num("live_instances"),
            num("busy_instances"),
            num("heartbeat_age_ms") as f64 / 1000.0,
            if flag("live") { "live" } else { "gone" }
        );
    }
    Ok(0)
}
