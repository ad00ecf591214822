//! The SQLite backend of [`MetadataStore`]: one file in WAL mode, embedded migrations.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use nimbus_core::schedule::Schedule;
use nimbus_core::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, ProvisionedConfig,
    Scaling, UrlConfig,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{Embedded, MetadataStore, QualifiedTable};
use crate::{Result, StoreError};

/// Metadata in a SQLite file, in WAL mode.
#[derive(Clone)]
pub struct SqliteMetadata {
    pub(crate) pool: SqlitePool,
}

/// Opens (creating if needed) a SQLite database in WAL mode and applies `migrations`
/// (version, description, SQL) that it has not seen yet.
pub async fn open_sqlite(
    path: &Path,
    migrations: &'static [(i64, &'static str, &'static str)],
) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(damaged)?;
    // A file that is not a database, or a damaged one, is refused rather than served from.
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&pool)
        .await
        .map_err(damaged)?;
    if check != "ok" {
        return Err(StoreError::Damaged(check));
    }
    Migrator::new(Embedded(migrations))
        .await?
        .run(&pool)
        .await?;
    Ok(pool)
}

/// SQLite's "not a database" and "corrupt" errors as [`StoreError::Damaged`]; others as
/// they are.
fn damaged(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // Extended result codes keep the primary code in their low byte.
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        if matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB)) {
            return StoreError::Damaged(db.message().to_owned());
        }
    }
    StoreError::Database(e)
}

/// SQLite's primary result code for a damaged database.
const SQLITE_CORRUPT: i32 = 11;
/// SQLite's primary result code for a file that is not a database.
const SQLITE_NOTADB: i32 = 26;

/// The SQLite schema, in order; each entry is applied once.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "functions",
        include_str!("../../migrations/sqlite/0001_functions.sql"),
    ),
    (
        2,
        "scaling",
        include_str!("../../migrations/sqlite/0002_scaling.sql"),
    ),
    (
        3,
        "versions and aliases",
        include_str!("../../migrations/sqlite/0003_versions_aliases.sql"),
    ),
    (
        4,
        "provisioned concurrency",
        include_str!("../../migrations/sqlite/0004_provisioned.sql"),
    ),
    (
        5,
        "function urls",
        include_str!("../../migrations/sqlite/0005_function_urls.sql"),
    ),
    (
        6,
        "async events",
        include_str!("../../migrations/sqlite/0006_async_events.sql"),
    ),
    (
        7,
        "schedules",
        include_str!("../../migrations/sqlite/0007_schedules.sql"),
    ),
    (
        8,
        "nodes",
        include_str!("../../migrations/sqlite/0008_nodes.sql"),
    ),
    (
        9,
        "event leases",
        include_str!("../../migrations/sqlite/0009_event_leases.sql"),
    ),
    (
        10,
        "changes",
        include_str!("../../migrations/sqlite/0010_changes.sql"),
    ),
];

impl SqliteMetadata {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let pool = open_sqlite(path, SQLITE_MIGRATIONS).await?;
        Ok(SqliteMetadata { pool })
    }
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<FunctionConfig> {
    decode_json(row)
}

fn decode_alias(row: &sqlx::sqlite::SqliteRow) -> Result<AliasConfig> {
    decode_json(row)
}

/// Decodes a row's JSON `config` column.
fn decode_json<T: serde::de::DeserializeOwned>(row: &sqlx::sqlite::SqliteRow) -> Result<T> {
    let json: String = row.try_get("config")?;
    Ok(serde_json::from_str(&json)?)
}

fn decode_event(row: &sqlx::sqlite::SqliteRow) -> Result<AsyncEvent> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(AsyncEvent {
        id: row.try_get("id")?,
        function: row.try_get("function")?,
        qualifier: row.try_get("qualifier")?,
        payload: row.try_get("payload")?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        enqueued_at: row.try_get("enqueued_at")?,
        last_error: row.try_get("last_error")?,
    })
}

