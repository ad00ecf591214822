//! `nimbus instances [NAME]`: what is warm, starting or busy now.

use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::{ExitCode, Output};

/// Prints live instances (of one function, if named) and per-function counters.
pub async fn run(
    client: &Client,
    function: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut request = client.request(Method::GET, "/nimbus/v1/instances");
    if let Some(f) = function {
        request = request.query(&[("function", f)]);
    }
    let answer = client.json(request).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(0);
    }
    let instances = answer
        .get("instances")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if instances.is_empty() {
        println!("no live instances (functions scale to zero when idle)");
    } else {
        println!(
            "{:<34} {:<24} {:<8} {:<9} {:>9} {:>6} {:>9} {:>8}",
            "ID", "FUNCTION", "VERSION", "STATE", "AGE", "CALLS", "INIT", "PID"
        );
        for i in &instances {
            let text = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let num = |k: &str| i.get(k).and_then(Value::as_u64).unwrap_or(0);
            let init = i
                .get("init_ms")
                .and_then(Value::as_f64)
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms"));
            println!(
                "{:<34} {:<24} {:<8} {:<9} {:>8.1}s {:>6} {:>9} {:>8}",
                text("id"),
                text("function"),
                text("version"),
                text("state"),
                num("age_ms") as f64 / 1000.0,
                num("invocations"),
                init,
                num("pid")
            );
        }
    }
    if let Some(functions) = answer.get("functions").and_then(Value::as_array) {
        if !functions.is_empty() {
            println!(
                "\n{:<24} {:>11} {:>11} {:>10}",
                "FUNCTION", "COLD STARTS", "WARM STARTS", "THROTTLES"
            );
            for f in functions {
                let num = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
                println!(
                    "{:<24} {:>11} {:>11} {:>10}",
                    f.get("function").and_then(Value::as_str).unwrap_or(""),
                    num("cold_starts"),
                    num("warm_starts"),
                    num("throttles")
                );
            }
        }
    }
    Ok(0)
}
