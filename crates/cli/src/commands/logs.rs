//! `nimbus logs NAME [--follow] [--since 10m] [--request ID] [--grep TEXT]`.

use anyhow::Context;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// Arguments of `nimbus logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The function.
    pub name: String,
    /// Keep printing new invocations as they finish.
    #[arg(long, short)]
    pub follow: bool,
    /// Only invocations since this age (e.g. 10m, 2h, 1d) or epoch milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this invocation.
    #[arg(long)]
    pub request: Option<String>,
    /// Only invocations whose log contains this text.
    #[arg(long)]
    pub grep: Option<String>,
    /// At most this many of the stored invocations (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

fn print_entry(entry: &Value, output: Output) {
    if output == Output::Json {
        println!("{entry}");
    } else if let Some(text) = entry.get("text").and_then(Value::as_str) {
        print!("{text}");
    }
}

/// Prints stored invocation logs, then (with --follow) new ones as they come.
pub async fn run(client: &Client, args: LogsArgs, output: Output) -> anyhow::Result<ExitCode> {
    let path = format!("/nimbus/v1/functions/{}/logs", segment(&args.name));
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    if let Some(s) = &args.since {
        query.push(("since", s.clone()));
    }
    if let Some(r) = &args.request {
        query.push(("request_id", r.clone()));
    }
    if let Some(g) = &args.grep {
        query.push(("grep", g.clone()));
    }
    if !args.follow {
        let answer = client
            .json(client.request(Method::GET, &path).query(&query))
            .await?;
        for entry in answer
            .get("logs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            print_entry(entry, output);
        }
        return Ok(0);
    }
    query.push(("follow", "true".to_owned()));
    let response = client
        .send(client.request(Method::GET, &path).query(&query))
        .await?;
    let mut stream = response.bytes_stream();
    let mut pending = String::new();
    while let Some(chunk) = stream.next().await {
        pending.push_str(&String::from_utf8_lossy(
            &chunk.context("reading the log stream")?,
        ));
        // Server-sent events are separated by a blank line; `data:` lines carry the entry.
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(entry) = serde_json::from_str::<Value>(data.trim_start()) {
                    print_entry(&entry, output);
                }
            }
        }
    }
    Ok(0)
}
