//! `nimbus server`: opens the stores, starts the scheduler and serves the API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use nimbus_control::Platform;
use nimbus_core::arn::ArnScope;
use nimbus_runtime::{Launcher, RuntimeConfig};
use nimbus_scheduler::{Scheduler, SchedulerConfig};
use nimbus_store::{BlobStore, CodeCache, LocalBlobs, MetadataStore, SqliteMetadata};

/// Arguments of `nimbus server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (loopback only until credentials can be configured).
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Where metadata, code and runtime files live.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = ".nimbus")]
    data_dir: PathBuf,
    /// Python interpreter for python3.* functions (default: the fastest real one found).
    #[arg(long, env = "NIMBUS_PYTHON")]
    python: Option<PathBuf>,
    /// Node.js for nodejs* functions (default: `node` found on the system).
    #[arg(long, env = "NIMBUS_NODE")]
    node: Option<PathBuf>,
    /// Region reported in ARNs and to functions.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    region: String,
    /// Seconds an idle instance is kept warm (a function may override it).
    #[arg(long, env = "NIMBUS_KEEP_ALIVE", default_value_t = 600)]
    keep_alive: u64,
    /// Most invocations running at once on this node.
    #[arg(long, env = "NIMBUS_MAX_CONCURRENCY", default_value_t = 1000)]
    max_concurrency: u32,
    /// Most memory live instances may be configured with together, MB (default: 80% of RAM).
    #[arg(long, env = "NIMBUS_MEMORY_BUDGET")]
    memory_budget: Option<u64>,
    /// Milliseconds an invocation over a limit waits for capacity before a 429.
    #[arg(long, env = "NIMBUS_QUEUE_TIMEOUT", default_value_t = 300)]
    queue_timeout: u64,
    /// Seconds a new instance may take to initialise before the init is retried.
    #[arg(long, default_value_t = 10)]
    init_timeout: u64,
    /// Milliseconds before an async event's first retry after a function error (the n-th
    /// retry waits n times this; Lambda waits about a minute, then two).
    #[arg(long, env = "NIMBUS_ASYNC_RETRY_DELAY", default_value_t = 60_000)]
    async_retry_delay: u64,
    /// Seconds a node's lease on an async event it delivers lasts (renewed every third
    /// of it while it lives): how soon another node takes over the events of a dead one.
    #[arg(long, env = "NIMBUS_ASYNC_LEASE", default_value_t = 30)]
    async_lease: u64,
    /// Async events delivered at once.
    #[arg(long, default_value_t = 16)]
    async_workers: usize,
    /// Hours invocation logs are kept.
    #[arg(long, env = "NIMBUS_LOG_RETENTION_HOURS", default_value_t = 168)]
    log_retention_hours: u64,
    /// Most invocation log kept, MB; the oldest goes first.
    #[arg(long, env = "NIMBUS_LOG_MAX_MB", default_value_t = 256)]
    log_max_mb: u64,
    /// The server's own log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// A JSON file `{"access_key_id": …, "secret_access_key": …}`: every API request must
    /// then be SigV4-signed with them (also set by NIMBUS_ACCESS_KEY_ID and
    /// NIMBUS_SECRET_ACCESS_KEY). Needed to listen on a non-loopback address.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Run instances as plain child processes: no namespaces, cgroups or limits (for
    /// measuring what the sandbox costs; never for untrusted code).
    #[arg(long)]
    no_sandbox: bool,
    /// A host directory every instance also sees, read-only at the same path (repeatable;
    /// e.g. an interpreter installed outside /usr). Instances otherwise see only the system
    /// directories, their code at /var/task and the runtime at /var/runtime.
    #[arg(long, value_name = "DIR")]
    expose: Vec<PathBuf>,
    /// Sandboxed processes kept started ahead of demand (in their cgroups, waiting for a
    /// function), so cold starts skip that set-up; 0 starts each on demand.
    #[arg(long, env = "NIMBUS_WARM_SHELLS", default_value_t = 2)]
    warm_shells: usize,
    /// The network instances get: `host` (the host's, as Lambda functions reach the
    /// internet) or `none` (a namespace of their own with only loopback, where their Runtime
    /// API is, at 127.0.0.1:9001; needs root).
    #[arg(long, env = "NIMBUS_INSTANCE_NETWORK", value_parser = ["host", "none"], default_value = "host")]
    instance_network: String,
    /// Turn API authentication off (any credentials accepted; loopback only), for local
    /// experiments. Without it the server generates credentials in DATA/credentials.json.
    #[arg(long)]
    no_auth: bool,
    /// Price of a GB-second for the usage bill, USD (Lambda x86's by default).
    #[arg(long, default_value_t = 0.000_016_666_7)]
    price_gb_second: f64,
    /// Price of a million requests for the usage bill, USD.
    #[arg(long, default_value_t = 0.20)]
    price_million_requests: f64,
    /// Seconds a code package that no function version references any more is kept
    /// before its zip and unpacked files are removed (never while an instance or a
    /// deploy uses it).
    #[arg(long, env = "NIMBUS_CODE_GC_GRACE", default_value_t = 600)]
    code_gc_grace: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Seconds a client may take to send a request's head (an idle keep-alive connection
    /// is closed after as long); a half-sent head is answered 408 and closed.
    #[arg(long, env = "NIMBUS_HEADER_READ_TIMEOUT", default_value_t = 10)]
    header_read_timeout: u64,
    /// Seconds a request body may pause before the request is cut off with a 408 (after as
    /// long a grace, a body arriving slower than 4 KiB/s on average is cut off too).
    #[arg(long, env = "NIMBUS_BODY_IDLE_TIMEOUT", default_value_t = 30)]
    body_idle_timeout: u64,
    /// Most client connections open at once; one more is answered 503 (which clients
    /// retry) and closed, never queued.
    #[arg(long, env = "NIMBUS_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Most connections open at once from one client address (behind a proxy every
    /// client has the proxy's: raise it there); one more is answered 503 and closed.
    #[arg(long, env = "NIMBUS_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    max_connections_per_client: usize,
    /// MB of request body held at once, until their signature is checked, for requests that
    /// can only be verified at the end of their body (botocore's; their senders may not
    /// hold the secret). One request may hold at most the whole budget (a larger body still
    /// passes alone); one that finds no room within --body-idle-timeout is answered 429.
    /// Requests without a body owe it nothing.
    #[arg(long, env = "NIMBUS_UNVERIFIED_BODY_BUDGET", default_value_t = 512)]
    unverified_body_budget: u32,
}

