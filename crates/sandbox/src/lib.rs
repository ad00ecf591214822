//! The jailer: starts an instance's process so that it can never outlive Nimbus, and ends
//! it with everything it started. This is the only crate with `unsafe` code.
//!
//! Each instance runs as the leader of its own process group, with a parent-death signal
//! of SIGKILL, so a server killed with SIGKILL takes its instances with it. Where the host
//! allows (root), the runtime also runs as PID 1 of its own PID namespace under a small
//! waiting parent: when that parent dies, the kernel kills every process the runtime
//! started too, however it detached. Cgroups and rlimits come here as isolation lands.

pub mod cgroup;
pub mod identity;
mod rootfs;
mod seccomp;

pub use rootfs::{Bind, RootView};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Why an instance process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The program could not be executed.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program that was to run.
        program: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// What to run, and with what.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The executable, as a path inside the instance's view.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment: nothing of the server's is passed on.
    pub env: BTreeMap<String, String>,
    /// Its working directory on the host, used when there is no root view.
    pub cwd: PathBuf,
    /// Its own root filesystem, where the host allows namespaces.
    pub root: Option<RootView>,
    /// The unprivileged user (and group) it runs as, where the host allows.
    pub uid: Option<u32>,
}

/// What this host lets Nimbus do to contain instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Each instance gets its own mount, PID, IPC and UTS namespaces and root view (root).
    pub namespaces: bool,
    /// Each instance runs as its own unprivileged user with no capabilities (root).
    pub unprivileged: bool,
    /// Each instance runs under the seccomp filter.
    pub seccomp: bool,
}

impl Capabilities {
    /// Detects what this host allows.
    pub fn detect() -> Self {
        let root = nix::unistd::geteuid().is_root();
        Capabilities {
            namespaces: root,
            unprivileged: root,
            seccomp: seccomp::filter().is_some(),
        }
    }

    /// Nothing at all, for `--no-sandbox`.
    pub fn none() -> Self {
        Capabilities {
            namespaces: false,
            unprivileged: false,
            seccomp: false,
        }
    }
}

/// The host name instances see in their own UTS namespace.
const HOSTNAME: &[u8] = b"nimbus";

/// Open files an instance may hold, as Lambda allows.
const NOFILE: u64 = 1024;

/// Starts `spec` in a new process group with stdout and stderr piped and stdin closed.
/// The process is killed by the kernel if the server dies; with `caps.pid_namespace`, so is
/// everything it starts.
pub fn spawn(
    spec: &ProcessSpec,
    caps: Capabilities,
    limits: Option<&cgroup::InstanceCgroup>,
) -> Result<tokio::process::Child, SandboxError> {
    let failed = |source: std::io::Error| SandboxError::Spawn {
        program: spec.program.display().to_string(),
        source,
    };
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let server = std::process::id();
    let procs: Vec<std::ffi::CString> = limits.map(|c| c.procs.clone()).unwrap_or_default();
    let filter = if caps.seccomp {
        seccomp::filter()
    } else {
        None
    };
    let root = match (&spec.root, caps.namespaces) {
        (Some(view), true) => Some(rootfs::Plan::of(view).map_err(failed)?),
        _ => {
            command.current_dir(&spec.cwd);
            None
        }
    };
    let uid = spec.uid.filter(|_| caps.unprivileged);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, open, write, setrlimit, unshare, mount,
    // mkdir, fork, close_range, waitpid, kill, setres[ug]id, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The server may have died between fork and prctl: then nobody will signal us.
            if nix::unistd::getppid().as_raw() != server as i32 {
                nix::libc::_exit(1);
            }
            // Join the instance's cgroups ("0" is the writing process) before anything runs.
            for path in &procs {
                let fd = nix::libc::open(path.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
                if fd < 0 || nix::libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::libc::close(fd);
            }
            let limit = |resource, value: u64| {
                let rlimit = nix::libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                nix::libc::setrlimit(resource, &rlimit)
            };
            limit(nix::libc::RLIMIT_NOFILE, NOFILE);
            limit(nix::libc::RLIMIT_CORE, 0);
            // Nothing the function runs can gain privileges (setuid binaries and the like).
            nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if let Some(root) = &root {
                use nix::sched::CloneFlags;
                nix::sched::unshare(
                    CloneFlags::CLONE_NEWNS
                        | CloneFlags::CLONE_NEWPID
                        | CloneFlags::CLONE_NEWIPC
                        | CloneFlags::CLONE_NEWUTS,
                )
                .map_err(std::io::Error::from)?;
                if nix::libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                root.build()?;
                // The next child is PID 1 of the new namespace; this process stays outside
                // as its parent, so the runtime dies (and takes the namespace) when we do.
                match nix::unistd::fork().map_err(std::io::Error::from)? {
                    nix::unistd::ForkResult::Child => {
                        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                            .map_err(std::io::Error::from)?;
                    }
                    nix::unistd::ForkResult::Parent { child } => wait_and_mirror(child),
                }
                root.enter()?;
            }
            if let Some(uid) = uid {
                identity::become_user(uid)?;
            }
            // Last, so the set-up above may still mount and unshare.
            if let Some(filter) = filter {
                seccompiler::apply_filter(filter).map_err(std::io::Error::other)?;
            }
            Ok(())
        });
    }
    command.spawn().map_err(failed)
}

/// Runs in the parent left outside the PID namespace: holds no files (so the spawner sees
/// the exec of the runtime, not of this process), waits for the runtime and exits as it did.
///
/// # Safety
/// Only for the forked child inside `pre_exec`: calls async-signal-safe functions only.
unsafe fn wait_and_mirror(child: Pid) -> ! {
    nix::libc::close_range(0, u32::MAX, 0);
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => nix::libc::_exit(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
                nix::libc::signal(signal as i32, nix::libc::SIG_DFL);
                nix::libc::kill(nix::libc::getpid(), signal as i32);
                nix::libc::_exit(128 + signal as i32);
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => nix::libc::_exit(1),
        }
    }
}

/// The process that runs the workload of the instance whose process is `pid`: `pid`
/// itself, or its child when the instance has a PID namespace.
pub fn workload_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|children| children.split_whitespace().next()?.parse().ok())
        .unwrap_or(pid)
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

/// Kills the process group led by `pid`: the instance and everything it started.
pub fn kill_group(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH means the group is already gone, which is what we want.
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
}
