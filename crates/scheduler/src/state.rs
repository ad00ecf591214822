//! The scheduler's bookkeeping: pools of idle instances, what is running, how much memory
//! live instances hold, and the admission decision. Pure logic under one lock, no waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nimbus_runtime::Instance;
use serde::Serialize;

/// A pool's key: function name and version.
pub(crate) type PoolKey = (String, String);

/// Node-wide limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeLimits {
    pub max_concurrency: u32,
    pub memory_budget_mb: u64,
}

/// What admission needs to know about the function being invoked.
#[derive(Debug, Clone)]
pub(crate) struct FunctionLimits {
    pub reserved: Option<u32>,
    pub memory_mb: u32,
}

/// Why an invocation was throttled, as Lambda's `Reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The node's unreserved concurrency (or its memory) is used up.
    ConcurrentInvocationLimitExceeded,
    /// The function's reserved concurrency is used up.
    ReservedFunctionConcurrentInvocationLimitExceeded,
}

impl ThrottleReason {
    /// Lambda's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::ConcurrentInvocationLimitExceeded => {
                "ConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
        }
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Started, its runtime not yet asking for work.
    Starting,
    /// Idle and warm (frozen), waiting for an invocation.
    Idle,
    /// Running an invocation.
    Busy,
    /// Finishing its last invocation before it is retired.
    Retiring,
}

/// One live instance, as introspection shows it.
#[derive(Debug, Clone)]
pub(crate) struct InstanceInfo {
    pub function: String,
    /// Hex SHA-256 of the code package it runs (the code collector keeps it).
    pub code: String,
    pub version: String,
    pub revision: String,
    pub state: InstanceState,
    pub created: Instant,
    pub invocations: u64,
    pub init_ms: Option<f64>,
    pub pid: u32,
    pub provisioned: bool,
}

/// Per-function counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionCounters {
    /// Invocations that started a new instance.
    pub cold_starts: u64,
    /// Invocations served by a warm instance.
    pub warm_starts: u64,
    /// Invocations refused with 429.
    pub throttles: u64,
    /// Instances running or starting now (the function's concurrency in use).
    #[serde(skip)]
    pub running: u32,
}

/// An idle, frozen instance.
pub(crate) struct Idle {
    pub instance: Instance,
    pub since: Instant,
    /// Whether it has been frozen yet (instances are frozen once idle for a moment, so
    /// back-to-back invocations skip the freeze and its thaw).
    pub frozen: bool,
    pub keep_alive: Duration,
    pub memory_mb: u32,
    /// Provisioned instances never expire and are used before on-demand ones.
    pub provisioned: bool,
}

/// The idle instances of one function version.
#[derive(Default)]
pub(crate) struct Pool {
    /// The revision whose instances may be reused; others are retired.
    pub current_revision: Option<String>,
    /// Most recently used last.
    pub idle: Vec<Idle>,
}

/// What admission decided.
pub(crate) enum Admit {
    /// Run on this warm instance.
    Warm(Instance),
    /// Start a new instance; its concurrency and memory are already counted.
    Cold,
    /// Over a limit.
    Refused(ThrottleReason),
}

/// What was counted for an admitted invocation, to be uncounted on release.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub key: PoolKey,
    pub unreserved: bool,
    pub memory_mb: u32,
    /// The instance is one of the version's provisioned instances.
    pub provisioned: bool,
}

/// Instances kept warm ahead of demand for one function version.
pub(crate) struct Provision {
    /// The version's configuration, to start instances from.
    pub config: nimbus_core::FunctionConfig,
    /// How many are wanted.
    pub requested: u32,
    /// How many exist (starting or ready); their memory is counted.
    pub live: u32,
    /// How many have initialised.
    pub ready: u32,
    /// Failed starts in a row, for back-off.
    pub failures: u32,
    /// No new start before this.
    pub retry_at: Option<Instant>,
}

/// Everything the scheduler knows, behind one lock.
#[derive(Default)]
pub(crate) struct State {
    pub pools: HashMap<PoolKey, Pool>,
    pub counters: HashMap<String, FunctionCounters>,
    pub instances: HashMap<String, InstanceInfo>,
    /// Instances running or starting for functions without reserved concurrency.
    pub running_unreserved: u32,
    /// Configured memory of every live instance, MB.
    pub memory_mb: u64,
    /// Concurrency reserved by all functions together.
    pub reserved_total: u32,
    /// Provisioned concurrency by function version.
    pub provisioning: HashMap<PoolKey, Provision>,
    pub closed: bool,
}

