//! One execution environment: a runtime process, its private Runtime API endpoint, and the
//! hand-over of one invocation at a time between the scheduler and the process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

/// What the instance is, for its environment, logs and `/next` headers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Function name.
    pub function: String,
    /// Version the instance runs (`$LATEST` or N).
    pub version: String,
    /// Revision of the configuration it was started from.
    pub revision_id: String,
    /// Unique id of this instance.
    pub id: String,
}

/// One invocation handed to an instance.
#[derive(Debug)]
pub struct Invocation {
    /// The request id the runtime sees and reports back.
    pub request_id: String,
    /// The event.
    pub payload: Bytes,
    /// How long the function may run, counted from when the runtime picks the event up.
    pub timeout: Duration,
    /// A deadline the invocation may not pass, whenever it is picked up (a retried init
    /// counts against the function's timeout).
    pub not_after: Option<Instant>,
    /// The ARN the caller invoked, qualifier included.
    pub invoked_arn: String,
    /// Decoded client context JSON, if the caller sent one.
    pub client_context: Option<String>,
}

/// How an invocation ended on the instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The runtime posted a response.
    Success(Bytes),
    /// The runtime posted an invocation error; the body is its JSON.
    FunctionError(Bytes),
    /// The runtime reported an init error and exited; the body is its JSON.
    InitError(Bytes),
    /// The runtime exited without answering; the text is e.g. `exit status 1`.
    Exited(String),
    /// The deadline passed; the instance was killed.
    TimedOut,
    /// The runtime did not ask for the event within the init timeout; it was killed.
    InitTimedOut,
    /// The kernel killed the runtime for using more than its memory.
    OutOfMemory(String),
    /// The runtime's response was over the size limit.
    ResponseTooLarge,
}

impl Outcome {
    /// Whether the instance may serve another invocation after this outcome.
    pub fn keeps_instance(&self) -> bool {
        matches!(self, Outcome::Success(_) | Outcome::FunctionError(_))
    }
}

/// An invocation waiting in an instance's queue, with the channels that report on it.
pub(crate) struct Queued {
    pub(crate) invocation: Invocation,
    /// Receives the runtime's answer.
    pub(crate) reply: oneshot::Sender<Reply>,
    /// Told the deadline when the runtime picks the event up.
    pub(crate) picked_up: oneshot::Sender<Instant>,
}

/// What the Runtime API hands back to a waiting invocation.
#[derive(Debug)]
pub(crate) enum Reply {
    Response(Bytes),
    Error(Bytes),
    TooLarge,
}

/// The invocation the runtime is working on.
pub(crate) struct Inflight {
    pub(crate) request_id: String,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// State shared between the instance handle and its Runtime API endpoint.
pub(crate) struct Shared {
    pub(crate) identity: Identity,
    /// Invocations waiting for the runtime's next `/next`.
    pub(crate) queue: tokio::sync::Mutex<mpsc::Receiver<Queued>>,
    /// The invocation handed out by `/next` and not yet answered.
    pub(crate) inflight: Mutex<Option<Inflight>>,
    /// The last request id answered, to tell a double reply from an unknown id.
    pub(crate) last_answered: Mutex<Option<String>>,
    /// The body of a `/runtime/init/error` post, if any.
    pub(crate) init_error: Mutex<Option<Bytes>>,
    /// The request id being served, for log lines.
    pub(crate) current_request: Mutex<Option<String>>,
    /// Becomes true when the runtime first asks for work: its init is done.
    pub(crate) ready: watch::Sender<bool>,
    /// Set (before the exit is announced) when the kernel killed it for memory.
    pub(crate) oom_killed: std::sync::atomic::AtomicBool,
    /// Its cgroup's peak memory, bytes, kept at exit (the cgroup is removed then).
    pub(crate) peak_memory: std::sync::atomic::AtomicU64,
    /// The output of the invocation being served, while one is.
    pub(crate) capture: Mutex<Option<Vec<u8>>>,
}

/// Most output kept for one invocation's log.
pub(crate) const CAPTURE_MAX_BYTES: usize = 1 << 20;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A running instance. Dropping it kills its process group.
pub struct Instance {
    pub(crate) shared: Arc<Shared>,
    pub(crate) pid: u32,
    pub(crate) submit: mpsc::Sender<Queued>,
    /// Becomes `Some(status text)` when the process has exited.
    pub(crate) exited: watch::Receiver<Option<String>>,
    pub(crate) api_task: tokio::task::JoinHandle<()>,
    pub(crate) api_addr: SocketAddr,
    /// When the process was started, to report the init duration of its first invocation.
    pub(crate) started: Instant,
    /// Set once the instance has served an invocation.
    pub(crate) warm: bool,
    /// Whether the runtime runs in its own PID namespace, as the child of `pid`.
    pub(crate) pid_namespace: bool,
    /// The instance's cgroup, if the host has them.
    pub(crate) cgroup: Option<Arc<nimbus_sandbox::cgroup::InstanceCgroup>>,
    /// Asks the output task to drain what the process has written.
    pub(crate) flush: mpsc::Sender<crate::output::FlushRequest>,
    /// Whether it is frozen now.
    pub(crate) frozen: bool,
}

impl Instance {
    /// Who this instance is.
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    /// The process id of the runtime (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The `host:port` of this instance's Runtime API.
    pub fn runtime_api(&self) -> SocketAddr {
        self.api_addr
    }

