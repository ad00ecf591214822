//! Starting instances: the process and environment each runtime family needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nimbus_core::arn::ArnScope;
use nimbus_core::{FunctionConfig, RuntimeFamily};
use nimbus_sandbox::ProcessSpec;
use tokio::sync::{mpsc, watch};

use crate::builtin::BuiltinClients;
use crate::instance::{Identity, Instance, Shared};
use crate::shells::{remove_later, ShellPool};
use crate::{output, runtime_api, RuntimeError};
use nimbus_sandbox::cgroup::InstanceCgroup;

/// How this node runs instances.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The interpreter for `python3.*` functions.
    pub python: PathBuf,
    /// The interpreter for `nodejs*` functions.
    pub node: PathBuf,
    /// Where the built-in runtime clients are.
    pub clients: BuiltinClients,
    /// The region functions see and ARNs carry.
    pub region: String,
    /// What the host lets the sandbox do.
    pub sandbox: nimbus_sandbox::Capabilities,
    /// Per-instance cgroups (memory, pids, CPU), where the host has them.
    pub cgroups: Option<Arc<nimbus_sandbox::cgroup::Cgroups>>,
    /// An empty directory each instance's root view is assembled on.
    pub staging: PathBuf,
    /// Host directories every instance also sees, read-only at the same path.
    pub exposed: Vec<PathBuf>,
    /// How instances are jailed; `None` runs them as plain child processes (`--no-sandbox`).
    pub jailer: Option<nimbus_sandbox::Jailer>,
    /// Jailers kept started ahead of demand, so cold starts skip their set-up.
    pub warm_shells: usize,
    /// Whether each instance gets a network namespace of its own with only loopback.
    pub isolate_network: bool,
    /// Where instances' `/tmp` disks are made; `None` gives them a tmpfs (which counts
    /// against their memory).
    pub tmp_disks: Option<nimbus_sandbox::TmpDisks>,
}

/// A started instance process, its cgroups, and the Runtime API listener it made inside
/// its own network (if it has one).
type Spawned = (
    tokio::process::Child,
    Option<Arc<InstanceCgroup>>,
    Option<std::net::TcpListener>,
);

/// Host directories of the system every instance sees read-only, where they exist.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// Where an instance sees its code, as on Lambda.
const TASK_ROOT: &str = "/var/task";
/// Where an instance sees the runtime client, as on Lambda.
const RUNTIME_DIR: &str = "/var/runtime";

/// Starts instances of functions.
pub struct Launcher {
    config: RuntimeConfig,
    scope: ArnScope,
    uids: Arc<nimbus_sandbox::identity::UidPool>,
    shells: Option<Arc<ShellPool>>,
}

/// Why an instance is started, as `AWS_LAMBDA_INITIALIZATION_TYPE` tells the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    /// For an invocation that is waiting.
    OnDemand,
    /// Ahead of demand, to be kept warm.
    Provisioned,
}

impl InitType {
    fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::Provisioned => "provisioned-concurrency",
        }
    }
}

/// Why a function has no runnable entry point, as Lambda words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingEntrypoint(pub String);

impl Launcher {
    /// A launcher with `config`.
    pub fn new(config: RuntimeConfig) -> Self {
        let scope = ArnScope {
            region: config.region.clone(),
        };
        let common_binds = common_binds(&config);
        let shells = config.jailer.clone().map(|mut jailer| {
            jailer.base = config.sandbox.namespaces.then(|| nimbus_sandbox::BaseView {
                staging: config.staging.clone(),
                binds: common_binds.clone(),
                tmp: None, // each shell's own
            });
            let pool = ShellPool::new(
                jailer,
                config.cgroups.clone(),
                config.tmp_disks.clone(),
                config.warm_shells,
            );
            // Waiting before the first invocation comes.
            if tokio::runtime::Handle::try_current().is_ok() {
                pool.refill();
            }
            pool
        });
        Launcher {
            config,
            scope,
            uids: nimbus_sandbox::identity::UidPool::new(),
            shells,
        }
    }

    /// Stops keeping shells ahead of demand (at shutdown): the waiting ones are killed.
    pub fn shutdown(&self) {
        if let Some(shells) = &self.shells {
            shells.close();
        }
    }

