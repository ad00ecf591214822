//! `nimbus alias set|get|rm|ls`: names for versions, with weighted traffic shifting.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::{ExitCode, Output};

/// The alias commands.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS at VERSION, creating it if needed; `--weight V=0.1` sends a share of
    /// calls to another version (without it, all calls go to VERSION).
    Set {
        /// The function.
        function: String,
        /// The alias name.
        alias: String,
        /// The version it points at.
        version: String,
        /// Another version and the share of calls it gets, e.g. 2=0.1.
        #[arg(long, value_name = "VERSION=WEIGHT")]
        weight: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show an alias.
    Get {
        /// The function.
        function: String,
        /// The alias name.
        alias: String,
    },
    /// Delete an alias.
    Rm {
        /// The function.
        function: String,
        /// The alias name.
        alias: String,
    },
    /// List a function's aliases.
    Ls {
        /// The function.
        function: String,
    },
}

fn parse_weight(weight: Option<&str>) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut weights = BTreeMap::new();
    if let Some(w) = weight {
        let Some((version, share)) = w.split_once('=') else {
            bail!("--weight takes VERSION=WEIGHT, e.g. 2=0.1; got '{w}'");
        };
        let share: f64 = share
            .parse()
            .map_err(|_| anyhow::anyhow!("the weight in '{w}' is not a number between 0 and 1"))?;
        weights.insert(version.to_owned(), share);
    }
    Ok(weights)
}

fn describe(alias: &Value) -> String {
    let text = |k: &str| {
        alias
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut line = format!("{} -> version {}", text("Name"), text("FunctionVersion"));
    if let Some(weights) = alias
        .pointer("/RoutingConfig/AdditionalVersionWeights")
        .and_then(Value::as_object)
    {
        for (version, share) in weights {
            line.push_str(&format!(
                " ({:.0}% to version {version})",
                share.as_f64().unwrap_or(0.0) * 100.0
            ));
        }
    }
    line
}

/// Runs an alias command.
pub async fn run(
    client: &Client,
    command: AliasCommand,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let base = |f: &str| format!("/2015-03-31/functions/{}/aliases", segment(f));
    let answer = match command {
        AliasCommand::Set {
            function,
            alias,
            version,
            weight,
            description,
        } => {
            let weights = parse_weight(weight.as_deref())?;
            let mut body = json!({
                "FunctionVersion": version,
                "RoutingConfig": {"AdditionalVersionWeights": weights},
            });
            if let Some(d) = description {
                body["Description"] = json!(d);
            }
            let one = format!("{}/{}", base(&function), segment(&alias));
            match client.json(client.request(Method::GET, &one)).await {
                Err(e) if e.is_not_found() => {
                    body["Name"] = json!(alias);
                    client
                        .json(client.request(Method::POST, &base(&function)).json(&body))
                        .await?
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {
                    client
                        .json(client.request(Method::PUT, &one).json(&body))
                        .await?
                }
            }
        }
        AliasCommand::Get { function, alias } => {
            let one = format!("{}/{}", base(&function), segment(&alias));
            client.json(client.request(Method::GET, &one)).await?
        }
        AliasCommand::Rm { function, alias } => {
            let one = format!("{}/{}", base(&function), segment(&alias));
            client.send(client.request(Method::DELETE, &one)).await?;
            println!("deleted alias {alias} of {function}");
            return Ok(0);
        }
        AliasCommand::Ls { function } => {
            let page = client
                .json(client.request(Method::GET, &base(&function)))
                .await?;
            let aliases = page
                .get("Aliases")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&aliases)?);
            } else if let Some(list) = aliases.as_array() {
                if list.is_empty() {
                    println!("{function} has no aliases; create one with `nimbus alias set {function} NAME VERSION`");
                }
                for alias in list {
                    println!("{}", describe(alias));
                }
            }
            return Ok(0);
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", describe(&answer));
    }
    Ok(0)
}