    /// Whether the instance has served an invocation before (it is warm).
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Runs one invocation to its end: the runtime's answer, its exit, or a deadline.
    /// A cold instance must pick the event up before `init_deadline`; the function's
    /// timeout runs from the pick-up, which `on_pickup` hears of. Gives the outcome and
    /// what the function printed meanwhile.
    pub async fn invoke(
        &mut self,
        invocation: Invocation,
        init_deadline: Instant,
        on_pickup: impl FnOnce(Instant),
    ) -> (Outcome, Vec<u8>) {
        let request_id = invocation.request_id.clone();
        let (reply_tx, reply_rx) = oneshot::channel();
        let (pickup_tx, pickup_rx) = oneshot::channel();
        *lock(&self.shared.current_request) = Some(request_id);
        *lock(&self.shared.capture) = Some(Vec::new());
        let queued = Queued {
            invocation,
            reply: reply_tx,
            picked_up: pickup_tx,
        };
        let outcome = if self.submit.send(queued).await.is_err() {
            self.exit_outcome().await
        } else {
            self.await_outcome(reply_rx, pickup_rx, init_deadline, on_pickup)
                .await
        };
        self.warm = true;
        // Everything printed before the answer is in the pipes now: take it into the log.
        let (done_tx, done_rx) = oneshot::channel();
        if self.flush.send(done_tx).await.is_ok() {
            let _ = done_rx.await;
        }
        *lock(&self.shared.current_request) = None;
        let output = lock(&self.shared.capture).take().unwrap_or_default();
        if !outcome.keeps_instance() {
            self.kill();
        }
        (outcome, output)
    }

    /// Waits for the pick-up (bounded by `init_deadline`), then for the answer (bounded
    /// by the deadline the pick-up set), watching for the process to exit throughout.
    async fn await_outcome(
        &self,
        reply_rx: oneshot::Receiver<Reply>,
        pickup_rx: oneshot::Receiver<Instant>,
        init_deadline: Instant,
        on_pickup: impl FnOnce(Instant),
    ) -> Outcome {
        let deadline = tokio::select! {
            picked = pickup_rx => match picked {
                Ok(deadline) => deadline,
                Err(_) => return self.exit_outcome().await,
            },
            _ = wait_exit(self.exited.clone()) => return self.exit_outcome().await,
            _ = tokio::time::sleep_until(init_deadline.into()) => {
                self.kill();
                return Outcome::InitTimedOut;
            }
        };
        on_pickup(deadline);
        tokio::select! {
            reply = reply_rx => match reply {
                Ok(Reply::Response(body)) => Outcome::Success(body),
                Ok(Reply::Error(body)) => Outcome::FunctionError(body),
                Ok(Reply::TooLarge) => Outcome::ResponseTooLarge,
                Err(_) => self.exit_outcome().await,
            },
            _ = wait_exit(self.exited.clone()) => self.exit_outcome().await,
            _ = tokio::time::sleep_until(deadline.into()) => {
                self.kill();
                Outcome::TimedOut
            }
        }
    }

