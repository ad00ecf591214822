//! Prometheus metrics, `nimbus_`-prefixed, with bounded labels (no request ids).

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::{InvocationRecord, Outcome, TelemetryError};

/// Point-in-time figures the server reads at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Invocations running now.
    pub concurrent_executions: i64,
    /// Live instances by state.
    pub instances_by_state: Vec<(String, i64)>,
    /// Async events waiting.
    pub async_queue_depth: i64,
    /// Age of the oldest waiting async event, seconds.
    pub async_queue_oldest_seconds: f64,
    /// Dead letters kept.
    pub dead_letters: i64,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    errors: IntCounterVec,
    throttles: IntCounterVec,
    cold_starts: IntCounterVec,
    duration: HistogramVec,
    init_duration: HistogramVec,
    billed_gb_seconds: prometheus::CounterVec,
    concurrent: IntGauge,
    instances: IntGaugeVec,
    queue_depth: IntGauge,
    queue_age: Gauge,
    dead_letters: IntGauge,
    /// Invocation logs dropped because the writer fell behind.
    pub dropped_logs: IntCounter,
}

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

impl Metrics {
    pub(crate) fn new() -> Result<Self, TelemetryError> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str, help: &str| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                &["function"],
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let invocations = counter(
            "nimbus_invocations_total",
            "Invocations by function, version and outcome (success, error, timeout, throttled).",
            &["function", "version", "outcome"],
        )?;
        let errors = counter(
            "nimbus_errors_total",
            "Invocations that ended in a function error or timeout.",
            &["function"],
        )?;
        let throttles = counter(
            "nimbus_throttles_total",
            "Invocations refused over a limit (429).",
            &["function"],
        )?;
        let cold_starts = counter(
            "nimbus_cold_starts_total",
            "Invocations that started a new instance.",
            &["function"],
        )?;
        let duration = histogram(
            "nimbus_duration_seconds",
            "Handler duration of invocations.",
        )?;
        let init_duration = histogram(
            "nimbus_init_duration_seconds",
            "Init duration of cold starts.",
        )?;
        let billed_gb_seconds = prometheus::CounterVec::new(
            Opts::new(
                "nimbus_billed_gb_seconds_total",
                "Billed duration times memory, GB-seconds.",
            ),
            &["function"],
        )?;
        registry.register(Box::new(billed_gb_seconds.clone()))?;
        let concurrent = IntGauge::new("nimbus_concurrent_executions", "Invocations running now.")?;
        let instances = IntGaugeVec::new(
            Opts::new("nimbus_instances", "Live instances by state."),
            &["state"],
        )?;
        let queue_depth = IntGauge::new(
            "nimbus_async_queue_depth",
            "Async events waiting for delivery.",
        )?;
        let queue_age = Gauge::new(
            "nimbus_async_queue_oldest_age_seconds",
            "Age of the oldest waiting async event.",
        )?;
        let dead_letters = IntGauge::new(
            "nimbus_dead_letters",
            "Async events given up and kept as dead letters.",
        )?;
        let dropped_logs = IntCounter::new(
            "nimbus_dropped_logs_total",
            "Invocation logs dropped because the log writer fell behind.",
        )?;
        for c in [
            Box::new(concurrent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(instances.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_age.clone()),
            Box::new(dead_letters.clone()),
            Box::new(dropped_logs.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            invocations,
            errors,
            throttles,
            cold_starts,
            duration,
            init_duration,
            billed_gb_seconds,
            concurrent,
            instances,
            queue_depth,
            queue_age,
            dead_letters,
            dropped_logs,
        })
    }

    pub(crate) fn observe(&self, r: &InvocationRecord) {
        let f = r.function.as_str();
        self.invocations
            .with_label_values(&[f, &r.version, r.outcome.as_str()])
            .inc();
        if matches!(r.outcome, Outcome::Error | Outcome::Timeout) {
            self.errors.with_label_values(&[f]).inc();
        }
        self.duration
            .with_label_values(&[f])
            .observe(r.duration_ms / 1000.0);
        if let Some(init) = r.init_ms {
            self.cold_starts.with_label_values(&[f]).inc();
            self.init_duration
                .with_label_values(&[f])
                .observe(init / 1000.0);
        }
        let gb_s = r.billed_ms() as f64 / 1000.0 * f64::from(r.memory_mb) / 1024.0;
        self.billed_gb_seconds.with_label_values(&[f]).inc_by(gb_s);
    }

    pub(crate) fn throttle(&self, function: &str, version: &str) {
        self.invocations
            .with_label_values(&[function, version, Outcome::Throttled.as_str()])
            .inc();
        self.throttles.with_label_values(&[function]).inc();
    }

    /// The Prometheus text exposition, with `gauges` as they are now.
    pub fn encode(&self, gauges: &Gauges) -> Result<String, TelemetryError> {
        self.concurrent.set(gauges.concurrent_executions);
        self.instances.reset();
        for (state, n) in &gauges.instances_by_state {
            self.instances.with_label_values(&[state]).set(*n);
        }
        self.queue_depth.set(gauges.async_queue_depth);
        self.queue_age.set(gauges.async_queue_oldest_seconds);
        self.dead_letters.set(gauges.dead_letters);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
