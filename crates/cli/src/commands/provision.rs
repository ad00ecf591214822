//! `nimbus provision NAME:QUALIFIER --count K`: keep K instances warm (0 stops).

use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// Sets (or, with 0, removes) provisioned concurrency for a version or alias.
pub async fn run(
    client: &Client,
    target: &str,
    count: u32,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let Some((function, qualifier)) = target.rsplit_once(':') else {
        bail!("name the version or alias to provision, e.g. `nimbus provision {target}:live --count 2`");
    };
    let path = format!(
        "/2019-09-30/functions/{}/provisioned-concurrency",
        segment(function)
    );
    let request = client
        .request(
            if count == 0 {
                Method::DELETE
            } else {
                Method::PUT
            },
            &path,
        )
        .query(&[("Qualifier", qualifier)]);
    if count == 0 {
        client.send(request).await?;
        println!("{target} is no longer provisioned");
        return Ok(0);
    }
    let answer = client
        .json(request.json(&json!({ "ProvisionedConcurrentExecutions": count })))
        .await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "{target}: {} instances requested ({}); `nimbus instances {function}` shows them",
            count,
            answer.get("Status").and_then(Value::as_str).unwrap_or("?")
        );
    }
    Ok(0)
}
