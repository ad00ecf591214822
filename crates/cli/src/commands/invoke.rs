//! `nimbus invoke NAME [--data JSON|@file]`.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use reqwest::Method;

use crate::client::{segment, Client};
use crate::ExitCode;

/// Arguments of `nimbus invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function's name.
    pub name: String,
    /// The event: JSON text, or @FILE to read it from a file.
    #[arg(long, short)]
    pub data: Option<String>,
    /// Version or alias to invoke.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Queue the event and return at once (InvocationType Event): retried on errors, and
    /// kept as a dead letter if it keeps failing.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Also print the invocation's log (its last 4 KB) on stderr.
    #[arg(long)]
    pub log: bool,
}

/// Invokes and prints the result on stdout; a function error goes to stderr, exit 1.
pub async fn run(client: &Client, args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let payload = match args.data.as_deref() {
        None => b"{}".to_vec(),
        Some(file) if file.starts_with('@') => {
            std::fs::read(&file[1..]).with_context(|| format!("reading {}", &file[1..]))?
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let mut path = format!("/2015-03-31/functions/{}/invocations", segment(&args.name));
    if let Some(q) = &args.qualifier {
        path.push_str(&format!("?Qualifier={}", segment(q)));
    }
    let mut request = client.request(Method::POST, &path).body(payload);
    if args.asynchronous {
        request = request.header("x-amz-invocation-type", "Event");
    } else if args.log {
        request = request.header("x-amz-log-type", "Tail");
    }
    let response = client.send(request).await?;
    if args.asynchronous {
        let id = response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        println!("queued {id}");
        return Ok(0);
    }
    let failed = response.headers().contains_key("x-amz-function-error");
    if let Some(tail) = response.headers().get("x-amz-log-result") {
        use base64::Engine as _;
        let log = base64::engine::general_purpose::STANDARD
            .decode(tail.as_bytes())
            .unwrap_or_default();
        std::io::stderr().write_all(&log)?;
    }
    let body = response.bytes().await.context("reading the result")?;
    if failed {
        let mut err = std::io::stderr();
        err.write_all(&body)?;
        writeln!(err)?;
        return Ok(1);
    }
    let mut out = std::io::stdout();
    out.write_all(&body)?;
    writeln!(out)?;
    Ok(0)
}
