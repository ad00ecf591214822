//! The invoke path: admission (with a short queue), warm reuse or cold start, the
//! invocation itself, and release; plus retirement, keep-alive reaping and introspection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::{FunctionConfig, Scaling};
use nimbus_runtime::{InitType, Instance, Invocation, Launcher, Outcome};
use nimbus_store::CodeCache;
use serde::Serialize;

use crate::outcome::{invocation_log, missing_entrypoint, payload_of, LogFacts};
use crate::state::{
    Admit, FunctionCounters, FunctionLimits, Idle, InstanceInfo, InstanceState, NodeLimits,
    PoolKey, Provision, State, ThrottleReason, Ticket,
};
use crate::{InvokeError, InvokeResult};

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long an idle instance stays warm, unless its function says otherwise.
    pub keep_alive: Duration,
    /// Most invocations running at once on this node.
    pub max_concurrency: u32,
    /// Most memory (the configured MemorySize of live instances) on this node, MB.
    pub memory_budget_mb: u64,
    /// How long an invocation over a limit waits for capacity before it is throttled.
    pub queue_timeout: Duration,
    /// How long a new instance may take to initialise before the init is retried.
    pub init_timeout: Duration,
}

/// One invocation as the scheduler receives it.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The request id.
    pub request_id: String,
    /// The event.
    pub payload: Bytes,
    /// The ARN the caller used.
    pub invoked_arn: String,
    /// Decoded client context JSON.
    pub client_context: Option<String>,
}

/// A live instance, as `GET /nimbus/v1/instances` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Function name.
    pub function: String,
    /// Version it runs.
    pub version: String,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Milliseconds since it was started.
    pub age_ms: u64,
    /// Invocations it has served.
    pub invocations: u64,
    /// How long its init took, milliseconds.
    pub init_ms: Option<f64>,
    /// Its process id on the host.
    pub pid: u32,
    /// Whether it is kept warm by provisioned concurrency.
    pub provisioned: bool,
}

/// A function's scheduling counters.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionView {
    /// Function name.
    pub function: String,
    /// The counters.
    #[serde(flatten)]
    pub counters: FunctionCounters,
}

/// Owns every instance on this node.
pub struct Scheduler {
    launcher: Launcher,
    code: Arc<CodeCache>,
    config: SchedulerConfig,
    state: Mutex<State>,
    /// Woken whenever capacity is released.
    released: tokio::sync::Notify,
}

impl Scheduler {
    /// A scheduler starting instances with `launcher` and code from `code`.
    pub fn new(launcher: Launcher, code: Arc<CodeCache>, config: SchedulerConfig) -> Arc<Self> {
        let scheduler = Arc::new(Scheduler {
            launcher,
            code,
            config,
            state: Mutex::new(State::default()),
            released: tokio::sync::Notify::new(),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&scheduler)));
        scheduler
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The node's concurrency limit.
    pub fn max_concurrency(&self) -> u32 {
        self.config.max_concurrency
    }

    /// Tells the scheduler how much concurrency all functions reserve together.
    pub fn set_reserved_total(&self, total: u32) {
        self.state().reserved_total = total;
        self.released.notify_waiters();
    }

