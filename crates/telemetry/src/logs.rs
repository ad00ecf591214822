//! The log store: one row per invocation (START … REPORT), written in batches by a
//! background task, searched by time, request id and text, and kept within an age and a
//! size.

use std::time::Duration;

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::mpsc;

use crate::{usage, InvocationRecord, TelemetryError};

/// The log database's schema.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "logs and usage",
    include_str!("../migrations/0001_logs_usage.sql"),
)];

/// How long and how much log is kept.
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    /// Entries older than this go.
    pub max_age: Duration,
    /// Past this many bytes of log text, the oldest entries go.
    pub max_bytes: u64,
}

/// One invocation's log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    /// Function name.
    pub function: String,
    /// Version that ran.
    pub version: String,
    /// Request id.
    pub request_id: String,
    /// When it ended, epoch ms.
    pub at_ms: i64,
    /// START … REPORT.
    pub text: String,
}

impl LogEntry {
    pub(crate) fn of(record: &InvocationRecord) -> Self {
        LogEntry {
            function: record.function.clone(),
            version: record.version.clone(),
            request_id: record.request_id.clone(),
            at_ms: record.at_ms,
            text: String::from_utf8_lossy(&record.log).into_owned(),
        }
    }

    /// Whether the entry matches `query`'s function, request id and text (not its times).
    pub fn matches(&self, query: &LogQuery) -> bool {
        self.function == query.function
            && query
                .request_id
                .as_ref()
                .is_none_or(|r| *r == self.request_id)
            && query
                .grep
                .as_ref()
                .is_none_or(|g| self.text.contains(g.as_str()))
    }
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Function name.
    pub function: String,
    /// Only entries at or after, epoch ms.
    pub since_ms: Option<i64>,
    /// Only entries before, epoch ms.
    pub until_ms: Option<i64>,
    /// Only this invocation.
    pub request_id: Option<String>,
    /// Only entries containing this text.
    pub grep: Option<String>,
    /// At most this many (the newest), default 100.
    pub limit: Option<u32>,
}

pub(crate) async fn query(
    pool: &SqlitePool,
    q: &LogQuery,
) -> Result<Vec<LogEntry>, TelemetryError> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT function, version, request_id, at_ms, text FROM invocation_logs WHERE function = ",
    );
    sql.push_bind(&q.function);
    if let Some(since) = q.since_ms {
        sql.push(" AND at_ms >= ").push_bind(since);
    }
    if let Some(until) = q.until_ms {
        sql.push(" AND at_ms < ").push_bind(until);
    }
    if let Some(request) = &q.request_id {
        sql.push(" AND request_id = ").push_bind(request);
    }
    if let Some(text) = &q.grep {
        sql.push(" AND instr(text, ").push_bind(text).push(") > 0");
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(q.limit.unwrap_or(100)));
    let rows = sql.build().fetch_all(pool).await?;
    let mut entries: Vec<LogEntry> = rows
        .iter()
        .map(|r| -> Result<LogEntry, sqlx::Error> {
            Ok(LogEntry {
                function: r.try_get("function")?,
                version: r.try_get("version")?,
                request_id: r.try_get("request_id")?,
                at_ms: r.try_get("at_ms")?,
                text: r.try_get("text")?,
            })
        })
        .collect::<Result<_, _>>()?;
    entries.reverse();
    Ok(entries)
}

/// Most records written in one transaction.
const BATCH: usize = 512;

/// How long the writer gathers records before a transaction, so a busy server writes a
/// few large transactions rather than one per invocation.
const GATHER: Duration = Duration::from_millis(100);

/// Writes queued records (logs and usage) in batches until the queue closes.
pub(crate) async fn write_forever(pool: SqlitePool, mut queue: mpsc::Receiver<InvocationRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(GATHER).await;
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
        }
        if let Err(e) = write_batch(&pool, &batch).await {
            tracing::warn!(error = %e, lost = batch.len(), "writing invocation logs failed");
        }
        batch.clear();
    }
}

async fn write_batch(pool: &SqlitePool, batch: &[InvocationRecord]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for record in batch {
        sqlx::query(
            "INSERT INTO invocation_logs (function, version, request_id, at_ms, text) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&record.function)
        .bind(&record.version)
        .bind(&record.request_id)
        .bind(record.at_ms)
        .bind(String::from_utf8_lossy(&record.log).as_ref())
        .execute(&mut *tx)
        .await?;
        usage::add(&mut tx, record).await?;
    }
    tx.commit().await
}

/// Deletes logs past their age or beyond the size, every few seconds.
pub(crate) async fn retain_forever(pool: SqlitePool, retention: LogRetention) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = retain(&pool, retention).await {
            tracing::warn!(error = %e, "log retention failed");
        }
    }
}

/// One retention pass.
pub(crate) async fn retain(pool: &SqlitePool, retention: LogRetention) -> Result<(), sqlx::Error> {
    let oldest = chrono::Utc::now().timestamp_millis() - retention.max_age.as_millis() as i64;
    sqlx::query("DELETE FROM invocation_logs WHERE at_ms < ?")
        .bind(oldest)
        .execute(pool)
        .await?;
    let total: i64 =
        sqlx::query("SELECT COALESCE(SUM(length(text)), 0) AS bytes FROM invocation_logs")
            .fetch_one(pool)
            .await?
            .try_get("bytes")?;
    if total.max(0) as u64 > retention.max_bytes {
        // Keep the newest entries that fit in the size.
        sqlx::query(
            "DELETE FROM invocation_logs WHERE id <= (SELECT id FROM \
             (SELECT id, SUM(length(text)) OVER (ORDER BY id DESC) AS newer FROM invocation_logs) \
             WHERE newer > ? ORDER BY id DESC LIMIT 1)",
        )
        .bind(i64::try_from(retention.max_bytes).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(request: &str, at_ms: i64, text: &str) -> InvocationRecord {
        InvocationRecord {
            function: "f".into(),
            version: "$LATEST".into(),
            request_id: request.into(),
            at_ms,
            log: bytes::Bytes::from(text.to_owned()),
            duration_ms: 1.5,
            init_ms: None,
            memory_mb: 128,
            outcome: crate::Outcome::Success,
        }
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_within_age_and_size() {
        let dir = tempfile::tempdir().expect("tmp");
        let pool = nimbus_store::open_sqlite(&dir.path().join("logs.db"), MIGRATIONS)
            .await
            .expect("open");
        let now = chrono::Utc::now().timestamp_millis();
        let batch: Vec<InvocationRecord> = (0..10)
            .map(|i| record(&format!("r{i}"), now - 1000 + i, &"x".repeat(100)))
            .chain([record("old", now - 10 * 86_400_000, "ancient")])
            .collect();
        write_batch(&pool, &batch).await.expect("write");
        retain(
            &pool,
            LogRetention {
                max_age: Duration::from_secs(86_400),
                max_bytes: 350,
            },
        )
        .await
        .expect("retain");
        let kept = query(
            &pool,
            &LogQuery {
                function: "f".into(),
                ..Default::default()
            },
        )
        .await
        .expect("query");
        let ids: Vec<&str> = kept.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, ["r7", "r8", "r9"]);
        let found = query(
            &pool,
            &LogQuery {
                function: "f".into(),
                request_id: Some("r8".into()),
                ..Default::default()
            },
        )
        .await
        .expect("query");
        assert_eq!(found.len(), 1);
    }
}