fn decode_dead_letter(row: &sqlx::sqlite::SqliteRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        event: decode_event(row)?,
        condition: row.try_get("condition")?,
        failed_at: row.try_get("failed_at")?,
    })
}

fn decode_provisioned(row: &sqlx::sqlite::SqliteRow) -> Result<ProvisionedConfig> {
    let requested: i64 = row.try_get("requested")?;
    Ok(ProvisionedConfig {
        function: row.try_get("name")?,
        qualifier: row.try_get("qualifier")?,
        requested: u32::try_from(requested).unwrap_or_default(),
        last_modified: row.try_get("last_modified")?,
    })
}

impl SqliteMetadata {
    /// Stores a configuration; with `must_be_new`, [`StoreError::Conflict`] if one exists.
    async fn put_qualified<T: serde::Serialize + Sync>(
        &self,
        table: QualifiedTable,
        name: &str,
        qualifier: Option<&str>,
        config: &T,
        must_be_new: bool,
    ) -> Result<()> {
        let verb = if must_be_new {
            "INSERT"
        } else {
            "INSERT OR REPLACE"
        };
        let sql = format!(
            "{verb} INTO {} (name, qualifier, config) VALUES (?, ?, ?)",
            table.name()
        );
        let result = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier.unwrap_or(""))
            .bind(serde_json::to_string(config)?)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// One configuration.
    async fn get_qualified<T: serde::de::DeserializeOwned>(
        &self,
        table: QualifiedTable,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<T>> {
        let sql = format!(
            "SELECT config FROM {} WHERE name = ? AND qualifier = ?",
            table.name()
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier.unwrap_or(""))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_json).transpose()
    }

    /// Every configuration of function `name`.
    async fn list_qualified<T: serde::de::DeserializeOwned>(
        &self,
        table: QualifiedTable,
        name: &str,
    ) -> Result<Vec<T>> {
        let sql = format!(
            "SELECT config FROM {} WHERE name = ? ORDER BY qualifier",
            table.name()
        );
        let rows = sqlx::query(&sql).bind(name).fetch_all(&self.pool).await?;
        rows.iter().map(decode_json).collect()
    }

