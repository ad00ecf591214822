//! The configuration of every part the server runs — runtime, scheduler, async delivery,
//! telemetry, API, connections — built in one place from the [`ServerConfig`] and what the
//! host was found to offer ([`Host`]), with the isolation report they add up to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nimbus_api::{CgroupVersion, Isolation};
use nimbus_config::{InstanceNetwork, ServerConfig};
use nimbus_runtime::builtin::BuiltinClients;
use nimbus_runtime::RuntimeConfig;
use nimbus_sandbox::cgroup::{Cgroups, Layout};
use nimbus_sandbox::{Capabilities, TmpDisks};
use nimbus_scheduler::SchedulerConfig;

/// What the server found out at start about this host and its data dir: the facts the
/// configuration is applied to.
pub struct Host {
    /// The data directory, absolute (instances run in their code directory).
    pub data: PathBuf,
    /// What the sandbox can do here.
    pub sandbox: Capabilities,
    /// Per-instance cgroups, where they are writable.
    pub cgroups: Option<Arc<Cgroups>>,
    /// Disks for instances' `/tmp`, where loop devices and `mkfs.ext4` are.
    pub tmp_disks: Option<TmpDisks>,
    /// The built-in runtime clients, installed in `DATA/runtime`.
    pub clients: BuiltinClients,
    /// The Python interpreter (configured or found).
    pub python: PathBuf,
    /// Node.js (configured or found).
    pub node: PathBuf,
    /// The API credentials, if authentication is on.
    pub credentials: Option<nimbus_api::Credentials>,
    /// The memory budget when none is configured: 80% of RAM, MB.
    pub default_memory_budget_mb: u64,
}

impl Host {
    /// Probes the host for `config`: installs the runtime clients, finds the interpreters,
    /// detects the sandbox, cgroups and `/tmp` disks (saying what is missing), and prepares
    /// the directories instances are assembled in.
    pub fn probe(
        config: &ServerConfig,
        data: &Path,
        credentials: Option<nimbus_api::Credentials>,
    ) -> anyhow::Result<Host> {
        let mut clients = nimbus_runtime::builtin::install(&data.join("runtime"))?;
        let python = config
            .runtimes
            .python
            .clone()
            .or_else(|| {
                find_interpreter(&["/usr/bin/python3", "/usr/local/bin/python3"], "python3")
            })
            .unwrap_or_else(|| PathBuf::from("python3"));
        let node = config
            .runtimes
            .node
            .clone()
            .or_else(|| find_interpreter(&["/usr/bin/node", "/usr/local/bin/node"], "node"))
            .unwrap_or_else(|| PathBuf::from("node"));
        tracing::info!(python = %python.display(), node = %node.display(), data_dir = %data.display(), "runtimes");
        clients.compile_python(&python);
        let no_sandbox = config.sandbox.no_sandbox;
        let sandbox = if no_sandbox {
            tracing::warn!("--no-sandbox: instances run without namespaces, cgroups or limits");
            Capabilities::none()
        } else {
            Capabilities::detect()
        };
        if !sandbox.namespaces && !no_sandbox {
            tracing::warn!(
                "not running as root: instances share the server's filesystem view, user and process namespace; a process a function detaches could outlive a SIGKILLed server"
            );
        }
        let cgroups = if sandbox.namespaces {
            Cgroups::detect().map(Arc::new)
        } else {
            None
        };
        if cgroups.is_none() && !no_sandbox {
            tracing::warn!("no writable cgroups: instances run without memory, pids or CPU limits");
        }
        let staging = data.join("rootfs");
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        // Instances' /tmp on disk, as Lambda's ephemeral storage (needs the root view).
        let tmp_disks = if sandbox.namespaces {
            TmpDisks::detect(&data.join("tmp-disks"))
        } else {
            None
        };
        Ok(Host {
            data: data.to_owned(),
            sandbox,
            cgroups,
            tmp_disks,
            clients,
            python,
            node,
            credentials,
            default_memory_budget_mb: default_memory_budget_mb(),
        })
    }
}

