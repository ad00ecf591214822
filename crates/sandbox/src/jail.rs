//! The jailer process: `nimbus jail`, started by the server ahead of demand (it joins its
//! cgroups first), reads two lines of JSON on stdin (a Unix socket): the [`BaseView`] every
//! instance shares, which it builds at once (namespaces, the common root view, the PID-1
//! child), then, when there is work, the [`ProcessSpec`] to run, whose own parts (code,
//! `/tmp`, network, user, seccomp) it adds before it becomes the instance's runtime. Being a
//! process of its own, single-threaded and fresh from exec, it may allocate and report
//! errors plainly — unlike code between fork and exec in the multi-threaded server.
//!
//! With namespaces it forks once more: the runtime is PID 1 of its new PID namespace, and
//! the jailer stays outside as its parent, waiting to exit as it does (so the server, which
//! watches the jailer, sees the runtime's exit, and everything it started dies with it).

use std::os::unix::process::CommandExt;

use nix::sys::signal::Signal;

use crate::{identity, network, rootfs, seccomp, BaseView, ProcessSpec, HOSTNAME, NOFILE};

/// The exit code of a jailer that could not build its sandbox (its reason is on stderr).
pub const SETUP_FAILED: i32 = 127;

/// Runs the jailer, started as `jail <server pid> [<cgroup.procs file>…]`: ties itself to
/// the server, joins its cgroups, builds the base view it reads from stdin, then runs the
/// [`ProcessSpec`] that follows in its sandbox. Never returns; on failure says why on stderr
/// and exits with [`SETUP_FAILED`].
pub fn main() -> ! {
    let error = match join().and_then(|()| run()) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("nimbus jail: {error}");
    std::process::exit(SETUP_FAILED)
}

/// Why the sandbox could not be built: the step, and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
struct JailError {
    step: &'static str,
    source: std::io::Error,
}

fn at<E: Into<std::io::Error>>(step: &'static str) -> impl FnOnce(E) -> JailError {
    move |e| JailError {
        step,
        source: e.into(),
    }
}

/// Ties this process to the server and joins its cgroups, as the arguments say.
fn join() -> Result<(), JailError> {
    let mut args = std::env::args_os().skip(2);
    let server = args
        .next()
        .and_then(|pid| pid.to_str()?.parse::<u32>().ok())
        .ok_or_else(|| at("reading the server's pid")(std::io::Error::other("missing")))?;
    crate::tie_to_server(server).map_err(at("setting the parent-death signal"))?;
    // Before anything of the instance runs, so all of it is counted.
    for procs in args {
        std::fs::write(&procs, "0").map_err(at("joining the instance's cgroups"))?;
    }
    Ok(())
}

/// One line of JSON from the control socket.
fn read_line<T: serde::de::DeserializeOwned>(
    control: &mut impl std::io::BufRead,
    what: &'static str,
) -> Result<T, JailError> {
    let mut line = String::new();
    control.read_line(&mut line).map_err(at(what))?;
    serde_json::from_str(&line).map_err(|e| at(what)(std::io::Error::other(e)))
}

fn run() -> Result<std::convert::Infallible, JailError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: fd 0 is the control socket the server gave us; nothing else here owns it.
    let socket = unsafe { std::fs::File::from_raw_fd(0) };
    let mut control = std::io::BufReader::new(socket);
    // First what every instance of this server shares: built while no one waits.
    let base: Option<BaseView> = read_line(&mut control, "reading the base view")?;
    let limit = |resource, value| {
        nix::sys::resource::setrlimit(resource, value, value).map_err(at("setting rlimits"))
    };
    limit(nix::sys::resource::Resource::RLIMIT_NOFILE, NOFILE)?;
    limit(nix::sys::resource::Resource::RLIMIT_CORE, 0)?;
    // Nothing the function runs can gain privileges (setuid binaries and the like).
    nix::sys::prctl::set_no_new_privs().map_err(at("setting no_new_privs"))?;
    if let Some(base) = &base {
        let plan = rootfs::Plan::base(base).map_err(at("preparing the root view"))?;
        use nix::sched::CloneFlags;
        nix::sched::unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS,
        )
        .map_err(at("creating namespaces"))?;
        nix::unistd::sethostname(HOSTNAME).map_err(at("setting the host name"))?;
        rootfs::prepare(&base.staging).map_err(at("mounting the root view"))?;
        plan.run().map_err(at("building the root view"))?;
        // SAFETY: this process is single-threaded (the jailer never starts threads), so
        // the child may run anything after the fork.
        match unsafe { nix::unistd::fork() }.map_err(at("forking the runtime"))? {
            nix::unistd::ForkResult::Child => {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                    .map_err(at("setting the parent-death signal"))?;
            }
            nix::unistd::ForkResult::Parent { child } => {
                // SAFETY: single-threaded; the function only waits and exits.
                unsafe { crate::wait_and_mirror(child) }
            }
        }
        rootfs::mount_proc(&base.staging).map_err(at("mounting /proc"))?;
    }
    // Then what to run.
    let spec: ProcessSpec = read_line(&mut control, "reading the instance's spec")?;
    let mut command = std::process::Command::new(&spec.program);
    command.args(&spec.args).env_clear().envs(&spec.env);
    if spec.isolated_network {
        if base.is_none() {
            return Err(at("isolating the network")(std::io::Error::other(
                "a network of its own needs the namespaces of a root view",
            )));
        }
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(at("creating the network namespace"))?;
        network::loopback_up().map_err(at("bringing up the loopback interface"))?;
        let listener =
            std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, crate::RUNTIME_API_PORT))
                .map_err(at("opening the Runtime API socket"))?;
        network::send_fd(control.get_ref().as_raw_fd(), &listener)
            .map_err(at("handing over the Runtime API socket"))?;
    }
    match (&base, &spec.root) {
        (Some(base), Some(view)) => {
            rootfs::Plan::instance(base, view)
                .and_then(|plan| plan.run())
                .map_err(at("adding the function to the root view"))?;
            rootfs::enter(&base.staging, &view.cwd).map_err(at("entering the root view"))?;
        }
        (None, None) => {
            command.current_dir(&spec.cwd);
        }
        _ => {
            return Err(at("reading the instance's spec")(std::io::Error::other(
                "the spec and the shell disagree on the root view",
            )))
        }
    }
    if let Some(uid) = spec.uid {
        // SAFETY: single-threaded: the credentials change for the whole process at once.
        unsafe { identity::become_user(uid) }.map_err(at("dropping privileges"))?;
    }
    // Last, so the set-up above may still mount and unshare.
    if spec.seccomp {
        if let Some(filter) = seccomp::filter() {
            seccompiler::apply_filter(filter)
                .map_err(|e| at("installing the seccomp filter")(std::io::Error::other(e)))?;
        }
    }
    // The runtime reads nothing from stdin, as on Lambda (this also closes the socket).
    command.stdin(std::process::Stdio::null());
    Err(at("starting the runtime")(command.exec()))
}
