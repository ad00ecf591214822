//! The jailer: starts an instance's process so that it is contained and can never outlive
//! Nimbus. This is the only crate with `unsafe` code.
//!
//! With the sandbox on, an instance starts as a *shell*: the `nimbus jail` process, started
//! ahead of demand by [`start_shell`] in a new process group with a parent-death signal of
//! SIGKILL, already inside its cgroups (joining a cgroup-v1 memory controller costs ~10 ms,
//! so it happens before anyone waits). [`Shell::run`] hands it a [`ProcessSpec`]; [`jail`]
//! then builds the namespaces, root view, user and seccomp filter around itself and becomes
//! the runtime. `--no-sandbox` runs the runtime as a plain child instead ([`spawn_plain`]).

pub mod cgroup;
pub mod identity;
pub mod jail;
mod network;
mod rootfs;
mod seccomp;
pub mod tmpdisk;

pub use rootfs::{BaseView, Bind, RootView, Tmp};
pub use tmpdisk::{TmpDisk, TmpDisks};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

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

/// What to run, and with what: what the server sends a jailer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The executable, as a path inside the instance's view.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment: nothing of the server's is passed on.
    pub env: BTreeMap<String, String>,
    /// Its working directory on the host, used when there is no root view.
    pub cwd: PathBuf,
    /// Its own part of the root view (on the shell's [`BaseView`]), where the host allows
    /// namespaces.
    pub root: Option<RootView>,
    /// The unprivileged user (and group) it runs as, where the host allows.
    pub uid: Option<u32>,
    /// Whether it runs under the seccomp filter.
    pub seccomp: bool,
    /// Whether it gets a network namespace of its own with only a loopback interface; its
    /// Runtime API listener is then made inside it ([`RUNTIME_API_PORT`]) and handed back.
    #[serde(default)]
    pub isolated_network: bool,
}

/// Where an instance with a network of its own finds its Runtime API, as on Lambda.
pub const RUNTIME_API_PORT: u16 = 9001;

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
const HOSTNAME: &str = "nimbus";

/// Open files an instance may hold, as Lambda allows.
const NOFILE: u64 = 1024;

/// How the server starts jailers: `program` with `args` runs [`jail::main`].
#[derive(Debug, Clone)]
pub struct Jailer {
    /// The program (the server's own binary).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The view every instance shares, built by each shell as it starts (`None`: no
    /// namespaces on this host).
    pub base: Option<BaseView>,
}

/// A jailer started ahead of demand, inside its cgroups, waiting for what to run.
#[derive(Debug)]
pub struct Shell {
    child: tokio::process::Child,
    /// The server's end of the jailer's stdin: the spec goes out, a listener may come back.
    control: tokio::net::UnixStream,
    /// The cgroups it is in (their limits are set when it is given work).
    pub cgroup: Option<Arc<cgroup::InstanceCgroup>>,
    /// The disk it mounts at `/tmp` while it waits, if any.
    pub tmp: Option<TmpDisk>,
}

/// A new process of the server's: its own process group, killed when its handle is
/// dropped, an empty environment, stdin as given (the spec, or nothing), stdout and stderr
/// piped (the log). It ties itself to the server's life ([`tie_to_server`]).
fn command(program: &std::path::Path, stdin: Stdio) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// Ties the calling process to the server `server`: killed by the kernel when the server
/// dies, or at once if it already has.
fn tie_to_server(server: u32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The server may have died before prctl: then nobody will signal us.
    if nix::unistd::getppid().as_raw() != server as i32 {
        std::process::exit(1);
    }
    Ok(())
}

