//! Usage for the bill: requests and GB-seconds per function and day, priced.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::{InvocationRecord, TelemetryError};

/// What usage costs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PriceTable {
    /// Per GB-second of billed duration (Lambda x86: $0.0000166667).
    pub per_gb_second: f64,
    /// Per million requests (Lambda: $0.20).
    pub per_million_requests: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            per_gb_second: 0.000_016_666_7,
            per_million_requests: 0.20,
        }
    }
}

/// Which usage to read.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// First day, `YYYY-MM-DD` (inclusive).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (inclusive).
    pub to: Option<String>,
    /// Only this function.
    pub function: Option<String>,
}

/// One function's usage on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLine {
    /// Function name.
    pub function: String,
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Invocations.
    pub requests: u64,
    /// Billed duration × memory, GB-seconds (init included, as Lambda bills).
    pub billed_gb_seconds: f64,
    /// The init part of it, GB-seconds.
    pub init_gb_seconds: f64,
    /// What it costs under the price table.
    pub cost: f64,
}

/// GB-seconds of `mb_ms` megabyte-milliseconds.
fn gb_seconds(mb_ms: i64) -> f64 {
    mb_ms as f64 / 1024.0 / 1000.0
}

/// Adds one invocation to its function's day.
pub(crate) async fn add(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    record: &InvocationRecord,
) -> Result<(), sqlx::Error> {
    let day = chrono::DateTime::from_timestamp_millis(record.at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let memory = i64::from(record.memory_mb);
    let billed = i64::try_from(record.billed_ms()).unwrap_or(i64::MAX) * memory;
    let init = record.init_ms.map_or(0, |ms| ms.ceil() as i64) * memory;
    sqlx::query(
        "INSERT INTO usage_daily (function, day, requests, billed_mb_ms, init_mb_ms) VALUES (?, ?, 1, ?, ?) \
         ON CONFLICT (function, day) DO UPDATE SET requests = requests + 1, \
         billed_mb_ms = billed_mb_ms + excluded.billed_mb_ms, init_mb_ms = init_mb_ms + excluded.init_mb_ms",
    )
    .bind(&record.function)
    .bind(day)
    .bind(billed)
    .bind(init)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn query(
    pool: &SqlitePool,
    q: &UsageQuery,
    prices: &PriceTable,
) -> Result<Vec<UsageLine>, TelemetryError> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT function, day, requests, billed_mb_ms, init_mb_ms FROM usage_daily WHERE 1 = 1",
    );
    if let Some(from) = &q.from {
        sql.push(" AND day >= ").push_bind(from);
    }
    if let Some(to) = &q.to {
        sql.push(" AND day <= ").push_bind(to);
    }
    if let Some(function) = &q.function {
        sql.push(" AND function = ").push_bind(function);
    }
    sql.push(" ORDER BY function, day");
    let rows = sql.build().fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let requests: i64 = r.try_get("requests")?;
            let billed = gb_seconds(r.try_get("billed_mb_ms")?);
            let init = gb_seconds(r.try_get("init_mb_ms")?);
            Ok(UsageLine {
                function: r.try_get("function")?,
                day: r.try_get("day")?,
                requests: requests.max(0) as u64,
                billed_gb_seconds: billed,
                init_gb_seconds: init,
                cost: requests as f64 * prices.per_million_requests / 1_000_000.0
                    + billed * prices.per_gb_second,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(TelemetryError::from)
}