/// The first of `candidates` that is an executable file, else `name` found on PATH.
/// Version-manager shims (pyenv) are skipped: each start through one costs ~90 ms.
fn find_interpreter(candidates: &[&str], name: &str) -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file();
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| is_file(p)) {
        return Some(found);
    }
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let real = dirs
        .iter()
        .filter(|d| !d.to_string_lossy().contains("shims"))
        .map(|d| d.join(name))
        .find(|p| is_file(p));
    real.or_else(|| dirs.iter().map(|d| d.join(name)).find(|p| is_file(p)))
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    // Held until the server exits: one server per data dir.
    let _lock = crate::datadir::lock(&args.data_dir)?;
    crate::datadir::check_catalogue(&args.data_dir)?;
    let credentials = match load_credentials(args.credentials_file.as_deref())? {
        Some(c) => Some(c),
        None if args.no_auth => None,
        None => Some(data_dir_credentials(&args.data_dir)?),
    };
    if !args.listen.ip().is_loopback() && credentials.is_none() {
        bail!(
            "refusing to listen on {} without API credentials: set NIMBUS_ACCESS_KEY_ID and NIMBUS_SECRET_ACCESS_KEY (or --credentials-file), or listen on 127.0.0.1",
            args.listen
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
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    // Instances run in their code directory, so every path handed to them is absolute.
    let data = &std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving data dir {}", args.data_dir.display()))?;
    let sqlite = Arc::new(
        SqliteMetadata::open(&data.join("nimbus.db"))
            .await
            .map_err(|e| crate::datadir::explain_damage(e, &data.join("nimbus.db")))
            .with_context(|| format!("opening metadata in {}", data.display()))?,
    );
    let meta: Arc<dyn MetadataStore> = sqlite.clone();
    let node_id = crate::datadir::node_id(data)?;
    let nodes: Arc<dyn nimbus_store::NodeStore> = sqlite.clone();
    let feed: Arc<dyn nimbus_store::ChangeFeed> = sqlite;
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobs::open(&data.join("blobs"))?);
    let code = Arc::new(CodeCache::open(&data.join("code"), blobs)?);
    let mut clients = nimbus_runtime::builtin::install(&data.join("runtime"))?;
    let python = args
        .python
        .or_else(|| find_interpreter(&["/usr/bin/python3", "/usr/local/bin/python3"], "python3"))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let node = args
        .node
        .or_else(|| find_interpreter(&["/usr/bin/node", "/usr/local/bin/node"], "node"))
        .unwrap_or_else(|| PathBuf::from("node"));
    tracing::info!(python = %python.display(), node = %node.display(), data_dir = %data.display(), "runtimes");
    clients.compile_python(&python);
    let sandbox = if args.no_sandbox {
        tracing::warn!("--no-sandbox: instances run without namespaces, cgroups or limits");
        nimbus_sandbox::Capabilities::none()
    } else {
        nimbus_sandbox::Capabilities::detect()
    };
    if !sandbox.namespaces && !args.no_sandbox {
        tracing::warn!(
            "not running as root: instances share the server's filesystem view, user and process namespace; a process a function detaches could outlive a SIGKILLed server"
        );
    }
    let cgroups = if sandbox.namespaces {
        nimbus_sandbox::cgroup::Cgroups::detect().map(Arc::new)
    } else {
        None
    };
    if cgroups.is_none() && !args.no_sandbox {
        tracing::warn!("no writable cgroups: instances run without memory, pids or CPU limits");
    }
    if args.max_connections == 0
        || args.max_connections_per_client == 0
        || args.header_read_timeout == 0
        || args.body_idle_timeout == 0
        || args.unverified_body_budget == 0
    {
        bail!(
            "--max-connections, --max-connections-per-client, --header-read-timeout, --body-idle-timeout and --unverified-body-budget must be at least 1 (the server would refuse every request)"
        );
    }
    for dir in &args.expose {
        if !dir.is_absolute() || !dir.is_dir() {
            anyhow::bail!(
                "--expose {}: give an absolute path to an existing directory",
                dir.display()
            );
        }
    }
    let isolate_network = args.instance_network == "none";
    if isolate_network && !sandbox.namespaces {
        anyhow::bail!(
            "--instance-network none needs network namespaces: run the server as root, with the sandbox on"
        );
    }
    let staging = data.join("rootfs");
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    // Instances' /tmp on disk, as Lambda's ephemeral storage (needs the root view).
    let tmp_disks = if sandbox.namespaces {
        nimbus_sandbox::TmpDisks::detect(&data.join("tmp-disks"))
    } else {
        None
    };
    let isolation = serde_json::json!({
        "pid_namespace": sandbox.namespaces,
        "mount_namespace": sandbox.namespaces,
        "ipc_namespace": sandbox.namespaces,
        "uts_namespace": sandbox.namespaces,
        "network_namespace": isolate_network,
        "root_view": sandbox.namespaces,
        "private_tmp": sandbox.namespaces,
        // /tmp on a disk of its own (ext4 on a loop device), not memory.
        "tmp_on_disk": tmp_disks.is_some(),
        "read_only_code": sandbox.namespaces,
        "unprivileged_user": sandbox.unprivileged,
        "capabilities_dropped": sandbox.unprivileged,
        "cgroups": cgroups.as_ref().map(|c| format!("{:?}", c.layout).to_lowercase()),
        "memory_limit": cgroups.is_some(),
        "pids_limit": cgroups.is_some(),
        "cpu_share": cgroups.is_some(),
        // Idle instances frozen whole (every process of their cgroup), not by signals to
        // their process group, which a process that calls setsid() escapes.
        "cgroup_freezer": cgroups.as_ref().is_some_and(|c| c.freezer),
        "seccomp": sandbox.seccomp,
        "rlimits": true,
        "no_new_privs": true,
        "clean_environment": true,
        "api_authentication": credentials.is_some(),
    });
    log_isolation(&isolation);
    let launcher = Launcher::new(RuntimeConfig {
        python,
        node,
        clients,
        region: args.region.clone(),
        sandbox,
        cgroups: cgroups.clone(),
        staging,
        exposed: args.expose.clone(),
        jailer: (!args.no_sandbox).then(|| nimbus_sandbox::Jailer {
            // The running binary itself, even if the file was replaced since.
            program: PathBuf::from("/proc/self/exe"),
            args: vec![crate::JAIL_COMMAND.to_owned()],
            base: None, // the launcher knows what every instance sees
        }),
        warm_shells: args.warm_shells,
        isolate_network,
        tmp_disks,
    });
    let memory_budget_mb = args.memory_budget.unwrap_or_else(default_memory_budget_mb);
    tracing::info!(
        max_concurrency = args.max_concurrency,
        memory_budget_mb,
        keep_alive_s = args.keep_alive,
        "limits"
    );
    let scheduler = Scheduler::new(
        launcher,
        code.clone(),
        SchedulerConfig {
            keep_alive: Duration::from_secs(args.keep_alive),
            max_concurrency: args.max_concurrency,
            memory_budget_mb,
            queue_timeout: Duration::from_millis(args.queue_timeout),
            init_timeout: Duration::from_secs(args.init_timeout),
        },
    );
    let scope = ArnScope {
        region: args.region.clone(),
    };
    let telemetry = nimbus_telemetry::Telemetry::open(
        &data.join("logs.db"),
        nimbus_telemetry::TelemetryConfig {
            retention: nimbus_telemetry::LogRetention {
                max_age: Duration::from_secs(args.log_retention_hours * 3600),
                max_bytes: args.log_max_mb * 1024 * 1024,
            },
            prices: nimbus_telemetry::PriceTable {
                per_gb_second: args.price_gb_second,
                per_million_requests: args.price_million_requests,
            },
        },
    )
    .await
    .map_err(|e| match e {
        nimbus_telemetry::TelemetryError::Open(e) => {
            crate::datadir::explain_damage(e, &data.join("logs.db"))
        }
        other => other.into(),
    })
    .with_context(|| format!("opening invocation logs in {}", data.display()))?;
    let platform = Arc::new(Platform::new(
        meta,
        code,
        scheduler.clone(),
        scope,
        nimbus_control::AsyncConfig {
            retry_delay: Duration::from_millis(args.async_retry_delay),
            workers: args.async_workers,
            node_id: node_id.clone(),
            lease: Duration::from_secs(args.async_lease.max(1)),
        },
        telemetry,
    ));
    platform
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("loading function settings: {e}"))?;
    platform.start_code_collector(Duration::from_secs(args.code_gc_grace));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let membership = nimbus_control::Membership::start(
        nodes,
        scheduler.clone(),
        nimbus_control::MembershipConfig {
            node_id,
            address: addr.to_string(),
            heartbeat: Duration::from_secs(1),
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
                credentials.clone(),
                args.region.clone(),
            )),
            feed,
        )
        .await
        .map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "nimbus listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = nimbus_api::router(
        platform,
        membership.clone(),
        nimbus_api::ApiConfig {
            credentials,
            region: args.region.clone(),
            body_idle_timeout: Duration::from_secs(args.body_idle_timeout),
            unverified_body_budget_mb: args.unverified_body_budget,
        },
        isolation,
    );
    let mut stop_serving = stop_rx.clone();
    let serve = nimbus_api::serve(
        listener,
        app,
        nimbus_api::ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            max_connections: args.max_connections,
            max_connections_per_client: args.max_connections_per_client,
        },
        async move {
            let _ = stop_serving.wait_for(|s| *s).await;
        },
    );
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
    if tokio::time::timeout(Duration::from_secs(args.shutdown_grace), &mut serve)
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

/// Logs which isolation features instances get on this host, and which they lack.
fn log_isolation(isolation: &serde_json::Value) {
    // Not host limitations but choices: authentication (logged on its own) and
    // `--instance-network`.
    let not_host = ["api_authentication", "network_namespace"];
    let (mut on, mut off) = (Vec::new(), Vec::new());
    if let Some(features) = isolation.as_object() {
        for (name, value) in features {
            match value {
                serde_json::Value::Bool(true) => on.push(name.clone()),
                serde_json::Value::String(layout) => on.push(format!("{name} {layout}")),
                _ if not_host.contains(&name.as_str()) => {}
                _ => off.push(name.as_str()),
            }
        }
    }
    tracing::info!("isolation: {}", on.join(", "));
    if !off.is_empty() {
        tracing::warn!("isolation not available here: {}", off.join(", "));
    }
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

/// 80% of the machine's memory, MB (4 GB if it cannot be read).
fn default_memory_budget_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb / 1024 * 4 / 5)
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
