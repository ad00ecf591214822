//! `nimbus ls`.

use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::{ExitCode, Output};

/// Lists every function, following list pages.
pub async fn run(client: &Client, output: Output) -> anyhow::Result<ExitCode> {
    let mut functions: Vec<Value> = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut request = client.request(Method::GET, "/2015-03-31/functions/");
        if let Some(m) = &marker {
            request = request.query(&[("Marker", m)]);
        }
        let page = client.json(request).await?;
        if let Some(items) = page.get("Functions").and_then(Value::as_array) {
            functions.extend(items.iter().cloned());
        }
        marker = page
            .get("NextMarker")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
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
