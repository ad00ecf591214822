//! What Nimbus records about invocations: their logs (durable, with retention, searchable
//! and followable), Prometheus metrics, and daily usage for the bill. Recording is cheap
//! on the invoke path: metrics are atomics, logs and usage go to a background writer.

mod logs;
mod metrics;
mod usage;

pub use logs::{LogEntry, LogQuery, LogRetention};
pub use metrics::{Gauges, Metrics};
pub use usage::{PriceTable, UsageLine, UsageQuery};

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

/// A telemetry failure.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log database failed.
    #[error("log database: {0}")]
    Database(#[from] sqlx::Error),
    /// The log database could not be opened.
    #[error("opening the log database: {0}")]
    Open(#[from] nimbus_store::StoreError),
    /// Metrics could not be encoded.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// How an invocation ended, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered.
    Success,
    /// The function failed (handler error, crash, init error).
    Error,
    /// The function ran out of time.
    Timeout,
    /// The invocation was refused over a limit.
    Throttled,
}

impl Outcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Throttled => "throttled",
        }
    }
}

/// One finished invocation.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// Function name.
    pub function: String,
    /// Version that ran.
    pub version: String,
    /// Request id.
    pub request_id: String,
    /// When it ended, epoch ms.
    pub at_ms: i64,
    /// START … REPORT.
    pub log: Bytes,
    /// Handler duration, ms.
    pub duration_ms: f64,
    /// Init duration of a cold start, ms.
    pub init_ms: Option<f64>,
    /// Configured memory, MB.
    pub memory_mb: u32,
    /// How it ended.
    pub outcome: Outcome,
}

impl InvocationRecord {
    /// Billed duration, ms: the handler's and the init's, rounded up to 1 ms, as Lambda bills.
    pub fn billed_ms(&self) -> u64 {
        (self.duration_ms + self.init_ms.unwrap_or(0.0)).ceil() as u64
    }
}

/// How telemetry is kept.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Log retention.
    pub retention: LogRetention,
    /// Prices for the usage bill.
    pub prices: PriceTable,
}

/// The telemetry of one server.
pub struct Telemetry {
    pool: sqlx::SqlitePool,
    metrics: Metrics,
    writer: mpsc::Sender<InvocationRecord>,
    follow: broadcast::Sender<Arc<LogEntry>>,
    prices: PriceTable,
}

/// Records queued for the writer before new ones are dropped (and counted as dropped).
const WRITER_QUEUE: usize = 10_000;

impl Telemetry {
    /// Opens (creating) `DIR/logs.db` and starts the background writer and retention.
    pub async fn open(path: &Path, config: TelemetryConfig) -> Result<Arc<Self>, TelemetryError> {
        let pool = nimbus_store::open_sqlite(path, logs::MIGRATIONS).await?;
        let (writer, queue) = mpsc::channel(WRITER_QUEUE);
        let (follow, _) = broadcast::channel(1024);
        let telemetry = Arc::new(Telemetry {
            pool: pool.clone(),
            metrics: Metrics::new()?,
            writer,
            follow,
            prices: config.prices,
        });
        tokio::spawn(logs::write_forever(pool.clone(), queue));
        tokio::spawn(logs::retain_forever(pool, config.retention));
        Ok(telemetry)
    }

    /// Records a finished invocation: metrics now, log and usage in the background.
    pub fn record(&self, record: InvocationRecord) {
        self.metrics.observe(&record);
        if self.follow.receiver_count() > 0 {
            let _ = self.follow.send(Arc::new(LogEntry::of(&record)));
        }
        if self.writer.try_send(record).is_err() {
            self.metrics.dropped_logs.inc();
        }
    }

    /// Counts a throttled invocation (it has no log).
    pub fn throttled(&self, function: &str, version: &str) {
        self.metrics.throttle(function, version);
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stored log entries matching `query`, oldest first.
    pub async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, TelemetryError> {
        logs::query(&self.pool, query).await
    }

    /// New log entries as they are recorded.
    pub fn follow(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.follow.subscribe()
    }

    /// Usage per function and day.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageLine>, TelemetryError> {
        usage::query(&self.pool, query, &self.prices).await
    }

    /// The prices the bill uses.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }
}