/// Starts a shell in `cgroup` (a cheap `posix_spawn`: the jailer itself ties itself to
/// the server and joins its cgroups, before it reads what to run).
pub fn start_shell(
    jailer: &Jailer,
    cgroup: Option<Arc<cgroup::InstanceCgroup>>,
) -> Result<Shell, SandboxError> {
    let spawn_failed = |source| SandboxError::Spawn {
        program: jailer.program.display().to_string(),
        source,
    };
    // A socket rather than a pipe: it can carry a file descriptor back.
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_failed)?;
    // The base view first (a small write into an empty socket buffer: it never blocks).
    let mut base = serde_json::to_vec(&jailer.base).map_err(|e| spawn_failed(e.into()))?;
    base.push(b'\n');
    std::io::Write::write_all(&mut ours, &base).map_err(spawn_failed)?;
    ours.set_nonblocking(true).map_err(spawn_failed)?;
    let control = tokio::net::UnixStream::from_std(ours).map_err(spawn_failed)?;
    let mut command = command(
        &jailer.program,
        Stdio::from(std::os::fd::OwnedFd::from(theirs)),
    );
    command
        .arg0("nimbus-jail")
        .args(&jailer.args)
        .arg(std::process::id().to_string())
        .args(cgroup.iter().flat_map(|c| c.procs.iter()));
    let child = command.spawn().map_err(spawn_failed)?;
    Ok(Shell {
        child,
        control,
        cgroup,
        tmp: jailer.base.as_ref().and_then(|b| b.tmp.clone()),
    })
}

impl Shell {
    /// Hands the shell `spec`: it builds the sandbox and becomes the instance's runtime.
    /// The child returned is the jailer's process, which exits as the runtime does; with
    /// an isolated network, so is the Runtime API listener the jailer made inside it.
    pub async fn run(
        mut self,
        spec: &ProcessSpec,
    ) -> Result<(tokio::process::Child, Option<std::net::TcpListener>), SandboxError> {
        let failed = |source: std::io::Error| SandboxError::Spawn {
            program: spec.program.display().to_string(),
            source,
        };
        let mut json = serde_json::to_vec(spec).map_err(|e| failed(std::io::Error::other(e)))?;
        json.push(b'\n');
        self.control.write_all(&json).await.map_err(failed)?;
        // Closing our writing side is the end of the spec.
        self.control.shutdown().await.map_err(failed)?;
        if !spec.isolated_network {
            return Ok((self.child, None));
        }
        let received = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            receive_fd(&self.control),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the jailer sent no Runtime API socket",
            ))
        });
        match received {
            Ok(fd) => Ok((self.child, Some(std::net::TcpListener::from(fd)))),
            Err(e) => {
                // The jailer said why on stderr before it exited.
                let mut said = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let read = stderr.read_to_string(&mut said);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
                }
                let said = said.trim();
                Err(failed(if said.is_empty() {
                    e
                } else {
                    std::io::Error::other(said.to_owned())
                }))
            }
        }
    }

    /// Whether the shell is still waiting (it may have been killed meanwhile).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Receives one file descriptor sent over `socket` (SCM_RIGHTS).
async fn receive_fd(socket: &tokio::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    loop {
        socket.readable().await?;
        let received = socket.try_io(tokio::io::Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!(std::os::fd::RawFd);
            let message = recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            let mut fds = Vec::new();
            for cmsg in message.cmsgs()? {
                if let ControlMessageOwned::ScmRights(sent) = cmsg {
                    fds.extend(sent);
                }
            }
            Ok((message.bytes, fds))
        });
        match received {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
            Ok((_, fds)) => {
                let mut fds = fds.into_iter();
                let Some(fd) = fds.next() else {
                    return Err(std::io::Error::other(
                        "the jailer ended before sending its Runtime API socket",
                    ));
                };
                // SAFETY: the kernel just gave us these descriptors; nothing else owns them.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                for extra in fds {
                    // SAFETY: as above; more than one was never sent, so close any extra.
                    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(extra) });
                }
                return Ok(owned);
            }
        }
    }
}

/// Starts `spec` as a plain child process of the server's (`--no-sandbox`): its own
/// process group and the parent-death signal, nothing else.
pub fn spawn_plain(spec: &ProcessSpec) -> Result<tokio::process::Child, SandboxError> {
    let mut command = command(&spec.program, Stdio::null());
    command
        .args(&spec.args)
        .envs(&spec.env)
        .current_dir(&spec.cwd);
    let server = std::process::id();
    // SAFETY: the closure runs between fork and exec and calls only prctl, getppid and
    // exit; it allocates nothing.
    unsafe {
        command.pre_exec(move || tie_to_server(server));
    }
    command.spawn().map_err(|source| SandboxError::Spawn {
        program: spec.program.display().to_string(),
        source,
    })
}

/// Runs in the jailer left outside the PID namespace: holds no files (so the server sees
/// the runtime's output end with the runtime), waits for the runtime and exits as it did.
///
/// # Safety
/// Only in a single-threaded process: closes every descriptor.
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
