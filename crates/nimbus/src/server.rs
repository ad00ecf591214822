//! `nimbus server`: opens the stores, starts the scheduler and serves the API.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::ArgMatches;
use nimbus_config::{LogFormat, ServerArgs, ServerConfig};
use nimbus_control::Platform;
use nimbus_core::arn::ArnScope;
use nimbus_runtime::Launcher;
use nimbus_scheduler::Scheduler;
use nimbus_store::CodeCache;

use crate::parts::{Host, Parts};

/// Runs the server until SIGTERM or SIGINT, configured by `args` (the config file and the
/// flags; `matches` tells which flags and variables were given).
pub async fn run(args: &ServerArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = nimbus_config::load(args, matches)?;
    init_logging(config.logs.format);
    crate::stores::check_available(&config)?;
    if let Some(file) = &args.config {
        tracing::info!(file = %file.display(), "configuration read");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    // Held until the server exits: one server per data dir.
    let _lock = crate::datadir::lock(&config.data_dir)?;
    // Instances run in their code directory, so every path handed to them is absolute.
    let data = &std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("resolving data dir {}", config.data_dir.display()))?;
    let (metadata, blobs) = crate::stores::backends(&config, data)?;
    let credentials = credentials(&config, data)?;
    let stores = crate::stores::open(&metadata, &blobs).await?;
    tracing::info!(metadata = %metadata.redacted(), blobs = %blobs, "stores");
    let code = Arc::new(CodeCache::open(&data.join("code"), stores.blobs)?);
    let host = Host::probe(&config, data, credentials)?;
    let parts = Parts::build(&config, host)?;
    crate::parts::log_isolation(&parts.isolation);
    let cgroups = parts.runtime.cgroups.clone();
    tracing::info!(
        max_concurrency = parts.scheduler.max_concurrency,
        memory_budget_mb = parts.scheduler.memory_budget_mb,
        keep_alive_s = parts.scheduler.keep_alive.as_secs(),
        "limits"
    );
    let scheduler = Scheduler::new(Launcher::new(parts.runtime), code.clone(), parts.scheduler);
    let logs_db = data.join("logs.db");
    let telemetry = nimbus_telemetry::Telemetry::open(&logs_db, parts.telemetry)
        .await
        .map_err(|e| match e {
            nimbus_telemetry::TelemetryError::Open(e) => {
                crate::datadir::explain_damage(e, &logs_db)
            }
            other => other.into(),
        })
        .with_context(|| format!("opening invocation logs in {}", data.display()))?;
    let scope = ArnScope {
        region: config.region.clone(),
    };
    let node_id = crate::datadir::node_id(data)?;
    let mut async_delivery = parts.async_delivery;
    // Leases on async events are taken in this node's name.
    async_delivery.node_id = node_id.clone();
    let platform = Arc::new(Platform::new(
        stores.meta,
        code,
        scheduler.clone(),
        scope,
        async_delivery,
        telemetry,
    ));
    platform
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("loading function settings: {e}"))?;
    platform.start_code_collector(parts.code_gc_grace);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let node_address = config.node_address(addr, hostname.as_deref());
    // In the cluster before the listening line: a node that says it serves is listed.
    let membership = nimbus_control::Membership::start(
        stores.nodes,
        scheduler.clone(),
        nimbus_control::MembershipConfig {
            node_id,
            address: node_address.to_string(),
            heartbeat: std::time::Duration::from_secs(1),
            missed_beats: 3,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
    // Invocations go to their function's home node; changes reach every node's cache.
    platform
        .route_through(
            membership.clone(),
            Arc::new(nimbus_api::HttpForwarder::new(
                parts.api.credentials.clone(),
                config.region.clone(),
            )),
            stores.feed,
        )
        .await
        .map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "nimbus listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, %node_address, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = nimbus_api::router(platform, membership.clone(), parts.api, parts.isolation);
    let mut stop_serving = stop_rx.clone();
    let serve = nimbus_api::serve(listener, app, parts.connections, async move {
        let _ = stop_serving.wait_for(|s| *s).await;
    });
    let mut serve = tokio::spawn(serve);
    tokio::select! {
        result = &mut serve => {
            scheduler.shutdown();
            result??;
            return Ok(());
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
        }
    }
    let _ = stop_tx.send(true);
    // Idle instances go now; in-flight invocations get the grace period, then are killed.
    scheduler.shutdown();
    if tokio::time::timeout(parts.shutdown_grace, &mut serve)
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time; stopping them");
        serve.abort();
    }
    membership.leave().await;
    if let Some(cgroups) = cgroups {
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The server's own log: `tracing` to stderr, filtered by `NIMBUS_LOG`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

/// The API credentials (`None`: authentication off), refusing a non-loopback listen
/// address without them.
fn credentials(
    config: &ServerConfig,
    data: &Path,
) -> anyhow::Result<Option<nimbus_api::Credentials>> {
    let credentials = match load_credentials(config.auth.credentials_file.as_deref())? {
        Some(c) => Some(c),
        None if config.auth.no_auth => None,
        None => Some(data_dir_credentials(data)?),
    };
    if !config.listen.ip().is_loopback() && credentials.is_none() {
        bail!(
            "refusing to listen on {} without API credentials: set NIMBUS_ACCESS_KEY_ID and NIMBUS_SECRET_ACCESS_KEY (or --credentials-file), or listen on 127.0.0.1",
            config.listen
        );
    }
    match &credentials {
        Some(c) => {
            tracing::info!(access_key_id = %c.access_key_id, "API authentication on: requests must be SigV4-signed")
        }
        None => {
            tracing::warn!("API authentication off: any credentials are accepted (loopback only)")
        }
    }
    Ok(credentials)
}

/// The credentials kept in `DATA/credentials.json`, generated (mode 0600) on first start.
fn data_dir_credentials(data_dir: &Path) -> anyhow::Result<nimbus_api::Credentials> {
    let path = data_dir.join("credentials.json");
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let random = || uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let secret_bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .flat_map(|u| u.as_bytes().to_vec())
            .collect();
        use base64::Engine as _;
        let generated = serde_json::json!({
            "access_key_id": format!("NIMBUS{}", &random()[..14]),
            "secret_access_key": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&secret_bytes[..30]),
        });
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string_pretty(&generated)?)?;
        let shown = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        tracing::info!(path = %shown.display(), "generated API credentials (the nimbus CLI finds them there; give them to boto3 or the AWS CLI as their keys)");
    } else {
        let shown = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        tracing::info!(path = %shown.display(), "API credentials");
    }
    load_credentials(Some(&path))?.context("credentials file gave no credentials")
}

/// The API credentials from `file` or the environment, if any.
fn load_credentials(file: Option<&Path>) -> anyhow::Result<Option<nimbus_api::Credentials>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading credentials from {}", file.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let field = |k: &str| {
            json.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .with_context(|| format!("{} has no \"{k}\"", file.display()))
        };
        return Ok(Some(nimbus_api::Credentials {
            access_key_id: field("access_key_id")?,
            secret_access_key: field("secret_access_key")?,
        }));
    }
    match (
        std::env::var("NIMBUS_ACCESS_KEY_ID"),
        std::env::var("NIMBUS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok(Some(nimbus_api::Credentials {
                access_key_id: id,
                secret_access_key: secret,
            }))
        }
        _ => Ok(None),
    }
}

/// Resolves with the name of the first SIGTERM or SIGINT.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