    /// Peak resident memory of the runtime process so far, MB (0 once it is gone).
    pub fn max_memory_used_mb(&self) -> u64 {
        let at_exit = self
            .shared
            .peak_memory
            .load(std::sync::atomic::Ordering::SeqCst);
        if let Some(bytes) = self
            .cgroup
            .as_ref()
            .and_then(|c| c.max_memory_bytes())
            .or((at_exit > 0).then_some(at_exit))
        {
            return bytes.div_ceil(1024 * 1024);
        }
        let pid = if self.pid_namespace {
            nimbus_sandbox::workload_pid(self.pid)
        } else {
            self.pid
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb.div_ceil(1024))
    }

    /// How the process ended, once it has: its init error if it posted one.
    async fn exit_outcome(&self) -> Outcome {
        let status = wait_exit(self.exited.clone()).await;
        match lock(&self.shared.init_error).take() {
            Some(body) => Outcome::InitError(body),
            None if self
                .shared
                .oom_killed
                .load(std::sync::atomic::Ordering::SeqCst) =>
            {
                Outcome::OutOfMemory(status)
            }
            None => Outcome::Exited(status),
        }
    }

    /// Waits until the runtime has initialised (asked for its first event), without
    /// handing it one; `false` if it exited or `deadline` passed first. A ready instance
    /// counts as warm.
    pub async fn wait_ready(&mut self, deadline: Instant) -> bool {
        let mut ready = self.shared.ready.subscribe();
        let became_ready = tokio::select! {
            r = ready.wait_for(|r| *r) => r.is_ok(),
            _ = wait_exit(self.exited.clone()) => false,
            _ = tokio::time::sleep_until(deadline.into()) => false,
        };
        if became_ready {
            self.warm = true;
        }
        became_ready
    }

    /// Kills the process group now (everything else in its PID namespace dies with it).
    pub fn kill(&self) {
        nimbus_sandbox::kill_group(self.pid);
        if self.frozen {
            // A frozen v1 cgroup holds SIGKILL until it is thawed.
            if let Some(cgroup) = self.freezer() {
                let _ = cgroup.set_frozen(false);
            }
        }
    }

    /// The instance's cgroup, if it can freeze the whole instance.
    fn freezer(&self) -> Option<&nimbus_sandbox::cgroup::InstanceCgroup> {
        self.cgroup.as_deref().filter(|c| c.can_freeze())
    }

    /// Stops every process of the instance, so it uses no CPU while idle: through its
    /// cgroup's freezer where the host has one (a process that called `setsid` is out of
    /// reach of signals to the group), else SIGSTOP to its process group.
    pub fn freeze(&mut self) {
        let frozen = match self.freezer() {
            Some(cgroup) => cgroup.set_frozen(true),
            None => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
        };
        if let Err(e) = frozen {
            if e.kind() != std::io::ErrorKind::Unsupported {
                tracing::warn!(instance = %self.shared.identity.id, error = %e, "freezing the instance's cgroup failed; stopping its process group");
            }
            nimbus_sandbox::signal_group(self.pid, nix::sys::signal::Signal::SIGSTOP);
        }
        self.frozen = true;
    }

    /// Resumes a frozen instance (nothing to do if it is not frozen).
    pub fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        if let Some(cgroup) = self.freezer() {
            if let Err(e) = cgroup.set_frozen(false) {
                tracing::warn!(instance = %self.shared.identity.id, error = %e, "thawing the instance's cgroup failed");
            }
        }
        // Also continues what a signal stopped (the fallback freeze).
        nimbus_sandbox::signal_group(self.pid, nix::sys::signal::Signal::SIGCONT);
        self.frozen = false;
    }
}

/// Waits for the process to exit and says how it did.
async fn wait_exit(mut exited: watch::Receiver<Option<String>>) -> String {
    loop {
        let current = exited.borrow_and_update().clone();
        if let Some(status) = current {
            return status;
        }
        if exited.changed().await.is_err() {
            let last = exited.borrow().clone();
            return last.unwrap_or_else(|| "exit status unknown".to_owned());
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        self.api_task.abort();
    }
}
