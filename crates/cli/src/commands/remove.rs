//! `nimbus rm NAME`.

use reqwest::Method;

use crate::client::{segment, Client};
use crate::ExitCode;

/// Deletes a function.
pub async fn run(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/2015-03-31/functions/{}", segment(name));
    client.send(client.request(Method::DELETE, &path)).await?;
    println!("deleted {name}");
    Ok(0)
}