    /// Whether instances get their own root view (code at `/var/task`, …).
    fn root_view(&self) -> bool {
        self.config.sandbox.namespaces && self.shells.is_some()
    }

    /// Where an instance sees its code and the runtime clients' directory.
    fn inside_paths(&self, code_dir: &Path) -> (PathBuf, PathBuf) {
        if self.root_view() {
            (PathBuf::from(TASK_ROOT), PathBuf::from(RUNTIME_DIR))
        } else {
            (code_dir.to_owned(), self.config.clients.dir.clone())
        }
    }

    /// The process to run for `function` with code in `code_dir`, or why there is none.
    fn process(
        &self,
        function: &FunctionConfig,
        code_dir: &Path,
    ) -> Result<(PathBuf, Vec<String>), MissingEntrypoint> {
        let (task_root, runtime_dir) = self.inside_paths(code_dir);
        let client = |path: &Path| {
            let name = path.file_name().unwrap_or_default();
            vec![runtime_dir.join(name).display().to_string()]
        };
        match function.spec.runtime.family() {
            RuntimeFamily::Python => Ok((
                self.config.python.clone(),
                client(&self.config.clients.python),
            )),
            RuntimeFamily::Node => {
                Ok((self.config.node.clone(), client(&self.config.clients.node)))
            }
            RuntimeFamily::Provided => {
                let bootstrap = task_root.join("bootstrap");
                if code_dir.join("bootstrap").is_file() {
                    Ok((bootstrap, Vec::new()))
                } else {
                    Err(MissingEntrypoint(format!(
                        "Couldn't find valid bootstrap(s): [{}]",
                        bootstrap.display()
                    )))
                }
            }
        }
    }