    /// Invokes `function` synchronously: a warm instance if one is idle, else a cold start;
    /// over a limit, waits up to the queue timeout, then is throttled.
    pub async fn invoke(
        &self,
        function: &FunctionConfig,
        scaling: Scaling,
        request: InvokeRequest,
    ) -> Result<InvokeResult, InvokeError> {
        let key: PoolKey = (function.name.clone(), function.version.clone());
        let limits = FunctionLimits {
            reserved: scaling.reserved_concurrency,
            memory_mb: function.spec.memory_mb,
        };
        let keep_alive = scaling.keep_alive_s.map_or(self.config.keep_alive, |s| {
            Duration::from_secs(u64::from(s))
        });
        let (admitted, ticket) = self.admit(&key, &function.revision_id, &limits).await?;
        let mut instance = match admitted {
            Some(instance) => instance,
            None => match self
                .start_for(function, &ticket, keep_alive, &request)
                .await
            {
                Ok(instance) => instance,
                Err(answer) => return answer,
            },
        };
        instance.thaw();
        let begun = Instant::now();
        let cold = !instance.is_warm();
        let (mut outcome, mut output, mut picked_at) =
            self.run(&mut instance, function, &request, None).await;
        if outcome == Outcome::InitTimedOut {
            // As Lambda does: the init is retried once, now within the function's timeout.
            tracing::warn!(function = %function.name, "init timed out; retrying it within the invocation");
            let not_after = begun + Duration::from_secs(u64::from(function.spec.timeout_s));
            self.state().instances.remove(&instance.identity().id);
            drop(instance);
            instance = match self
                .start_for(function, &ticket, keep_alive, &request)
                .await
            {
                Ok(instance) => instance,
                Err(answer) => return answer,
            };
            let (retried, more, picked) = self
                .run(&mut instance, function, &request, Some(not_after))
                .await;
            picked_at = picked;
            outcome = if retried == Outcome::InitTimedOut {
                Outcome::TimedOut
            } else {
                retried
            };
            output.extend_from_slice(&more);
        }
        // Duration counts from the runtime's pick-up of the event, as Lambda's does.
        let handler_ms = picked_at.map_or(0.0, |at| at.elapsed().as_secs_f64() * 1000.0);
        let init_ms = if cold {
            self.state()
                .instances
                .get(&instance.identity().id)
                .and_then(|i| i.init_ms)
        } else {
            None
        };
        let log = invocation_log(&LogFacts {
            request_id: &request.request_id,
            version: &function.version,
            output: &output,
            timed_out_after_s: (outcome == Outcome::TimedOut).then_some(function.spec.timeout_s),
            exit: match &outcome {
                Outcome::Exited(status) => Some((status.as_str(), "Runtime.ExitError")),
                Outcome::OutOfMemory(status) => Some((status.as_str(), "Runtime.OutOfMemory")),
                _ => None,
            },
            duration_ms: handler_ms,
            init_ms,
            memory_mb: function.spec.memory_mb,
            max_memory_used_mb: instance.max_memory_used_mb(),
        });
        tracing::debug!(
            target: "nimbus::function",
            function = %function.name,
            request_id = %request.request_id,
            "{}",
            String::from_utf8_lossy(log.rsplit(|b| *b == b'\n').nth(1).unwrap_or_default())
        );
        let reusable = outcome.keeps_instance() && instance.is_alive();
        let timed_out = outcome == Outcome::TimedOut;
        self.release(&ticket, Some(instance), reusable, keep_alive);
        let (payload, function_error) =
            payload_of(outcome, &request.request_id, function.spec.timeout_s);
        Ok(InvokeResult {
            payload,
            function_error,
            executed_version: function.version.clone(),
            duration_ms: handler_ms,
            init_ms,
            log,
            timed_out,
        })
    }

