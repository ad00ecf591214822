//! Jailers started ahead of demand. Starting one costs an exec and joining its cgroups (a
//! cgroup-v1 memory controller makes that ~10 ms: the kernel waits for an RCU grace
//! period); a pool of waiting shells keeps all of it off the cold start.
//! A cold start takes a waiting shell, sets its cgroup limits and hands it the spec; the
//! pool refills in the background. When it is empty (a burst), shells start on demand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_sandbox::cgroup::{Cgroups, InstanceCgroup};
use nimbus_sandbox::{Jailer, Shell, TmpDisks};

use crate::instance::lock;
use crate::RuntimeError;

/// The memory limit of a shell's cgroup until it is given work (Lambda's smallest), MB.
const SHELL_MEMORY_MB: u32 = 128;
/// The `/tmp` size a shell prepares while it waits: Lambda's default ephemeral storage, MB.
pub(crate) const SHELL_TMP_MB: u32 = 512;

/// Shells waiting for work.
pub(crate) struct ShellPool {
    jailer: Jailer,
    cgroups: Option<Arc<Cgroups>>,
    /// Where shells get their `/tmp` disks, if the host has them.
    tmp_disks: Option<TmpDisks>,
    /// How many shells to keep waiting.
    target: usize,
    idle: Mutex<Vec<Shell>>,
    refilling: AtomicBool,
    closed: AtomicBool,
}

impl ShellPool {
    /// A pool keeping `target` shells of `jailer` waiting, each in cgroups of its own.
    pub(crate) fn new(
        jailer: Jailer,
        cgroups: Option<Arc<Cgroups>>,
        tmp_disks: Option<TmpDisks>,
        target: usize,
    ) -> Arc<Self> {
        Arc::new(ShellPool {
            jailer,
            cgroups,
            tmp_disks,
            target,
            idle: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// A shell for a new instance: a waiting one if there is one, else a new one.
    pub(crate) fn take(self: &Arc<Self>) -> Result<Shell, RuntimeError> {
        let waiting = loop {
            let next = lock(&self.idle).pop();
            match next {
                Some(mut shell) => {
                    if shell.alive() {
                        break Some(shell);
                    }
                    discard(shell);
                }
                None => break None,
            }
        };
        self.refill();
        match waiting {
            Some(shell) => Ok(shell),
            None => self.start_one(),
        }
    }

    /// Starts one shell in fresh cgroups, with a `/tmp` disk of the common size mounted.
    fn start_one(&self) -> Result<Shell, RuntimeError> {
        let mut jailer = self.jailer.clone();
        if let (Some(disks), Some(base)) = (&self.tmp_disks, &mut jailer.base) {
            match disks.make(SHELL_TMP_MB) {
                Ok(disk) => base.tmp = Some(disk),
                // The instance then gets a disk (or a tmpfs) when it starts.
                Err(e) => {
                    tracing::warn!(error = %e, "could not make a /tmp disk for a waiting shell")
                }
            }
        }
        let cgroup = match &self.cgroups {
            Some(cgroups) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let cgroup = cgroups
                    .create(&id, SHELL_MEMORY_MB)
                    .map_err(RuntimeError::Cgroup)?;
                Some(Arc::new(cgroup))
            }
            None => None,
        };
        // A posix_spawn: the expensive parts (exec, joining the cgroups) happen in the child.
        let started = nimbus_sandbox::start_shell(&jailer, cgroup.clone());
        match started {
            Ok(shell) => Ok(shell),
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    remove_later(cgroup);
                }
                if let Some(disk) = jailer.base.and_then(|b| b.tmp) {
                    disk.remove();
                }
                Err(e.into())
            }
        }
    }

    /// Tops the pool up to its target in the background (one refill at a time); needs a
    /// Tokio runtime.
    pub(crate) fn refill(self: &Arc<Self>) {
        if self.target == 0
            || self.closed.load(Ordering::SeqCst)
            || self.refilling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            while !pool.closed.load(Ordering::SeqCst) && lock(&pool.idle).len() < pool.target {
                match pool.start_one() {
                    Ok(shell) => lock(&pool.idle).push(shell),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start a waiting shell");
                        break;
                    }
                }
            }
            pool.refilling.store(false, Ordering::SeqCst);
            if pool.closed.load(Ordering::SeqCst) {
                pool.drain();
            }
        });
    }

    /// Stops keeping shells: the waiting ones are killed and their cgroups removed.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.drain();
    }

    fn drain(&self) {
        let shells: Vec<Shell> = lock(&self.idle).drain(..).collect();
        for shell in shells {
            discard(shell);
        }
    }
}

/// Kills a shell and removes its cgroups once it is gone (and its `/tmp` image, if it had
/// not taken it yet).
fn discard(mut shell: Shell) {
    let cgroup = shell.cgroup.take();
    if let Some(disk) = shell.tmp.take() {
        disk.remove();
    }
    drop(shell); // killed on drop
    if let Some(cgroup) = cgroup {
        remove_later(cgroup);
    }
}

/// Removes `cgroup` off the async threads (it waits for its processes to exit).
pub(crate) fn remove_later(cgroup: Arc<InstanceCgroup>) {
    let remove = move || cgroup.remove();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(remove);
        }
        Err(_) => remove(),
    }
}
