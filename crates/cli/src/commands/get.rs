//! `nimbus get NAME`.

use reqwest::Method;
use serde_json::Value;

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// Prints a function's configuration.
pub async fn run(client: &Client, name: &str, output: Output) -> anyhow::Result<ExitCode> {
    let path = format!("/2015-03-31/functions/{}", segment(name));
    let function = client.json(client.request(Method::GET, &path)).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&function)?);
        return Ok(0);
    }
    let config = function
        .get("Configuration")
        .cloned()
        .unwrap_or(Value::Null);
    for key in [
        "FunctionName",
        "FunctionArn",
        "Runtime",
        "Handler",
        "MemorySize",
        "Timeout",
        "CodeSize",
        "CodeSha256",
        "LastModified",
        "State",
        "RevisionId",
    ] {
        match config.get(key) {
            Some(Value::String(s)) => println!("{key:<14} {s}"),
            Some(other) => println!("{key:<14} {other}"),
            None => {}
        }
    }
    if let Some(vars) = config
        .pointer("/Environment/Variables")
        .and_then(Value::as_object)
    {
        for (k, v) in vars {
            println!(
                "{:<14} {k}={}",
                "Environment",
                v.as_str().unwrap_or_default()
            );
        }
    }
    Ok(0)
}
