//! Cluster membership records: which nodes serve, where they are reached, how loaded they
//! are, and when each was last heard from. Heartbeat times are the database's clock, and
//! ages are computed there too, so the nodes' own clocks need not agree.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{PostgresMetadata, Result, SqliteMetadata};

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBeat {
    /// The node's id, kept across its restarts.
    pub id: String,
    /// How other nodes reach it (`host:port`).
    pub address: String,
    /// The Nimbus version it runs.
    pub version: String,
    /// When it started, ms since the epoch (its own clock: for display).
    pub started_ms: i64,
    /// Instances alive on it.
    pub live_instances: u32,
    /// Of those, how many are running an invocation.
    pub busy_instances: u32,
}

/// A node as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// What it last said of itself.
    #[serde(flatten)]
    pub beat: NodeBeat,
    /// Milliseconds since that heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
}

/// Where nodes record themselves. Every metadata backend implements this.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Records `beat` as heard from now (a new node, or a restarted one under its id).
    async fn heartbeat(&self, beat: &NodeBeat) -> Result<()>;
    /// Every recorded node, by id.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Forgets node `id` (it left cleanly).
    async fn leave(&self, id: &str) -> Result<()>;
}

/// The change feed: which functions changed, in order, so each node can drop what it
/// cached of them. Every metadata backend implements this.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Records that `function` changed; its place in the feed.
    async fn record_change(&self, function: &str) -> Result<i64>;
    /// The functions changed after `seq`, and the feed's latest place.
    async fn changes_since(&self, seq: i64) -> Result<(Vec<String>, i64)>;
}

/// Changes kept in the feed: a node further behind than this reloads everything.
pub const CHANGES_KEPT: i64 = 10_000;

/// A `nodes` row (with its `age`) of either backend.
fn decode_node<R: Row>(row: &R) -> Result<NodeRecord>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let count = |name: &str| -> Result<u32> {
        let n: i64 = row.try_get(name)?;
        Ok(u32::try_from(n).unwrap_or(0))
    };
    Ok(NodeRecord {
        beat: NodeBeat {
            id: row.try_get("id")?,
            address: row.try_get("address")?,
            version: row.try_get("version")?,
            started_ms: row.try_get("started_ms")?,
            live_instances: count("live_instances")?,
            busy_instances: count("busy_instances")?,
        },
        heartbeat_age_ms: row.try_get::<i64, _>("age")?.max(0),
    })
}

/// The database's clock, ms since the epoch.
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

#[async_trait]
impl NodeStore for SqliteMetadata {
    async fn heartbeat(&self, beat: &NodeBeat) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO nodes (id, address, version, started_ms, heartbeat_ms, live_instances, busy_instances)
             VALUES (?1, ?2, ?3, ?4, {SQLITE_NOW_MS}, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET address = ?2, version = ?3, started_ms = ?4,
               heartbeat_ms = {SQLITE_NOW_MS}, live_instances = ?5, busy_instances = ?6"
        ))
        .bind(&beat.id)
        .bind(&beat.address)
        .bind(&beat.version)
        .bind(beat.started_ms)
        .bind(i64::from(beat.live_instances))
        .bind(i64::from(beat.busy_instances))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT id, address, version, started_ms, live_instances, busy_instances,
                    {SQLITE_NOW_MS} - heartbeat_ms AS age
             FROM nodes ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_node).collect()
    }

    async fn leave(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ChangeFeed for SqliteMetadata {
    async fn record_change(&self, function: &str) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO changes (function, at_ms) VALUES (?, {SQLITE_NOW_MS}) RETURNING seq"
        ))
        .bind(function)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM changes WHERE seq <= ?")
            .bind(seq - CHANGES_KEPT)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn changes_since(&self, seq: i64) -> Result<(Vec<String>, i64)> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
            .fetch_one(&self.pool)
            .await?;
        let latest = latest.unwrap_or(0);
        if latest <= seq {
            return Ok((Vec::new(), latest));
        }
        let functions: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT function FROM changes WHERE seq > ? AND seq <= ?")
                .bind(seq)
                .bind(latest)
                .fetch_all(&self.pool)
                .await?;
        Ok((functions, latest))
    }
}

/// PostgreSQL's clock, ms since the epoch (the statement's time, not the transaction's).
const POSTGRES_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

#[async_trait]
impl NodeStore for PostgresMetadata {
    async fn heartbeat(&self, beat: &NodeBeat) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO nodes (id, address, version, started_ms, heartbeat_ms, live_instances, busy_instances)
             VALUES ($1, $2, $3, $4, {POSTGRES_NOW_MS}, $5, $6)
             ON CONFLICT (id) DO UPDATE SET address = $2, version = $3, started_ms = $4,
               heartbeat_ms = {POSTGRES_NOW_MS}, live_instances = $5, busy_instances = $6"
        ))
        .bind(&beat.id)
        .bind(&beat.address)
        .bind(&beat.version)
        .bind(beat.started_ms)
        .bind(i64::from(beat.live_instances))
        .bind(i64::from(beat.busy_instances))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT id, address, version, started_ms, live_instances, busy_instances,
                    {POSTGRES_NOW_MS} - heartbeat_ms AS age
             FROM nodes ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_node).collect()
    }

    async fn leave(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ChangeFeed for PostgresMetadata {
    async fn record_change(&self, function: &str) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO changes (function, at_ms) VALUES ($1, {POSTGRES_NOW_MS}) RETURNING seq"
        ))
        .bind(function)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM changes WHERE seq <= $1")
            .bind(seq - CHANGES_KEPT)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn changes_since(&self, seq: i64) -> Result<(Vec<String>, i64)> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
            .fetch_one(&self.pool)
            .await?;
        let latest = latest.unwrap_or(0);
        if latest <= seq {
            return Ok((Vec::new(), latest));
        }
        let functions: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT function FROM changes WHERE seq > $1 AND seq <= $2",
        )
        .bind(seq)
        .bind(latest)
        .fetch_all(&self.pool)
        .await?;
        Ok((functions, latest))
    }
}