impl State {
    /// Admits an invocation of `key` at `revision`, or says why not. Instances that had to
    /// go (stale, dead, or evicted for memory) are returned to be dropped outside the lock.
    pub fn admit(
        &mut self,
        key: &PoolKey,
        revision: &str,
        limits: &FunctionLimits,
        node: NodeLimits,
    ) -> (Admit, Option<Ticket>, Vec<Instance>) {
        let mut gone = Vec::new();
        let running = self.counters.get(&key.0).map_or(0, |c| c.running);
        let allowed = match limits.reserved {
            Some(reserved) => running < reserved,
            None => {
                self.running_unreserved < node.max_concurrency.saturating_sub(self.reserved_total)
            }
        };
        if !allowed {
            let reason = if limits.reserved.is_some() {
                ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
            } else {
                ThrottleReason::ConcurrentInvocationLimitExceeded
            };
            return (Admit::Refused(reason), None, gone);
        }
        let pool = self.pools.entry(key.clone()).or_default();
        if pool.current_revision.is_none() {
            pool.current_revision = Some(revision.to_owned());
        }
        let mut warm = None;
        // Provisioned instances serve first.
        if let Some(index) = pool.idle.iter().rposition(|i| {
            i.provisioned && i.instance.identity().revision_id == revision && i.instance.is_alive()
        }) {
            warm = Some(pool.idle.remove(index));
        }
        while warm.is_none() {
            let Some(idle) = self.pools.get_mut(key).and_then(|p| p.idle.pop()) else {
                break;
            };
            if idle.instance.identity().revision_id == revision && idle.instance.is_alive() {
                warm = Some(idle);
                break;
            }
            gone.push(self.forget_at(key, idle));
        }
        let ticket = |memory_mb, provisioned| Ticket {
            key: key.clone(),
            unreserved: limits.reserved.is_none(),
            memory_mb,
            provisioned,
        };
        if let Some(idle) = warm {
            let ticket = ticket(idle.memory_mb, idle.provisioned);
            self.count_running(&ticket, 1);
            let counters = self.counters.entry(key.0.clone()).or_default();
            counters.warm_starts += 1;
            if let Some(info) = self.instances.get_mut(&idle.instance.identity().id) {
                info.state = InstanceState::Busy;
            }
            return (Admit::Warm(idle.instance), Some(ticket), gone);
        }
        let need = u64::from(limits.memory_mb);
        while self.memory_mb + need > node.memory_budget_mb {
            match self.evict_least_recently_used() {
                Some(instance) => gone.push(instance),
                None => {
                    return (
                        Admit::Refused(ThrottleReason::ConcurrentInvocationLimitExceeded),
                        None,
                        gone,
                    )
                }
            }
        }
        self.memory_mb += need;
        let ticket = ticket(limits.memory_mb, false);
        self.count_running(&ticket, 1);
        self.counters.entry(key.0.clone()).or_default().cold_starts += 1;
        (Admit::Cold, Some(ticket), gone)
    }

    fn count_running(&mut self, ticket: &Ticket, delta: i32) {
        let counters = self.counters.entry(ticket.key.0.clone()).or_default();
        counters.running = counters.running.saturating_add_signed(delta);
        if ticket.unreserved {
            self.running_unreserved = self.running_unreserved.saturating_add_signed(delta);
        }
    }

    /// Removes the idle instance unused for longest, from any pool.
    fn evict_least_recently_used(&mut self) -> Option<Instance> {
        let (key, index) = self
            .pools
            .iter()
            .flat_map(|(key, pool)| {
                pool.idle
                    .iter()
                    .enumerate()
                    .map(move |(i, idle)| (key, i, idle.since))
            })
            .min_by_key(|(_, _, since)| *since)
            .map(|(key, i, _)| (key.clone(), i))?;
        let idle = self.pools.get_mut(&key)?.idle.remove(index);
        Some(self.forget_at(&key, idle))
    }

    /// Stops counting an idle instance of `key` and forgets it; the caller drops it.
    pub fn forget_idle(&mut self, key: &PoolKey, idle: Idle) -> Instance {
        self.forget_at(key, idle)
    }