    /// The environment an instance of `function` sees: Lambda's variables and the user's.
    fn environment(
        &self,
        function: &FunctionConfig,
        code_dir: &Path,
        instance_id: &str,
        api: &str,
        init: InitType,
    ) -> BTreeMap<String, String> {
        let spec = &function.spec;
        let mut env = BTreeMap::new();
        if let Some(user) = &spec.environment {
            env.extend(user.clone());
        }
        let (task_root, runtime_dir) = self.inside_paths(code_dir);
        let today = chrono::Utc::now().format("%Y/%m/%d");
        let fixed = [
            ("AWS_LAMBDA_RUNTIME_API", api.to_owned()),
            ("_HANDLER", spec.handler.clone()),
            ("AWS_REGION", self.config.region.clone()),
            ("AWS_DEFAULT_REGION", self.config.region.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", init.as_str().to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", function.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("{today}/[{}]{instance_id}", function.version),
            ),
            ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", runtime_dir.display().to_string()),
            ("TZ", ":UTC".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
            ("PYTHONUNBUFFERED", "1".to_owned()),
        ];
        for (key, value) in fixed {
            env.insert(key.to_owned(), value);
        }
        if spec.runtime.family() != RuntimeFamily::Provided {
            env.insert(
                "AWS_EXECUTION_ENV".to_owned(),
                format!("AWS_Lambda_{}", spec.runtime),
            );
        }
        env
    }

    /// Starts an instance of `function` whose code is unpacked in `code_dir`.
    /// `Ok(Err(_))` means the function has no entry point: a user error, not a platform one.
    pub async fn start(
        &self,
        function: &FunctionConfig,
        code_dir: &Path,
        init: InitType,
    ) -> Result<Result<Instance, MissingEntrypoint>, RuntimeError> {
        let (program, args) = match self.process(function, code_dir) {
            Ok(p) => p,
            Err(missing) => return Ok(Err(missing)),
        };
        // With a network of its own the instance's jailer makes the listener, inside it.
        let isolated = self.config.isolate_network && self.shells.is_some();
        let (listener, api_addr) = if isolated {
            let addr = std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                nimbus_sandbox::RUNTIME_API_PORT,
            ));
            (None, addr)
        } else {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(RuntimeError::Endpoint)?;
            let addr = listener.local_addr().map_err(RuntimeError::Endpoint)?;
            (Some(listener), addr)
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let identity = Identity {
            function: function.name.clone(),
            version: function.version.clone(),
            revision_id: function.revision_id.clone(),
            id: id.clone(),
        };
        let (submit, queue) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            identity,
            queue: tokio::sync::Mutex::new(queue),
            inflight: Mutex::new(None),
            last_answered: Mutex::new(None),
            init_error: Mutex::new(None),
            current_request: Mutex::new(None),
            capture: Mutex::new(None),
            ready: watch::channel(false).0,
            oom_killed: std::sync::atomic::AtomicBool::new(false),
            peak_memory: std::sync::atomic::AtomicU64::new(0),
        });
        let uid = if self.config.sandbox.unprivileged {
            Some(self.uids.lease().ok_or(RuntimeError::NoUserIds)?)
        } else {
            None
        };
        let mut spec = ProcessSpec {
            program,
            args,
            env: self.environment(function, code_dir, &id, &api_addr.to_string(), init),
            cwd: code_dir.to_owned(),
            root: self.root_view().then(|| nimbus_sandbox::RootView {
                binds: vec![
                    nimbus_sandbox::Bind {
                        source: code_dir.to_owned(),
                        target: PathBuf::from(TASK_ROOT),
                    },
                    nimbus_sandbox::Bind {
                        source: self.config.clients.dir.clone(),
                        target: PathBuf::from(RUNTIME_DIR),
                    },
                ],
                tmp_mb: function.spec.ephemeral_storage_mb,
                tmp: nimbus_sandbox::Tmp::Memory, // chosen with the shell
                cwd: PathBuf::from(TASK_ROOT),
            }),
            uid: uid.as_ref().map(|lease| lease.uid()),
            seccomp: self.config.sandbox.seccomp,
            isolated_network: isolated,
        };
        let started = Instant::now();
        let (mut child, cgroup, inside) = self.spawn(&mut spec, function.spec.memory_mb).await?;
        let listener = match (listener, inside) {
            (Some(listener), _) => Ok(listener),
            (None, Some(inside)) => inside
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(inside)),
            (None, None) => Err(std::io::Error::other(
                "the instance's Runtime API listener never arrived",
            )),
        };
        let listener = match listener {
            Ok(listener) => listener,
            Err(e) => {
                drop(child); // killed on drop
                if let Some(cgroup) = cgroup {
                    remove_later(cgroup);
                }
                return Err(RuntimeError::Endpoint(e));
            }
        };
        let router = runtime_api::router(shared.clone());
        let listener = runtime_api::OwnerOnly {
            listener,
            // Inside its own network nobody else can connect; the kernel's socket table
            // there is not the server's to ask.
            uid: uid.as_ref().map(|lease| lease.uid()).filter(|_| !isolated),
        };
        // The runtime may already be connecting: the listener queues it until served.
        let api_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "runtime api endpoint stopped");
            }
        });
        let pid = child.id().unwrap_or_default();
        let stdout = output::receiver(
            child
                .stdout
                .take()
                .map(|p| p.into_owned_fd())
                .and_then(Result::ok),
        );
        let stderr = output::receiver(
            child
                .stderr
                .take()
                .map(|p| p.into_owned_fd())
                .and_then(Result::ok),
        );
        let (flush, flushes) = mpsc::channel(1);
        tokio::spawn(output::forward(stdout, stderr, shared.clone(), flushes));
        let (exit_tx, exited) = watch::channel(None);
        let watched = cgroup.clone();
        let exit_shared = shared.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => describe_exit(status),
                Err(e) => format!("wait failed: {e}"),
            };
            if let Some(cgroup) = &watched {
                use std::sync::atomic::Ordering;
                exit_shared
                    .oom_killed
                    .store(cgroup.oom_killed(), Ordering::SeqCst);
                if let Some(peak) = cgroup.max_memory_bytes() {
                    exit_shared.peak_memory.store(peak, Ordering::SeqCst);
                }
            }
            let _ = exit_tx.send(Some(status));
            // Every process of the instance is gone with it: its user id is free again.
            drop(uid);
            if let Some(cgroup) = watched {
                // Its processes are exiting; the directory goes once they have.
                remove_later(cgroup);
            }
        });
        tracing::debug!(function = %function.name, instance = %id, pid, "instance started");
        Ok(Ok(Instance {
            shared,
            pid,
            submit,
            exited,
            api_task,
            api_addr,
            started,
            warm: false,
            flush,
            frozen: false,
            pid_namespace: self.config.sandbox.namespaces,
            cgroup,
        }))
    }

    /// Starts `spec` in a shell (its cgroups limited to `memory_mb`, its `/tmp` chosen to
    /// go with the shell's), or as a plain child.
    async fn spawn(&self, spec: &mut ProcessSpec, memory_mb: u32) -> Result<Spawned, RuntimeError> {
        let Some(shells) = &self.shells else {
            return Ok((nimbus_sandbox::spawn_plain(spec)?, None, None));
        };
        let mut shell = shells.take()?;
        if let Some(view) = &mut spec.root {
            view.tmp = self.tmp_for(shell.tmp.as_ref(), view.tmp_mb).await;
        }
        let cgroup = shell.cgroup.take();
        let limited = match &cgroup {
            Some(cgroup) => cgroup.limit(memory_mb).map_err(RuntimeError::Cgroup),
            None => Ok(()),
        };
        let started = match limited {
            Ok(()) => shell.run(spec).await.map_err(RuntimeError::from),
            Err(e) => Err(e), // the shell is killed as it is dropped
        };
        match started {
            Ok((child, listener)) => Ok((child, cgroup, listener)),
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    remove_later(cgroup);
                }
                if let Some(nimbus_sandbox::Tmp::Disk(disk)) = spec.root.as_ref().map(|v| &v.tmp) {
                    disk.remove();
                }
                Err(e)
            }
        }
    }

    /// The `/tmp` of an instance that asks for `size_mb` in a shell that mounted `shells`:
    /// that disk if it has the size, else a new one (a short mkfs), else a tmpfs.
    async fn tmp_for(
        &self,
        shells: Option<&nimbus_sandbox::TmpDisk>,
        size_mb: u32,
    ) -> nimbus_sandbox::Tmp {
        if shells.is_some_and(|d| d.size_mb == size_mb) {
            return nimbus_sandbox::Tmp::ShellDisk;
        }
        let Some(disks) = self.config.tmp_disks.clone() else {
            return nimbus_sandbox::Tmp::Memory;
        };
        match tokio::task::spawn_blocking(move || disks.make(size_mb)).await {
            Ok(Ok(disk)) => nimbus_sandbox::Tmp::Disk(disk),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, size_mb, "could not make a /tmp disk; this instance's /tmp is in memory");
                nimbus_sandbox::Tmp::Memory
            }
            Err(e) => {
                tracing::warn!(error = %e, "making a /tmp disk failed");
                nimbus_sandbox::Tmp::Memory
            }
        }
    }

    /// The interpreter Python functions run under.
    pub fn python(&self) -> &Path {
        &self.config.python
    }

    /// The ARN scope instances report.
    pub fn scope(&self) -> &ArnScope {
        &self.scope
    }
}