/// The configuration of each part of the server.
pub struct Parts {
    /// How instances are started.
    pub runtime: RuntimeConfig,
    /// Admission, keep-alive and limits.
    pub scheduler: SchedulerConfig,
    /// Async event delivery.
    pub async_delivery: nimbus_control::AsyncConfig,
    /// Invocation logs and the usage bill.
    pub telemetry: nimbus_telemetry::TelemetryConfig,
    /// How the API treats requests.
    pub api: nimbus_api::ApiConfig,
    /// What client connections may cost.
    pub connections: nimbus_api::ConnectionLimits,
    /// What the sandbox does here, for `/nimbus/v1/health` and the start-up log.
    pub isolation: Isolation,
    /// How long unreferenced code is kept.
    pub code_gc_grace: Duration,
    /// How long in-flight requests get after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

impl Parts {
    /// Every part's configuration from `config` as applied to `host`; refuses settings the
    /// host cannot honour.
    pub fn build(config: &ServerConfig, host: Host) -> anyhow::Result<Parts> {
        let sandbox = host.sandbox;
        let isolate_network = config.sandbox.instance_network == InstanceNetwork::None;
        if isolate_network && !sandbox.namespaces {
            bail!(
                "--instance-network none needs network namespaces: run the server as root, with the sandbox on"
            );
        }
        let cgroups = host.cgroups.as_deref();
        let isolation = Isolation {
            pid_namespace: sandbox.namespaces,
            mount_namespace: sandbox.namespaces,
            ipc_namespace: sandbox.namespaces,
            uts_namespace: sandbox.namespaces,
            network_namespace: isolate_network,
            root_view: sandbox.namespaces,
            private_tmp: sandbox.namespaces,
            tmp_on_disk: host.tmp_disks.is_some(),
            read_only_code: sandbox.namespaces,
            unprivileged_user: sandbox.unprivileged,
            capabilities_dropped: sandbox.unprivileged,
            cgroups: cgroups.map(|c| match c.layout {
                Layout::V1 => CgroupVersion::V1,
                Layout::V2 => CgroupVersion::V2,
            }),
            memory_limit: cgroups.is_some(),
            pids_limit: cgroups.is_some(),
            cpu_share: cgroups.is_some(),
            cgroup_freezer: cgroups.is_some_and(|c| c.freezer),
            seccomp: sandbox.seccomp,
            rlimits: true,
            no_new_privs: true,
            clean_environment: true,
            api_authentication: host.credentials.is_some(),
        };
        let runtime = RuntimeConfig {
            python: host.python,
            node: host.node,
            clients: host.clients,
            region: config.region.clone(),
            sandbox,
            cgroups: host.cgroups.clone(),
            staging: host.data.join("rootfs"),
            exposed: config.sandbox.expose.clone(),
            jailer: (!config.sandbox.no_sandbox).then(|| nimbus_sandbox::Jailer {
                // The running binary itself, even if the file was replaced since.
                program: PathBuf::from("/proc/self/exe"),
                args: vec![crate::JAIL_COMMAND.to_owned()],
                base: None, // the launcher knows what every instance sees
            }),
            warm_shells: config.sandbox.warm_shells,
            isolate_network,
            tmp_disks: host.tmp_disks,
        };
        let limits = &config.limits;
        let scheduler = SchedulerConfig {
            keep_alive: Duration::from_secs(limits.keep_alive),
            max_concurrency: limits.max_concurrency,
            memory_budget_mb: limits
                .memory_budget
                .unwrap_or(host.default_memory_budget_mb),
            queue_timeout: Duration::from_millis(limits.queue_timeout),
            init_timeout: Duration::from_secs(limits.init_timeout),
        };
        let telemetry = nimbus_telemetry::TelemetryConfig {
            retention: nimbus_telemetry::LogRetention {
                max_age: Duration::from_secs(config.logs.retention_hours.saturating_mul(3600)),
                max_bytes: config.logs.max_mb.saturating_mul(1024 * 1024),
            },
            prices: nimbus_telemetry::PriceTable {
                per_gb_second: config.prices.gb_second,
                per_million_requests: config.prices.million_requests,
            },
        };
        let http = &config.http;
        Ok(Parts {
            runtime,
            scheduler,
            async_delivery: nimbus_control::AsyncConfig {
                retry_delay: Duration::from_millis(config.async_delivery.retry_delay),
                workers: config.async_delivery.workers,
                node_id: String::new(), // the server sets it: it knows the data dir's id
                lease: Duration::from_secs(config.async_delivery.lease.max(1)),
            },
            telemetry,
            api: nimbus_api::ApiConfig {
                credentials: host.credentials,
                region: config.region.clone(),
                body_idle_timeout: Duration::from_secs(http.body_idle_timeout),
                unverified_body_budget_mb: http.unverified_body_budget,
            },
            connections: nimbus_api::ConnectionLimits {
                header_read_timeout: Duration::from_secs(http.header_read_timeout),
                max_connections: http.max_connections,
                max_connections_per_client: http.max_connections_per_client,
            },
            isolation,
            code_gc_grace: Duration::from_secs(config.storage.code_gc_grace),
            shutdown_grace: Duration::from_secs(http.shutdown_grace),
        })
    }
}

/// Logs which isolation features instances get on this host, and which they lack.
pub fn log_isolation(isolation: &Isolation) {
    // Not host limitations but choices: authentication (logged on its own) and
    // `--instance-network`.
    let not_host = ["api_authentication", "network_namespace"];
    let (mut on, mut off) = (Vec::new(), Vec::new());
    // Through JSON, so the names are the health report's (in alphabetical order).
    if let Ok(serde_json::Value::Object(features)) = serde_json::to_value(isolation) {
        for (name, value) in features {
            match value {
                serde_json::Value::Bool(true) => on.push(name),
                serde_json::Value::String(layout) => on.push(format!("{name} {layout}")),
                _ if not_host.contains(&name.as_str()) => {}
                _ => off.push(name),
            }
        }
    }
    tracing::info!("isolation: {}", on.join(", "));
    if !off.is_empty() {
        tracing::warn!("isolation not available here: {}", off.join(", "));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, sandbox: Capabilities) -> Host {
        Host {
            data: dir.to_owned(),
            sandbox,
            cgroups: None,
            tmp_disks: None,
            clients: nimbus_runtime::builtin::install(&dir.join("runtime")).expect("clients"),
            python: "/usr/bin/python3".into(),
            node: "/usr/bin/node".into(),
            credentials: None,
            default_memory_budget_mb: 1234,
        }
    }

    #[test]
    fn every_part_takes_its_settings_from_the_config() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = ServerConfig::default();
        config.limits.keep_alive = 5;
        config.limits.queue_timeout = 40;
        config.http.header_read_timeout = 3;
        config.http.max_connections_per_client = 9;
        config.async_delivery.retry_delay = 200;
        config.logs.retention_hours = 2;
        config.region = "eu-west-1".to_owned();
        let parts = Parts::build(&config, host(dir.path(), Capabilities::none())).expect("parts");
        assert_eq!(parts.scheduler.keep_alive, Duration::from_secs(5));
        assert_eq!(parts.scheduler.queue_timeout, Duration::from_millis(40));
        assert_eq!(
            parts.scheduler.memory_budget_mb, 1234,
            "80% of RAM when unset"
        );
        assert_eq!(
            parts.connections.header_read_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(parts.connections.max_connections_per_client, 9);
        assert_eq!(parts.async_delivery.retry_delay, Duration::from_millis(200));
        assert_eq!(
            parts.telemetry.retention.max_age,
            Duration::from_secs(2 * 3600)
        );
        assert_eq!(parts.api.region, "eu-west-1");
        assert_eq!(parts.runtime.region, "eu-west-1");
        assert!(
            parts.runtime.jailer.is_some(),
            "the sandbox is on by default"
        );
        assert_eq!(parts.runtime.staging, dir.path().join("rootfs"));
    }

    #[test]
    fn the_isolation_report_says_what_the_host_allows() {
        let dir = tempfile::tempdir().expect("tmp");
        let parts = Parts::build(
            &ServerConfig::default(),
            host(dir.path(), Capabilities::none()),
        )
        .expect("parts");
        let report = serde_json::to_value(&parts.isolation).expect("json");
        assert_eq!(report["pid_namespace"], false);
        assert!(report["cgroups"].is_null());
        assert_eq!(report["rlimits"], true);
        assert_eq!(report["api_authentication"], false);
    }

    #[test]
    fn an_isolated_network_is_refused_without_namespaces() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = ServerConfig::default();
        config.sandbox.instance_network = InstanceNetwork::None;
        let err = Parts::build(&config, host(dir.path(), Capabilities::none()))
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("needs network namespaces"),
            "{err}"
        );
    }
}