    /// Stops counting an idle instance of `key` and forgets it; the caller drops it.
    fn forget_at(&mut self, key: &PoolKey, idle: Idle) -> Instance {
        self.uncount(key, idle.memory_mb, idle.provisioned, true);
        self.instances.remove(&idle.instance.identity().id);
        idle.instance
    }

    /// Uncounts a live instance's memory, and its place among provisioned ones.
    pub fn uncount(&mut self, key: &PoolKey, memory_mb: u32, provisioned: bool, was_ready: bool) {
        self.memory_mb = self.memory_mb.saturating_sub(u64::from(memory_mb));
        if provisioned {
            if let Some(p) = self.provisioning.get_mut(key) {
                p.live = p.live.saturating_sub(1);
                if was_ready {
                    p.ready = p.ready.saturating_sub(1);
                }
            }
        }
    }

    /// Ends an admitted invocation. A reusable `instance` goes back to its pool (frozen);
    /// otherwise it is returned to be dropped outside the lock.
    pub fn release(
        &mut self,
        ticket: &Ticket,
        instance: Option<Instance>,
        reusable: bool,
        keep_alive: Duration,
    ) -> Option<Instance> {
        self.count_running(ticket, -1);
        let Some(instance) = instance else {
            self.uncount(&ticket.key, ticket.memory_mb, ticket.provisioned, true);
            return None;
        };
        let current = self
            .pools
            .get(&ticket.key)
            .and_then(|p| p.current_revision.as_deref())
            == Some(instance.identity().revision_id.as_str());
        if reusable && current && !self.closed && instance.is_alive() {
            if let Some(info) = self.instances.get_mut(&instance.identity().id) {
                info.state = InstanceState::Idle;
            }
            let pool = self.pools.entry(ticket.key.clone()).or_default();
            pool.idle.push(Idle {
                instance,
                since: Instant::now(),
                frozen: false,
                keep_alive,
                memory_mb: ticket.memory_mb,
                provisioned: ticket.provisioned,
            });
            return None;
        }
        self.uncount(&ticket.key, ticket.memory_mb, ticket.provisioned, true);
        self.instances.remove(&instance.identity().id);
        Some(instance)
    }

    /// Freezes instances idle for at least `after`.
    pub fn freeze_idle(&mut self, after: Duration) {
        for pool in self.pools.values_mut() {
            for idle in pool
                .idle
                .iter_mut()
                .filter(|i| !i.frozen && i.since.elapsed() >= after)
            {
                idle.instance.freeze();
                idle.frozen = true;
            }
        }
    }

    /// Takes out idle instances past their keep-alive (or dead), to be dropped.
    pub fn expired(&mut self) -> Vec<Instance> {
        let mut out = Vec::new();
        let keys: Vec<PoolKey> = self.pools.keys().cloned().collect();
        for key in keys {
            let Some(pool) = self.pools.get_mut(&key) else {
                continue;
            };
            let (old, fresh): (Vec<Idle>, Vec<Idle>) = pool.idle.drain(..).partition(|idle| {
                !idle.instance.is_alive()
                    || (!idle.provisioned && idle.since.elapsed() >= idle.keep_alive)
            });
            pool.idle = fresh;
            for idle in old {
                out.push(self.forget_at(&key, idle));
            }
        }
        out
    }

    /// Retires function `name`'s instances (of `version`, or of every version) not at
    /// `revision` (all of them if `None`, as on delete: then its provisioned concurrency
    /// goes too).
    pub fn retire(
        &mut self,
        name: &str,
        version: Option<&str>,
        revision: Option<&str>,
    ) -> Vec<Instance> {
        let mut out = Vec::new();
        let in_scope = |f: &str, v: &str| f == name && version.is_none_or(|want| want == v);
        let keys: Vec<PoolKey> = self
            .pools
            .keys()
            .filter(|(f, v)| in_scope(f, v))
            .cloned()
            .collect();
        for key in keys {
            let Some(pool) = self.pools.get_mut(&key) else {
                continue;
            };
            pool.current_revision = revision.map(str::to_owned);
            let idle: Vec<Idle> = pool.idle.drain(..).collect();
            for i in idle {
                out.push(self.forget_at(&key, i));
            }
            if revision.is_none() {
                self.pools.remove(&key);
            }
        }
        for info in self.instances.values_mut() {
            if in_scope(&info.function, &info.version) && Some(info.revision.as_str()) != revision {
                info.state = InstanceState::Retiring;
            }
        }
        if revision.is_none() {
            // Gone for good (deleted): its provisioned instances are not started again.
            for (_, provision) in self
                .provisioning
                .iter_mut()
                .filter(|((f, v), _)| in_scope(f, v))
            {
                provision.requested = 0;
            }
        }
        out
    }