/// The host directories every instance sees read-only besides its own code: the system's,
/// the directories the interpreters live in (when outside them), and those exposed.
fn common_binds(config: &RuntimeConfig) -> Vec<nimbus_sandbox::Bind> {
    let mut dirs: Vec<PathBuf> = SYSTEM_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|dir| dir.symlink_metadata().is_ok())
        .collect();
    let covered = |dirs: &[PathBuf], path: &Path| dirs.iter().any(|d| path.starts_with(d));
    for interpreter in [&config.python, &config.node] {
        // `<prefix>/bin/<interpreter>`, after symlinks: the prefix holds its libraries.
        let real = std::fs::canonicalize(interpreter).unwrap_or_else(|_| interpreter.clone());
        for path in [interpreter, &real] {
            if let Some(prefix) = path.parent().and_then(Path::parent) {
                if path.is_absolute() && !covered(&dirs, path) && prefix != Path::new("/") {
                    dirs.push(prefix.to_owned());
                }
            }
        }
    }
    for dir in &config.exposed {
        if !covered(&dirs, dir) {
            dirs.push(dir.clone());
        }
    }
    dirs.into_iter().map(nimbus_sandbox::Bind::same).collect()
}

/// Lambda's wording of a process exit: `exit status 1`, `signal: killed`.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(9) => "signal: killed".to_owned(),
        Some(11) => "signal: segmentation fault".to_owned(),
        Some(6) => "signal: aborted".to_owned(),
        Some(15) => "signal: terminated".to_owned(),
        Some(n) => format!("signal: {n}"),
        None => "exit status unknown".to_owned(),
    }
}
