//! `nimbus ls`.

use serde_json::Value;

use crate::client::Client;
use crate::{ExitCode, Output};

/// Lists every function, following list pages.
pub async fn run(client: &Client, output: Output) -> anyhow::Result<ExitCode> {
    let functions = client
        .all_pages("/2015-03-31/functions/", "Functions")
        .await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&functions)?);
        return Ok(0);
    }
    if functions.is_empty() {
        println!("no functions yet; create one with `nimbus init DIR` and `nimbus deploy DIR --name NAME`");
        return Ok(0);
    }
    println!(
        "{:<32} {:<16} {:>7} {:>8}  LAST MODIFIED",
        "NAME", "RUNTIME", "MEMORY", "TIMEOUT"
    );
    for f in &functions {
        let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let num = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "{:<32} {:<16} {:>5}MB {:>7}s  {}",
            text("FunctionName"),
            text("Runtime"),
            num("MemorySize"),
            num("Timeout"),
            text("LastModified")
        );
    }
    Ok(0)
}