    /// Refuses new work and takes out every idle instance.
    pub fn close(&mut self) -> Vec<Instance> {
        self.closed = true;
        self.provisioning.clear();
        let idle: Vec<(PoolKey, Idle)> = self
            .pools
            .drain()
            .flat_map(|(key, pool)| pool.idle.into_iter().map(move |i| (key.clone(), i)))
            .collect();
        idle.into_iter()
            .map(|(key, i)| self.forget_at(&key, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(max: u32, memory: u64) -> NodeLimits {
        NodeLimits {
            max_concurrency: max,
            memory_budget_mb: memory,
        }
    }

    fn key(name: &str) -> PoolKey {
        (name.to_owned(), "$LATEST".to_owned())
    }

    fn limits(reserved: Option<u32>, memory_mb: u32) -> FunctionLimits {
        FunctionLimits {
            reserved,
            memory_mb,
        }
    }

    #[test]
    fn node_concurrency_is_shared_by_unreserved_functions() {
        let mut state = State::default();
        let l = limits(None, 128);
        let (a, t1, _) = state.admit(&key("a"), "r", &l, node(2, 10_000));
        assert!(matches!(a, Admit::Cold) && t1.is_some());
        let (b, _, _) = state.admit(&key("b"), "r", &l, node(2, 10_000));
        assert!(matches!(b, Admit::Cold));
        let (c, _, _) = state.admit(&key("c"), "r", &l, node(2, 10_000));
        assert!(matches!(
            c,
            Admit::Refused(ThrottleReason::ConcurrentInvocationLimitExceeded)
        ));
        let ticket = t1.expect("ticket");
        assert!(state
            .release(&ticket, None, false, Duration::from_secs(1))
            .is_none());
        let (c, _, _) = state.admit(&key("c"), "r", &l, node(2, 10_000));
        assert!(matches!(c, Admit::Cold));
        assert_eq!(state.memory_mb, 256);
    }

    #[test]
    fn reserved_concurrency_is_the_functions_own_limit() {
        let mut state = State {
            reserved_total: 1,
            ..State::default()
        };
        let reserved = limits(Some(1), 128);
        let (a, _, _) = state.admit(&key("r"), "x", &reserved, node(2, 10_000));
        assert!(matches!(a, Admit::Cold));
        let (b, _, _) = state.admit(&key("r"), "x", &reserved, node(2, 10_000));
        assert!(matches!(
            b,
            Admit::Refused(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
        ));
        // The unreserved share is max - reserved = 1.
        let (c, _, _) = state.admit(&key("u"), "x", &limits(None, 128), node(2, 10_000));
        assert!(matches!(c, Admit::Cold));
        let (d, _, _) = state.admit(&key("v"), "x", &limits(None, 128), node(2, 10_000));
        assert!(matches!(
            d,
            Admit::Refused(ThrottleReason::ConcurrentInvocationLimitExceeded)
        ));
        let zero = limits(Some(0), 128);
        let (e, _, _) = state.admit(&key("z"), "x", &zero, node(2, 10_000));
        assert!(matches!(e, Admit::Refused(_)));
    }

    #[test]
    fn memory_budget_refuses_when_nothing_idle_can_be_evicted() {
        let mut state = State::default();
        let (a, _, _) = state.admit(&key("a"), "r", &limits(None, 256), node(10, 384));
        assert!(matches!(a, Admit::Cold));
        let (b, _, _) = state.admit(&key("b"), "r", &limits(None, 256), node(10, 384));
        assert!(matches!(
            b,
            Admit::Refused(ThrottleReason::ConcurrentInvocationLimitExceeded)
        ));
        assert_eq!(state.counters["a"].running, 1);
        assert_eq!(state.counters.get("b").map_or(0, |c| c.running), 0);
    }
}
