//! Per-function pools of idle instances, and the invoke path through them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::FunctionConfig;
use nimbus_runtime::{Instance, Invocation, Launcher};
use nimbus_store::CodeCache;

use crate::outcome::{invocation_log, missing_entrypoint, payload_of, LogFacts};
use crate::{InvokeError, InvokeResult};

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long an idle instance is kept warm before it is reclaimed.
    pub keep_alive: Duration,
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

struct Idle {
    instance: Instance,
    since: Instant,
}

#[derive(Default)]
struct FunctionPool {
    /// The revision whose instances may be reused; others are retired.
    current_revision: Option<String>,
    idle: Vec<Idle>,
}

/// Owns every instance on this node.
pub struct Scheduler {
    launcher: Launcher,
    code: Arc<CodeCache>,
    config: SchedulerConfig,
    /// Idle instances by function name and version.
    pools: Mutex<HashMap<(String, String), FunctionPool>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler starting instances with `launcher` and code from `code`.
    pub fn new(launcher: Launcher, code: Arc<CodeCache>, config: SchedulerConfig) -> Arc<Self> {
        let scheduler = Arc::new(Scheduler {
            launcher,
            code,
            config,
            pools: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&scheduler)));
        scheduler
    }

    fn pools(&self) -> MutexGuard<'_, HashMap<(String, String), FunctionPool>> {
        match self.pools.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Invokes `function` synchronously: a warm instance if one is idle, else a cold start.
    pub async fn invoke(
        &self,
        function: &FunctionConfig,
        request: InvokeRequest,
    ) -> Result<InvokeResult, InvokeError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(InvokeError::ShuttingDown);
        }
        let key = (function.name.clone(), function.version.clone());
        let mut instance = match self.take_idle(&key, &function.revision_id) {
            Some(instance) => instance,
            None => {
                let code_dir = self.code.path(&function.code_sha256_hex).await?;
                match self.launcher.start(function, &code_dir).await? {
                    Ok(instance) => instance,
                    Err(missing) => {
                        let log = invocation_log(&LogFacts {
                            request_id: &request.request_id,
                            version: &function.version,
                            output: format!("{}\n", missing.0).as_bytes(),
                            timed_out_after_s: None,
                            duration_ms: 0.0,
                            init_ms: None,
                            memory_mb: function.spec.memory_mb,
                            max_memory_used_mb: 0,
                        });
                        return Ok(InvokeResult {
                            payload: missing_entrypoint(&request.request_id, &missing.0),
                            function_error: true,
                            executed_version: function.version.clone(),
                            duration_ms: 0.0,
                            init_ms: None,
                            log,
                        });
                    }
                }
            }
        };
        let cold = !instance.is_warm();
        let timeout = Duration::from_secs(u64::from(function.spec.timeout_s));
        let begun = Instant::now();
        let deadline = begun + timeout;
        let deadline_epoch_ms = (std::time::SystemTime::now() + timeout)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let (outcome, output) = instance
            .invoke(Invocation {
                request_id: request.request_id.clone(),
                payload: request.payload,
                deadline,
                deadline_epoch_ms,
                invoked_arn: request.invoked_arn,
                client_context: request.client_context,
            })
            .await;
        let duration_ms = begun.elapsed().as_secs_f64() * 1000.0;
        let init_ms = cold.then(|| begun.duration_since(instance.started()).as_secs_f64() * 1000.0);
        let keep = outcome.keeps_instance() && instance.is_alive();
        let timed_out = outcome == nimbus_runtime::Outcome::TimedOut;
        let log = invocation_log(&LogFacts {
            request_id: &request.request_id,
            version: &function.version,
            output: &output,
            timed_out_after_s: timed_out.then_some(function.spec.timeout_s),
            duration_ms,
            init_ms,
            memory_mb: function.spec.memory_mb,
            max_memory_used_mb: instance.max_memory_used_mb(),
        });
        tracing::info!(
            target: "nimbus::function",
            function = %function.name,
            request_id = %request.request_id,
            "{}",
            String::from_utf8_lossy(log.rsplit(|b| *b == b'\n').nth(1).unwrap_or_default())
        );
        let (payload, function_error) =
            payload_of(outcome, &request.request_id, function.spec.timeout_s);
        if keep {
            self.put_idle(key, instance);
        }
        Ok(InvokeResult {
            payload,
            function_error,
            executed_version: function.version.clone(),
            duration_ms,
            init_ms,
            log,
        })
    }

    /// An idle, live instance of `revision`; stale and dead ones met on the way are dropped.
    fn take_idle(&self, key: &(String, String), revision: &str) -> Option<Instance> {
        let mut pools = self.pools();
        let pool = pools.entry(key.clone()).or_default();
        if pool.current_revision.is_none() {
            pool.current_revision = Some(revision.to_owned());
        }
        while let Some(idle) = pool.idle.pop() {
            if idle.instance.identity().revision_id == revision && idle.instance.is_alive() {
                return Some(idle.instance);
            }
        }
        None
    }

    fn put_idle(&self, key: (String, String), instance: Instance) {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut pools = self.pools();
        let pool = pools.entry(key).or_default();
        if pool.current_revision.as_deref() == Some(instance.identity().revision_id.as_str()) {
            pool.idle.push(Idle {
                instance,
                since: Instant::now(),
            });
        }
    }

    /// Retires the instances of function `name` that do not run `revision` (all of them
    /// when `revision` is `None`, as on delete). Busy ones are retired when they finish.
    pub fn retire(&self, name: &str, revision: Option<&str>) {
        let retired: Vec<Idle> = {
            let mut pools = self.pools();
            let mut retired = Vec::new();
            for ((function, _), pool) in pools.iter_mut() {
                if function != name {
                    continue;
                }
                pool.current_revision = revision.map(str::to_owned);
                retired.append(&mut pool.idle);
            }
            if revision.is_none() {
                pools.retain(|(function, _), _| function != name);
            }
            retired
        };
        drop(retired);
    }

    /// Kills every idle instance and refuses new invocations; busy instances are killed
    /// as their invocations end or are dropped.
    pub fn shutdown(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<FunctionPool> = self.pools().drain().map(|(_, pool)| pool).collect();
        drop(all);
    }

    /// How many idle instances each function version has.
    pub fn idle_counts(&self) -> Vec<((String, String), usize)> {
        self.pools()
            .iter()
            .map(|(key, pool)| (key.clone(), pool.idle.len()))
            .collect()
    }

    fn reap(&self) {
        let keep_alive = self.config.keep_alive;
        let expired: Vec<Idle> = {
            let mut pools = self.pools();
            let mut expired = Vec::new();
            for pool in pools.values_mut() {
                let (old, fresh): (Vec<Idle>, Vec<Idle>) = pool.idle.drain(..).partition(|idle| {
                    idle.since.elapsed() >= keep_alive || !idle.instance.is_alive()
                });
                pool.idle = fresh;
                expired.extend(old);
            }
            expired
        };
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "reclaiming idle instances");
        }
    }
}

/// Reclaims instances idle longer than the keep-alive, until the scheduler is gone.
async fn reap_idle(scheduler: std::sync::Weak<Scheduler>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match scheduler.upgrade() {
            Some(s) => s.reap(),
            None => return,
        }
    }
}
