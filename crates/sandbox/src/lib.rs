//! The jailer: starts an instance's process so that it can never outlive Nimbus, and ends
//! it with everything it started. This is the only crate with `unsafe` code.
//!
//! Each instance runs as the leader of its own process group, with a parent-death signal
//! of SIGKILL, so a server killed with SIGKILL takes its instances with it. Namespaces,
//! cgroups and rlimits come here too, as the isolation work lands.

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
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment: nothing of the server's is passed on.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: PathBuf,
}

/// Starts `spec` in a new process group with stdout and stderr piped and stdin closed.
/// The process is killed by the kernel if the server dies.
pub fn spawn(spec: &ProcessSpec) -> Result<tokio::process::Child, SandboxError> {
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
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The server may have died between fork and prctl: then nobody will signal us.
            if nix::unistd::getppid().as_raw() != server as i32 {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| SandboxError::Spawn {
        program: spec.program.display().to_string(),
        source,
    })
}

/// Kills the process group led by `pid`: the instance and everything it started.
pub fn kill_group(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH means the group is already gone, which is what we want.
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
}
