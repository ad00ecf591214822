//! The jailer: starts an instance's process so that it can never outlive Nimbus, and ends
//! it with everything it started. This is the only crate with `unsafe` code.
//!
//! Each instance runs as the leader of its own process group, with a parent-death signal
//! of SIGKILL, so a server killed with SIGKILL takes its instances with it. Where the host
//! allows (root), the runtime also runs as PID 1 of its own PID namespace under a small
//! waiting parent: when that parent dies, the kernel kills every process the runtime
//! started too, however it detached. Cgroups and rlimits come here as isolation lands.

pub mod cgroup;
mod seccomp;

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

/// The instance's own view of the filesystem (with a mount namespace, as root).
#[derive(Debug, Clone)]
pub struct FsView {
    /// Size of its private `/tmp`, MB; `None` keeps the host's (when the instance's own
    /// files live under `/tmp`, a private one would hide them).
    pub tmp_mb: Option<u32>,
    /// Directories it sees read-only, whoever it runs as (its code).
    pub read_only: Vec<PathBuf>,
}

/// What to run, and with what.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment: nothing of the server's is passed on.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Its filesystem view, applied where the host allows mount namespaces.
    pub fs: FsView,
}

/// What this host lets Nimbus do to contain instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Each instance gets its own PID namespace (needs root).
    pub pid_namespace: bool,
    /// Each instance gets its own mount namespace: a private `/tmp`, read-only code (root).
    pub mount_namespace: bool,
    /// Each instance runs under the seccomp filter.
    pub seccomp: bool,
}

impl Capabilities {
    /// Detects what this host allows.
    pub fn detect() -> Self {
        let root = nix::unistd::geteuid().is_root();
        Capabilities {
            pid_namespace: root,
            mount_namespace: root,
            seccomp: seccomp::filter().is_some(),
        }
    }
}

/// Strings the child needs for its mounts, prepared before the fork (the child may not
/// allocate).
struct Mounts {
    tmp_options: Option<std::ffi::CString>,
    read_only: Vec<std::ffi::CString>,
}

impl Mounts {
    fn of(fs: &FsView) -> Result<Mounts, SandboxError> {
        let c = |text: &[u8]| {
            std::ffi::CString::new(text).map_err(|e| SandboxError::Spawn {
                program: "mount setup".to_owned(),
                source: std::io::Error::other(e),
            })
        };
        Ok(Mounts {
            tmp_options: fs
                .tmp_mb
                .map(|mb| c(format!("size={}m,mode=1777", mb.max(1)).as_bytes()))
                .transpose()?,
            read_only: fs
                .read_only
                .iter()
                .map(|p| c(p.as_os_str().as_encoded_bytes()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// In the child: a private mount namespace with its own `/tmp` and read-only code.
    ///
    /// # Safety
    /// Only between fork and exec; calls async-signal-safe syscalls only.
    unsafe fn apply(&self) -> std::io::Result<()> {
        use nix::libc::{
            mount, MS_BIND, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT,
        };
        let check = |rc: i32| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let none = std::ptr::null();
        check(nix::libc::unshare(nix::libc::CLONE_NEWNS))?;
        // Nothing mounted here propagates back to the host.
        check(mount(
            none,
            c"/".as_ptr(),
            none,
            MS_REC | MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for dir in &self.read_only {
            check(mount(
                dir.as_ptr(),
                dir.as_ptr(),
                none,
                MS_BIND | MS_REC,
                std::ptr::null(),
            ))?;
            check(mount(
                none,
                dir.as_ptr(),
                none,
                MS_BIND | MS_REMOUNT | MS_RDONLY,
                std::ptr::null(),
            ))?;
        }
        if let Some(options) = &self.tmp_options {
            check(mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                MS_NOSUID | MS_NODEV,
                options.as_ptr().cast(),
            ))?;
        }
        Ok(())
    }
}

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
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let server = std::process::id();
    let pid_namespace = caps.pid_namespace;
    let procs: Vec<std::ffi::CString> = limits.map(|c| c.procs.clone()).unwrap_or_default();
    let filter = if caps.seccomp {
        seccomp::filter()
    } else {
        None
    };
    let mounts = if caps.mount_namespace {
        Some(Mounts::of(&spec.fs)?)
    } else {
        None
    };
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, unshare, fork, close_range, waitpid,
    // signal, kill, _exit); it allocates nothing.
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
            if let Some(mounts) = &mounts {
                mounts.apply()?;
            }
            if pid_namespace && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).is_ok() {
                // The next child is PID 1 of the new namespace; this process stays outside
                // as its parent, so the runtime dies (and takes the namespace) when we do.
                match nix::unistd::fork().map_err(std::io::Error::from)? {
                    nix::unistd::ForkResult::Child => {
                        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                            .map_err(std::io::Error::from)?;
                    }
                    nix::unistd::ForkResult::Parent { child } => wait_and_mirror(child),
                }
            }
            // Last, so the set-up above may still mount and unshare.
            if let Some(filter) = filter {
                seccompiler::apply_filter(filter).map_err(std::io::Error::other)?;
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| SandboxError::Spawn {
        program: spec.program.display().to_string(),
        source,
    })
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
