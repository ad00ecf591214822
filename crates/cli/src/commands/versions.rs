//! `nimbus publish NAME` and `nimbus versions NAME`.

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// Publishes `$LATEST` as a new version (or names the last one if nothing changed).
pub async fn publish(
    client: &Client,
    name: &str,
    description: Option<String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let path = format!("/2015-03-31/functions/{}/versions", segment(name));
    let mut body = json!({});
    if let Some(d) = description {
        body["Description"] = json!(d);
    }
    let version = client
        .json(client.request(Method::POST, &path).json(&body))
        .await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&version)?);
    } else {
        println!(
            "published {name} version {}",
            version
                .get("Version")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
    }
    Ok(0)
}

/// Lists `$LATEST` and the published versions.
pub async fn list(client: &Client, name: &str, output: Output) -> anyhow::Result<ExitCode> {
    let path = format!("/2015-03-31/functions/{}/versions", segment(name));
    let all = client.all_pages(&path, "Versions").await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    println!(
        "{:<9} {:<46} {:<30} LAST MODIFIED",
        "VERSION", "CODE SHA256", "DESCRIPTION"
    );
    for v in &all {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        println!(
            "{:<9} {:<46} {:<30} {}",
            text("Version"),
            text("CodeSha256"),
            text("Description"),
            text("LastModified")
        );
    }
    Ok(0)
}
