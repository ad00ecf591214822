//! `nimbus deploy DIR|ZIP --name N`: zip, upload with progress, create or update.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Args;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{segment, Client};
use crate::manifest::{self, Manifest};
use crate::{ExitCode, Output};

/// Arguments of `nimbus deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// A function directory (zipped for you) or a ready .zip file.
    pub source: PathBuf,
    /// The function's name.
    #[arg(long)]
    pub name: String,
    /// Runtime, e.g. python3.12 (default: from nimbus.json).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Handler, e.g. app.handler (default: from nimbus.json).
    #[arg(long)]
    pub handler: Option<String>,
    /// Memory, MB (128–10240).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout, seconds (1–900).
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Environment variable KEY=VALUE; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Give the function a URL (its HTTP trigger): `none` is public, `iam` needs signed
    /// requests (default: from nimbus.json).
    #[arg(long, value_parser = ["none", "iam"])]
    pub url: Option<String>,
    /// Execution role ARN, kept for Lambda compatibility.
    #[arg(long, default_value = "arn:aws:iam::000000000000:role/nimbus")]
    pub role: String,
}

/// Uploads above this size show a progress bar.
const PROGRESS_FROM_BYTES: usize = 1 << 20;

/// Deploys: creates the function, or updates its code and the settings given.
pub async fn run(client: &Client, args: DeployArgs, output: Output) -> anyhow::Result<ExitCode> {
    let (zip, manifest) = if args.source.is_dir() {
        (zip_dir(&args.source)?, Manifest::load(&args.source)?)
    } else {
        let bytes = std::fs::read(&args.source)
            .with_context(|| format!("reading {}", args.source.display()))?;
        (bytes, Manifest::default())
    };
    let mut env = manifest.environment.clone().unwrap_or_default();
    for pair in &args.env {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--env takes KEY=VALUE, got '{pair}'");
        };
        env.insert(k.to_owned(), v.to_owned());
    }
    let mut settings = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            settings.insert(key.to_owned(), v);
        }
    };
    set(
        "Runtime",
        args.runtime.or(manifest.runtime).map(Value::from),
    );
    set(
        "Handler",
        args.handler.or(manifest.handler).map(Value::from),
    );
    set(
        "MemorySize",
        args.memory.or(manifest.memory).map(Value::from),
    );
    set(
        "Timeout",
        args.timeout.or(manifest.timeout).map(Value::from),
    );
    set(
        "Description",
        args.description.or(manifest.description).map(Value::from),
    );
    if !env.is_empty() {
        set("Environment", Some(json!({ "Variables": env })));
    }
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let fn_path = format!("/2015-03-31/functions/{}", segment(&args.name));
    let existing = client
        .json(client.request(Method::GET, &format!("{fn_path}/configuration")))
        .await;
    let result = match existing {
        Err(e) if e.is_not_found() => {
            if !settings.contains_key("Runtime") {
                bail!("no runtime given: pass --runtime (e.g. python3.12) or add a nimbus.json (see `nimbus init`)");
            }
            let mut body = settings;
            body.insert("FunctionName".into(), args.name.clone().into());
            body.insert("Role".into(), args.role.into());
            body.insert("Code".into(), json!({ "ZipFile": zip_b64 }));
            upload(
                client,
                Method::POST,
                "/2015-03-31/functions",
                Value::Object(body),
            )
            .await?
        }
        Err(e) => return Err(e.into()),
        Ok(current) => {
            let mut latest = current.clone();
            let digest = sha256_b64(&zip);
            if current.get("CodeSha256").and_then(Value::as_str) != Some(digest.as_str()) {
                latest = upload(
                    client,
                    Method::PUT,
                    &format!("{fn_path}/code"),
                    json!({ "ZipFile": zip_b64 }),
                )
                .await?;
            }
            let changed = settings.iter().any(|(k, v)| current.get(k) != Some(v));
            if changed {
                let request = client
                    .request(Method::PUT, &format!("{fn_path}/configuration"))
                    .json(&Value::Object(settings));
                latest = client.json(request).await?;
            }
            latest
        }
    };
    let url = match args.url.or(manifest.url) {
        Some(kind) => Some(ensure_url(client, &fn_path, &args.name, &kind).await?),
        None => None,
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let text = |k: &str| {
            result
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        println!(
            "deployed {} ({}, {} bytes, CodeSha256 {})\ntry: nimbus invoke {} --data '{{}}'",
            text("FunctionName"),
            text("Runtime"),
            result.get("CodeSize").and_then(Value::as_u64).unwrap_or(0),
            text("CodeSha256"),
            args.name
        );
        if let Some(url) = url {
            println!("url: {url}");
        }
    }
    Ok(0)
}

/// Makes sure the function has a URL with the given auth (`none` or `iam`); its address.
async fn ensure_url(
    client: &Client,
    fn_path: &str,
    name: &str,
    kind: &str,
) -> anyhow::Result<String> {
    let auth = match kind {
        "none" => "NONE",
        "iam" => "AWS_IAM",
        other => bail!("url must be none or iam, got '{other}'"),
    };
    let url_path = fn_path.replacen("/2015-03-31/", "/2021-10-31/", 1) + "/url";
    let body = json!({ "AuthType": auth });
    let config = match client.json(client.request(Method::GET, &url_path)).await {
        Ok(current) if current.get("AuthType").and_then(Value::as_str) == Some(auth) => current,
        Ok(_) => {
            client
                .json(client.request(Method::PUT, &url_path).json(&body))
                .await?
        }
        Err(e) if e.is_not_found() => {
            client
                .json(client.request(Method::POST, &url_path).json(&body))
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(config
        .get("FunctionUrl")
        .and_then(Value::as_str)
        .map_or_else(|| format!("/fn/{name}/"), str::to_owned))
}

fn sha256_b64(data: &[u8]) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

/// Sends a JSON body, with a progress bar when it is large.
async fn upload(client: &Client, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
    let bytes = bytes::Bytes::from(serde_json::to_vec(&body)?);
    let total = bytes.len();
    let request = client
        .request(method, path)
        .header("content-type", "application/json");
    if total < PROGRESS_FROM_BYTES {
        return Ok(client.json(request.body(bytes)).await?);
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let chunks: Vec<bytes::Bytes> = (0..total)
        .step_by(64 * 1024)
        .map(|start| bytes.slice(start..(start + 64 * 1024).min(total)))
        .collect();
    let progress = bar.clone();
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        progress.inc(chunk.len() as u64);
        Ok::<_, std::io::Error>(chunk)
    }));
    // A streamed body is signed by its hash, computed here while the bytes are at hand.
    let request = request
        .header("content-length", total)
        .header(
            "x-amz-content-sha256",
            nimbus_core::sigv4::sha256_hex(&bytes),
        )
        .body(reqwest::Body::wrap_stream(stream));
    let result = client.json(request).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// Zips a directory (without its manifest), keeping file modes, in a stable order so the
/// same files always give the same CodeSha256.
fn zip_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for relative in files {
        let path = dir.join(&relative);
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let options = zip::write::SimpleFileOptions::default()
            .unix_permissions(meta.permissions().mode() & 0o777)
            .last_modified_time(zip::DateTime::default())
            .large_file(meta.len() >= u64::from(u32::MAX));
        let name = relative.to_string_lossy().replace('\\', "/");
        writer.start_file(name, options)?;
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        writer.write_all(&data)?;
    }
    Ok(writer.finish()?.into_inner())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(root)?.to_owned();
        let name = entry.file_name();
        if name == ".git" || name == "__pycache__" || relative == Path::new(manifest::FILE) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(relative);
        }
    }
    Ok(())
}