    /// Removes one configuration; whether it existed.
    async fn delete_qualified(
        &self,
        table: QualifiedTable,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE name = ? AND qualifier = ?",
            table.name()
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl MetadataStore for SqliteMetadata {
    async fn insert_function(&self, config: &FunctionConfig) -> Result<()> {
        let json = serde_json::to_string(config)?;
        let result = sqlx::query(
            "INSERT INTO functions (name, revision_id, code_sha256, code_size, config) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&config.name)
        .bind(&config.revision_id)
        .bind(&config.code_sha256_hex)
        .bind(config.code_size as i64)
        .bind(json)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>> {
        let row = sqlx::query("SELECT config FROM functions WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn replace_function(
        &self,
        config: &FunctionConfig,
        expected_revision: &str,
    ) -> Result<()> {
        let json = serde_json::to_string(config)?;
        let done = sqlx::query(
            "UPDATE functions SET revision_id = ?, code_sha256 = ?, code_size = ?, config = ? WHERE name = ? AND revision_id = ?",
        )
        .bind(&config.revision_id)
        .bind(&config.code_sha256_hex)
        .bind(config.code_size as i64)
        .bind(json)
        .bind(&config.name)
        .bind(expected_revision)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale)
        }
    }

    async fn delete_function(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Schedules name their function as `name` or `name:qualifier`; the other tables
        // that hang off a function cascade.
        sqlx::query(
            "DELETE FROM schedules WHERE function = ?1 OR substr(function, 1, length(?1) + 1) = ?1 || ':'",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM functions WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_functions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>> {
        let rows = sqlx::query("SELECT config FROM functions WHERE name > ? ORDER BY name LIMIT ?")
            .bind(after.unwrap_or(""))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn usage(&self) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(code_size), 0) AS bytes FROM functions",
        )
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok((n.max(0) as u64, bytes.max(0) as u64))
    }

    async fn referenced_code(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT code_sha256 AS sha FROM functions \
             UNION SELECT json_extract(config, '$.code_sha256_hex') FROM versions",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut referenced = std::collections::HashSet::with_capacity(rows.len());
        for row in &rows {
            // A version whose config lacks the field would be corrupt; keep looking.
            if let Some(sha) = row.try_get::<Option<String>, _>("sha")? {
                referenced.insert(sha);
            }
        }
        Ok(referenced)
    }

    async fn get_scaling(&self, name: &str) -> Result<Option<Scaling>> {
        let row =
            sqlx::query("SELECT reserved_concurrency, keep_alive_s FROM functions WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let reserved: Option<i64> = row.try_get("reserved_concurrency")?;
        let keep_alive: Option<i64> = row.try_get("keep_alive_s")?;
        Ok(Some(Scaling {
            reserved_concurrency: reserved.and_then(|v| u32::try_from(v).ok()),
            keep_alive_s: keep_alive.and_then(|v| u32::try_from(v).ok()),
        }))
    }

    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<u32>) -> Result<bool> {
        let done = sqlx::query("UPDATE functions SET reserved_concurrency = ? WHERE name = ?")
            .bind(reserved.map(i64::from))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_keep_alive(&self, name: &str, seconds: Option<u32>) -> Result<bool> {
        let done = sqlx::query("UPDATE functions SET keep_alive_s = ? WHERE name = ?")
            .bind(seconds.map(i64::from))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn publish_version(&self, config: &FunctionConfig) -> Result<FunctionConfig> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("UPDATE functions SET last_version = last_version + 1 WHERE name = ? RETURNING last_version")
            .bind(&config.name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::Stale);
        };
        let number: i64 = row.try_get("last_version")?;
        let mut published = config.clone();
        published.version = number.to_string();
        sqlx::query("INSERT INTO versions (name, version, config) VALUES (?, ?, ?)")
            .bind(&config.name)
            .bind(number)
            .bind(serde_json::to_string(&published)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(published)
    }

    async fn get_version(&self, name: &str, version: u64) -> Result<Option<FunctionConfig>> {
        let row = sqlx::query("SELECT config FROM versions WHERE name = ? AND version = ?")
            .bind(name)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_versions(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>> {
        let rows = sqlx::query(
            "SELECT config FROM versions WHERE name = ? AND version > ? ORDER BY version LIMIT ?",
        )
        .bind(name)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn last_published(&self, name: &str) -> Result<Option<FunctionConfig>> {
        let row =
            sqlx::query("SELECT config FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn delete_version(&self, name: &str, version: u64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM versions WHERE name = ? AND version = ?")
            .bind(name)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_alias(&self, alias: &AliasConfig) -> Result<()> {
        let result = sqlx::query("INSERT INTO aliases (name, alias, config) VALUES (?, ?, ?)")
            .bind(&alias.function)
            .bind(&alias.name)
            .bind(serde_json::to_string(alias)?)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    async fn replace_alias(&self, alias: &AliasConfig, expected_revision: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE aliases SET config = ? WHERE name = ? AND alias = ? AND json_extract(config, '$.revision_id') = ?",
        )
        .bind(serde_json::to_string(alias)?)
        .bind(&alias.function)
        .bind(&alias.name)
        .bind(expected_revision)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale)
        }
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<AliasConfig>> {
        let row = sqlx::query("SELECT config FROM aliases WHERE name = ? AND alias = ?")
            .bind(name)
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_alias).transpose()
    }

    async fn list_aliases(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasConfig>> {
        let rows = sqlx::query(
            "SELECT config FROM aliases WHERE name = ? AND alias > ? ORDER BY alias LIMIT ?",
        )
        .bind(name)
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_alias).collect()
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM aliases WHERE name = ? AND alias = ?")
            .bind(name)
            .bind(alias)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_provisioned(&self, config: &ProvisionedConfig) -> Result<()> {
        sqlx::query(
            "INSERT INTO provisioned_concurrency (name, qualifier, requested, last_modified) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name, qualifier) DO UPDATE SET requested = excluded.requested, last_modified = excluded.last_modified",
        )
        .bind(&config.function)
        .bind(&config.qualifier)
        .bind(i64::from(config.requested))
        .bind(&config.last_modified)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_provisioned(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConfig>> {
        let row = sqlx::query(
            "SELECT name, qualifier, requested, last_modified FROM provisioned_concurrency WHERE name = ? AND qualifier = ?",
        )
        .bind(name)
        .bind(qualifier)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_provisioned).transpose()
    }

    async fn list_provisioned(&self, name: Option<&str>) -> Result<Vec<ProvisionedConfig>> {
        let rows = sqlx::query(
            "SELECT name, qualifier, requested, last_modified FROM provisioned_concurrency WHERE ? IS NULL OR name = ? ORDER BY name, qualifier",
        )
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_provisioned).collect()
    }

    async fn delete_provisioned(&self, name: &str, qualifier: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM provisioned_concurrency WHERE name = ? AND qualifier = ?")
                .bind(name)
                .bind(qualifier)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_url(&self, url: &UrlConfig, must_be_new: bool) -> Result<()> {
        let table = QualifiedTable::FunctionUrls;
        self.put_qualified(
            table,
            &url.function,
            url.qualifier.as_deref(),
            url,
            must_be_new,
        )
        .await
    }

    async fn get_url(&self, name: &str, qualifier: Option<&str>) -> Result<Option<UrlConfig>> {
        self.get_qualified(QualifiedTable::FunctionUrls, name, qualifier)
            .await
    }

    async fn list_urls(&self, name: &str) -> Result<Vec<UrlConfig>> {
        self.list_qualified(QualifiedTable::FunctionUrls, name)
            .await
    }

    async fn delete_url(&self, name: &str, qualifier: Option<&str>) -> Result<bool> {
        self.delete_qualified(QualifiedTable::FunctionUrls, name, qualifier)
            .await
    }

    async fn enqueue_event(&self, event: &AsyncEvent, due_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO async_events (id, function, qualifier, payload, attempts, enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.function)
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(i64::from(event.attempts))
        .bind(event.enqueued_at)
        .bind(due_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_due_events(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<AsyncEvent>> {
        // One statement, under SQLite's write lock: two nodes never claim one event. Events
        // due at the same millisecond go first come, first served (rowid order); an event
        // whose node's lease ran out goes again, that delivery counting as an attempt.
        let rows = sqlx::query(
            "UPDATE async_events SET \
               attempts = attempts + inflight, \
               last_error = CASE WHEN inflight = 1 THEN COALESCE(last_error, 'the node delivering it stopped') ELSE last_error END, \
               inflight = 1, lease_owner = ?1, lease_until_ms = ?3 \
             WHERE id IN (SELECT id FROM async_events \
               WHERE (inflight = 0 AND next_attempt_at <= ?2) OR (inflight = 1 AND lease_until_ms < ?2) \
               ORDER BY next_attempt_at, rowid LIMIT ?4) \
             RETURNING id, function, qualifier, payload, attempts, enqueued_at, last_error, next_attempt_at, rowid AS seq",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let order: (i64, i64) = (row.try_get("next_attempt_at")?, row.try_get("seq")?);
                Ok((order, decode_event(row)?))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order: give the events in the order they were due.
        claimed.sort_by_key(|(order, _)| *order);
        Ok(claimed.into_iter().map(|(_, event)| event).collect())
    }

    async fn renew_leases(&self, owner: &str, lease_until: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE async_events SET lease_until_ms = ? WHERE inflight = 1 AND lease_owner = ?",
        )
        .bind(lease_until)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_event_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN inflight = 0 THEN next_attempt_at ELSE lease_until_ms END) AS due \
             FROM async_events",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    async fn complete_event(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM async_events WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry_event(
        &self,
        id: &str,
        attempts: u32,
        due_at: i64,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE async_events SET inflight = 0, attempts = ?, next_attempt_at = ?, last_error = COALESCE(?, last_error) WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(due_at)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let event = &letter.event;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO dead_letters (id, function, qualifier, payload, condition, attempts, error, enqueued_at, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.function)
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(&letter.condition)
        .bind(i64::from(event.attempts))
        .bind(&event.last_error)
        .bind(event.enqueued_at)
        .bind(letter.failed_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM async_events WHERE id = ?")
            .bind(&event.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn requeue_inflight(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE async_events SET inflight = 0, attempts = attempts + 1, lease_owner = NULL, \
             lease_until_ms = NULL, last_error = COALESCE(last_error, 'the server stopped during delivery') \
             WHERE inflight = 1 AND (lease_owner = ? OR lease_owner IS NULL)",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn queue_depth(&self, now: i64) -> Result<(u64, i64)> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(enqueued_at) AS oldest FROM async_events")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok((n.max(0) as u64, oldest.map_or(0, |o| (now - o).max(0))))
    }

    async fn list_dead_letters(&self, function: Option<&str>) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, function, qualifier, payload, attempts, enqueued_at, error AS last_error, condition, failed_at \
             FROM dead_letters WHERE ? IS NULL OR function = ? ORDER BY failed_at, id",
        )
        .bind(function)
        .bind(function)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_dead_letter).collect()
    }

    async fn take_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(
            "DELETE FROM dead_letters WHERE id = ? RETURNING id, function, qualifier, payload, attempts, enqueued_at, error AS last_error, condition, failed_at",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_dead_letter).transpose()
    }

    async fn put_event_config(&self, config: &EventInvokeConfig) -> Result<()> {
        let table = QualifiedTable::EventInvokeConfigs;
        self.put_qualified(
            table,
            &config.function,
            config.qualifier.as_deref(),
            config,
            false,
        )
        .await
    }

    async fn get_event_config(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<EventInvokeConfig>> {
        self.get_qualified(QualifiedTable::EventInvokeConfigs, name, qualifier)
            .await
    }

    async fn list_event_configs(&self, name: &str) -> Result<Vec<EventInvokeConfig>> {
        self.list_qualified(QualifiedTable::EventInvokeConfigs, name)
            .await
    }

    async fn delete_event_config(&self, name: &str, qualifier: Option<&str>) -> Result<bool> {
        self.delete_qualified(QualifiedTable::EventInvokeConfigs, name, qualifier)
            .await
    }

    async fn insert_schedule(&self, schedule: &Schedule) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO schedules (name, function, config, next_fire_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(&schedule.name)
        .bind(&schedule.function)
        .bind(serde_json::to_string(schedule)?)
        .bind(schedule.next_fire_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT config FROM schedules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_json).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_schedule(&self, schedule: &Schedule) -> Result<()> {
        sqlx::query("UPDATE schedules SET config = ?, next_fire_ms = ? WHERE name = ?")
            .bind(serde_json::to_string(schedule)?)
            .bind(schedule.next_fire_ms)
            .bind(&schedule.name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn fire_schedule(&self, schedule: &Schedule, event: &AsyncEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Compare and swap: only the node that moves the schedule on from this fire's
        // time enqueues it (the event may be delivered and gone before another node looks).
        let moved = sqlx::query(
            "UPDATE schedules SET config = ?, next_fire_ms = ? WHERE name = ? AND next_fire_ms IS ?",
        )
        .bind(serde_json::to_string(schedule)?)
        .bind(schedule.next_fire_ms)
        .bind(&schedule.name)
        .bind(schedule.last_fire_ms)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT OR IGNORE INTO async_events (id, function, qualifier, payload, attempts, enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.function)
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(event.enqueued_at)
        .bind(event.enqueued_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reserved_total(&self, except: Option<&str>) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(reserved_concurrency), 0) AS total FROM functions WHERE name != ?",
        )
        .bind(except.unwrap_or(""))
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        Ok(total.max(0) as u64)
    }
}