    /// Admission with a bounded wait: a warm instance, or `None` for a counted cold start.
    async fn admit(
        &self,
        key: &PoolKey,
        revision: &str,
        limits: &FunctionLimits,
    ) -> Result<(Option<Instance>, Ticket), InvokeError> {
        let node = NodeLimits {
            max_concurrency: self.config.max_concurrency,
            memory_budget_mb: self.config.memory_budget_mb,
        };
        let give_up = tokio::time::Instant::now() + self.config.queue_timeout;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let (admit, ticket, gone) = {
                let mut state = self.state();
                if state.closed {
                    return Err(InvokeError::ShuttingDown);
                }
                state.admit(key, revision, limits, node)
            };
            drop(gone);
            match (admit, ticket) {
                (Admit::Warm(instance), Some(ticket)) => return Ok((Some(instance), ticket)),
                (Admit::Cold, Some(ticket)) => return Ok((None, ticket)),
                (Admit::Refused(reason), _) => {
                    if tokio::time::timeout_at(give_up, released).await.is_err() {
                        return Err(self.throttle(&key.0, reason));
                    }
                }
                _ => return Err(InvokeError::ShuttingDown),
            }
        }
    }

    fn throttle(&self, function: &str, reason: ThrottleReason) -> InvokeError {
        self.state()
            .counters
            .entry(function.to_owned())
            .or_default()
            .throttles += 1;
        InvokeError::Throttled(reason)
    }

    /// Starts an on-demand instance for an admitted invocation. If none can start, the
    /// ticket is released and the error is what the invocation answers instead.
    async fn start_for(
        &self,
        function: &FunctionConfig,
        ticket: &Ticket,
        keep_alive: Duration,
        request: &InvokeRequest,
    ) -> Result<Instance, Result<InvokeResult, InvokeError>> {
        let started = self.start_as(function, InitType::OnDemand).await;
        if !matches!(started, Ok(Ok(_))) {
            self.release(ticket, None, false, keep_alive);
        }
        match started {
            Ok(Ok(instance)) => Ok(instance),
            Ok(Err(missing)) => Err(Ok(self.missing_entrypoint(function, request, &missing.0))),
            Err(e) => Err(Err(e)),
        }
    }

    async fn start_as(
        &self,
        function: &FunctionConfig,
        init: InitType,
    ) -> Result<Result<Instance, nimbus_runtime::launch::MissingEntrypoint>, InvokeError> {
        // Until the instance is listed, the pin keeps its code from the collector.
        let _pin = self.code.pin(&function.code_sha256_hex);
        let code_dir = self.code.path(&function.code_sha256_hex).await?;
        if function.spec.runtime.family() != nimbus_core::RuntimeFamily::Node {
            // This start compiles what it imports; the next ones load the bytecode.
            self.precompile(&function.code_sha256_hex);
        }
        let started = self.launcher.start(function, &code_dir, init).await?;
        if let Ok(instance) = &started {
            self.state().instances.insert(
                instance.identity().id.clone(),
                InstanceInfo {
                    function: function.name.clone(),
                    code: function.code_sha256_hex.clone(),
                    version: function.version.clone(),
                    revision: function.revision_id.clone(),
                    state: InstanceState::Starting,
                    created: instance.started(),
                    invocations: 0,
                    init_ms: None,
                    pid: instance.pid(),
                    provisioned: init == InitType::Provisioned,
                },
            );
        }
        Ok(started)
    }

    /// Runs one invocation on `instance`, recording its pick-up; also says when that was.
    async fn run(
        &self,
        instance: &mut Instance,
        function: &FunctionConfig,
        request: &InvokeRequest,
        not_after: Option<Instant>,
    ) -> (Outcome, Vec<u8>, Option<Instant>) {
        let id = instance.identity().id.clone();
        let started = instance.started();
        let cold = !instance.is_warm();
        let init_deadline = match not_after {
            Some(limit) => limit,
            None if cold => started + self.config.init_timeout,
            // A warm runtime asks for work at once; this bound only guards a wedged one.
            None => Instant::now() + Duration::from_secs(u64::from(function.spec.timeout_s)),
        };
        let invocation = Invocation {
            request_id: request.request_id.clone(),
            payload: request.payload.clone(),
            timeout: Duration::from_secs(u64::from(function.spec.timeout_s)),
            not_after,
            invoked_arn: request.invoked_arn.clone(),
            client_context: request.client_context.clone(),
        };
        let mut picked_at = None;
        let (outcome, output) = instance
            .invoke(invocation, init_deadline, |_deadline| {
                picked_at = Some(Instant::now());
                let mut state = self.state();
                if let Some(info) = state.instances.get_mut(&id) {
                    if cold {
                        info.init_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    info.state = InstanceState::Busy;
                    info.invocations += 1;
                }
            })
            .await;
        (outcome, output, picked_at)
    }

    fn release(
        &self,
        ticket: &Ticket,
        instance: Option<Instance>,
        reusable: bool,
        keep_alive: Duration,
    ) {
        let gone = self.state().release(ticket, instance, reusable, keep_alive);
        drop(gone);
        self.released.notify_waiters();
    }

    fn missing_entrypoint(
        &self,
        function: &FunctionConfig,
        request: &InvokeRequest,
        why: &str,
    ) -> InvokeResult {
        let log = invocation_log(&LogFacts {
            request_id: &request.request_id,
            version: &function.version,
            output: format!("{why}\n").as_bytes(),
            timed_out_after_s: None,
            exit: None,
            duration_ms: 0.0,
            init_ms: None,
            memory_mb: function.spec.memory_mb,
            max_memory_used_mb: 0,
        });
        InvokeResult {
            payload: missing_entrypoint(&request.request_id, why),
            function_error: true,
            executed_version: function.version.clone(),
            duration_ms: 0.0,
            init_ms: None,
            log,
            timed_out: false,
        }
    }

    /// Retires instances of function `name` — of one `version`, or of all versions — that
    /// do not run `revision` (all of them when `revision` is `None`, as on delete). Busy ones
    /// are retired when they finish.
    pub fn retire(&self, name: &str, version: Option<&str>, revision: Option<&str>) {
        let gone = self.state().retire(name, version, revision);
        drop(gone);
        self.released.notify_waiters();
    }

    /// Kills every idle instance and refuses new invocations; busy instances are killed
    /// as their invocations end or are dropped.
    pub fn shutdown(&self) {
        self.launcher.shutdown();
        let gone = self.state().close();
        drop(gone);
        self.released.notify_waiters();
    }

    /// Compiles package `sha256_hex`'s Python sources in the background (once per node), so
    /// cold starts load bytecode instead of compiling every module they import.
    pub fn precompile(&self, sha256_hex: &str) {
        self.code
            .precompile_python(sha256_hex, self.launcher.python());
    }

    /// The code packages live instances run (what the code collector must keep).
    pub fn code_in_use(&self) -> std::collections::HashSet<String> {
        self.state()
            .instances
            .values()
            .map(|info| info.code.clone())
            .collect()
    }

    /// Every live instance (of `function`, if given), oldest first.
    pub fn instances(&self, function: Option<&str>) -> Vec<InstanceView> {
        let state = self.state();
        let mut views: Vec<InstanceView> = state
            .instances
            .iter()
            .filter(|(_, info)| function.is_none_or(|f| info.function == f))
            .map(|(id, info)| InstanceView {
                id: id.clone(),
                function: info.function.clone(),
                version: info.version.clone(),
                state: info.state,
                age_ms: info.created.elapsed().as_millis() as u64,
                invocations: info.invocations,
                init_ms: info.init_ms,
                pid: info.pid,
                provisioned: info.provisioned,
            })
            .collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.age_ms));
        views
    }

    /// Cold starts, warm starts and throttles per function (of `function`, if given).
    pub fn counters(&self, function: Option<&str>) -> Vec<FunctionView> {
        let state = self.state();
        let mut views: Vec<FunctionView> = state
            .counters
            .iter()
            .filter(|(name, _)| function.is_none_or(|f| *name == f))
            .map(|(name, counters)| FunctionView {
                function: name.clone(),
                counters: counters.clone(),
            })
            .collect();
        views.sort_by(|a, b| a.function.cmp(&b.function));
        views
    }

    fn reap(self: &Arc<Self>) {
        let (expired, to_start) = {
            let mut state = self.state();
            state.freeze_idle(FREEZE_AFTER);
            let mut expired = state.expired();
            let (to_start, surplus) = self.plan_provisioning(&mut state);
            expired.extend(surplus);
            (expired, to_start)
        };
        for config in to_start {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.start_provisioned(config).await });
        }
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "reclaiming idle instances");
            drop(expired);
            self.released.notify_waiters();
        }
    }

    /// Sets how many instances of `function`'s version are kept warm ahead of demand
    /// (0 stops). They start in the background; see [`Scheduler::provisioned`].
    pub fn provision(&self, function: &FunctionConfig, count: u32) {
        let key: PoolKey = (function.name.clone(), function.version.clone());
        let mut state = self.state();
        if count == 0 {
            if let Some(p) = state.provisioning.get_mut(&key) {
                p.requested = 0;
            }
            return;
        }
        let entry = state.provisioning.entry(key).or_insert_with(|| Provision {
            config: function.clone(),
            requested: 0,
            live: 0,
            ready: 0,
            failures: 0,
            retry_at: None,
        });
        entry.requested = count;
        entry.config = function.clone();
        entry.failures = 0;
        entry.retry_at = None;
    }

    /// The versions this node keeps provisioned instances of (name, version), wanted > 0.
    pub fn provisioned_targets(&self) -> Vec<(String, String)> {
        self.state()
            .provisioning
            .iter()
            .filter(|(_, p)| p.requested > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// How many provisioned instances of a version are wanted and how many are ready.
    pub fn provisioned(&self, name: &str, version: &str) -> (u32, u32) {
        self.state()
            .provisioning
            .get(&(name.to_owned(), version.to_owned()))
            .map_or((0, 0), |p| (p.requested, p.ready))
    }

    /// Decides which provisioned instances to start (counting their memory now) and
    /// takes out idle ones beyond what is wanted.
    fn plan_provisioning(&self, state: &mut State) -> (Vec<FunctionConfig>, Vec<Instance>) {
        let mut to_start = Vec::new();
        let mut surplus = Vec::new();
        let keys: Vec<PoolKey> = state.provisioning.keys().cloned().collect();
        for key in keys {
            let Some(p) = state.provisioning.get(&key) else {
                continue;
            };
            let (requested, live, memory) = (p.requested, p.live, p.config.spec.memory_mb);
            let waiting = p.retry_at.is_some_and(|at| Instant::now() < at);
            if live < requested && !waiting {
                for _ in live..requested {
                    if state.memory_mb + u64::from(memory) > self.config.memory_budget_mb {
                        tracing::warn!(function = %key.0, version = %key.1, "memory budget leaves no room for provisioned instances");
                        break;
                    }
                    state.memory_mb += u64::from(memory);
                    if let Some(p) = state.provisioning.get_mut(&key) {
                        p.live += 1;
                        to_start.push(p.config.clone());
                    }
                }
            } else if live > requested {
                let extra = (live - requested) as usize;
                let idle: Vec<Idle> = match state.pools.get_mut(&key) {
                    Some(pool) => {
                        let mut taken = Vec::new();
                        while taken.len() < extra {
                            match pool.idle.iter().position(|i| i.provisioned) {
                                Some(index) => taken.push(pool.idle.remove(index)),
                                None => break,
                            }
                        }
                        taken
                    }
                    None => Vec::new(),
                };
                for i in idle {
                    surplus.push(state.forget_idle(&key, i));
                }
            }
            if state
                .provisioning
                .get(&key)
                .is_some_and(|p| p.requested == 0 && p.live == 0)
            {
                state.provisioning.remove(&key);
            }
        }
        (to_start, surplus)
    }

    /// Starts one provisioned instance (its memory is already counted) and, once it has
    /// initialised, adds it to its pool.
    async fn start_provisioned(self: Arc<Self>, config: FunctionConfig) {
        let key: PoolKey = (config.name.clone(), config.version.clone());
        let started = match self.start_as(&config, InitType::Provisioned).await {
            Ok(Ok(mut instance)) => {
                let deadline = instance.started() + self.config.init_timeout;
                let ready = instance.wait_ready(deadline).await;
                ready.then_some(instance)
            }
            _ => None,
        };
        let mut state = self.state();
        let wanted = state
            .provisioning
            .get(&key)
            .is_some_and(|p| p.config.revision_id == config.revision_id && !state.closed);
        match started {
            Some(instance) if wanted => {
                if let Some(p) = state.provisioning.get_mut(&key) {
                    p.ready += 1;
                    p.failures = 0;
                }
                if let Some(info) = state.instances.get_mut(&instance.identity().id) {
                    info.state = InstanceState::Idle;
                    info.init_ms = Some(instance.started().elapsed().as_secs_f64() * 1000.0);
                }
                let pool = state.pools.entry(key).or_default();
                if pool.current_revision.is_none() {
                    pool.current_revision = Some(config.revision_id.clone());
                }
                pool.idle.push(Idle {
                    instance,
                    since: Instant::now(),
                    frozen: false,
                    keep_alive: Duration::MAX,
                    memory_mb: config.spec.memory_mb,
                    provisioned: true,
                });
                drop(state);
                self.released.notify_waiters();
            }
            other => {
                state.uncount(&key, config.spec.memory_mb, true, false);
                if let Some(instance) = &other {
                    state.instances.remove(&instance.identity().id);
                } else {
                    if let Some(p) = state.provisioning.get_mut(&key) {
                        p.failures += 1;
                        let backoff = Duration::from_secs(1 << p.failures.min(6));
                        p.retry_at = Some(Instant::now() + backoff);
                    }
                    tracing::warn!(function = %config.name, version = %config.version, "a provisioned instance failed to initialise; retrying later");
                }
                drop(state);
                drop(other);
            }
        }
    }
}

/// How long an instance stays idle before it is frozen.
const FREEZE_AFTER: Duration = Duration::from_millis(100);

/// Freezes instances idle for a moment and reclaims those idle longer than their
/// keep-alive, until the scheduler is gone.
async fn reap_idle(scheduler: std::sync::Weak<Scheduler>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        match scheduler.upgrade() {
            Some(s) => s.reap(),
            None => return,
        }
    }
}
