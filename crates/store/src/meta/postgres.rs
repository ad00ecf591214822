//! The PostgreSQL backend of [`MetadataStore`]: the metadata several nodes share.
//!
//! It gives the SQLite backend's results and errors (the conformance suite in
//! `tests/conformance.rs` runs the same cases on both); where the engines differ it adapts:
//! keys collate byte by byte (`COLLATE "C"` in the schema), error texts are bytes (TEXT
//! refuses NUL), and a key holding a NUL, which no row can have here, matches nothing
//! instead of failing the query. Async events are claimed with ``, so
//! nodes claiming at once each get different events and never wait for one another.

use std::str::FromStr;

use async_trait::async_trait;
use nimbus_core::schedule::Schedule;
use nimbus_core::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, ProvisionedConfig,
    Scaling, UrlConfig,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use super::{Embedded, MetadataStore, QualifiedTable};
use crate::{Result, StoreError};

/// Metadata in a PostgreSQL database, which several Nimbus nodes may share.
#[derive(Clone)]
pub struct PostgresMetadata {
    pub(crate) pool: PgPool,
}

/// Connections one node keeps to the database at most: enough for the invoke path's
/// reads, the delivery loop and the API's writes to proceed side by side.
const MAX_CONNECTIONS: u32 = 8;

/// The PostgreSQL schema, in order; each entry is applied once.
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "metadata",
        include_str!("../../migrations/postgres/0001_metadata.sql"),
    ),
    (
        2,
        "cluster",
        include_str!("../../migrations/postgres/0002_cluster.sql"),
    ),
];

/// What [`MetadataStore::requeue_inflight`] records as the last error of an event it puts
/// back, when the event has none: the same words as SQLite's.
const STOPPED_DURING_DELIVERY: &str = "the server stopped during delivery";

/// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`,
/// with libpq's query parameters such as `sslmode` or `options[search_path]=schema`) and
/// brings its schema up to date.
pub async fn open_postgres(url: &str) -> Result<PostgresMetadata> {
    PostgresMetadata::open(url).await
}

impl PostgresMetadata {
    /// Connects to the database at `url` and brings its schema up to date. Nodes starting
    /// together are safe: the migrator holds an advisory lock while it works.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        Migrator::new(Embedded(POSTGRES_MIGRATIONS))
            .await?
            .run(&pool)
            .await?;
        Ok(PostgresMetadata { pool })
    }

    /// Closes every connection; waits for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `key` as a parameter for an exact match, or `None` when it holds a NUL: no row can (TEXT
/// refuses it), so the lookup matches nothing, as on SQLite, rather than failing.
fn exact(key: &str) -> Option<&str> {
    (!key.contains('\0')).then_some(key)
}

/// `key` as a parameter for `column > key`: cut at its first NUL, which selects the same rows
/// when no stored key holds a NUL (every key above `p\0…` is above `p`, and `p` is not).
fn lower_bound(key: &str) -> &str {
    key.split('\0').next().unwrap_or_default()
}

/// `limit` as SQL's `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A version number as its column.
fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Maps a unique-key violation to [`StoreError::Conflict`].
fn conflict_if_taken(result: std::result::Result<impl Sized, sqlx::Error>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// Decodes a row's JSON `config` column.
fn decode_json<T: serde::de::DeserializeOwned>(row: &PgRow) -> Result<T> {
    let json: String = row.try_get("config")?;
    Ok(serde_json::from_str(&json)?)
}

/// Text kept as UTF-8 bytes (see the schema), as it was stored.
fn text_from_bytes(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn decode_event(row: &PgRow) -> Result<AsyncEvent> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(AsyncEvent {
        id: row.try_get("id")?,
        function: row.try_get("function")?,
        qualifier: row.try_get("qualifier")?,
        payload: row.try_get("payload")?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        enqueued_at: row.try_get("enqueued_at")?,
        last_error: text_from_bytes(row.try_get("last_error")?),
    })
}

fn decode_dead_letter(row: &PgRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        event: decode_event(row)?,
        condition: row.try_get("condition")?,
        failed_at: row.try_get("failed_at")?,
    })
}

fn decode_provisioned(row: &PgRow) -> Result<ProvisionedConfig> {
    let requested: i64 = row.try_get("requested")?;
    Ok(ProvisionedConfig {
        function: row.try_get("name")?,
        qualifier: row.try_get("qualifier")?,
        requested: u32::try_from(requested).unwrap_or_default(),
        last_modified: row.try_get("last_modified")?,
    })
}

/// The columns a dead letter is read back with, named as [`decode_dead_letter`] reads them.
const DEAD_LETTER_COLUMNS: &str = "id, function, qualifier, payload, attempts, enqueued_at, \
     error AS last_error, condition, failed_at";

impl PostgresMetadata {
    /// Stores a configuration; with `must_be_new`, [`StoreError::Conflict`] if one exists.
    async fn put_qualified<T: serde::Serialize + Sync>(
        &self,
        table: QualifiedTable,
        name: &str,
        qualifier: Option<&str>,
        config: &T,
        must_be_new: bool,
    ) -> Result<()> {
        let on_conflict = if must_be_new {
            ""
        } else {
            " ON CONFLICT (name, qualifier) DO UPDATE SET config = excluded.config"
        };
        let sql = format!(
            "INSERT INTO {} (name, qualifier, config) VALUES ($1, $2, $3){on_conflict}",
            table.name()
        );
        let result = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier.unwrap_or(""))
            .bind(serde_json::to_string(config)?)
            .execute(&self.pool)
            .await;
        conflict_if_taken(result)
    }

    /// One configuration.
    async fn get_qualified<T: serde::de::DeserializeOwned>(
        &self,
        table: QualifiedTable,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<T>> {
        let (Some(name), Some(qualifier)) = (exact(name), exact(qualifier.unwrap_or(""))) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT config FROM {} WHERE name = $1 AND qualifier = $2",
            table.name()
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier)
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
        let Some(name) = exact(name) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT config FROM {} WHERE name = $1 ORDER BY qualifier",
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
        let (Some(name), Some(qualifier)) = (exact(name), exact(qualifier.unwrap_or(""))) else {
            return Ok(false);
        };
        let sql = format!(
            "DELETE FROM {} WHERE name = $1 AND qualifier = $2",
            table.name()
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(qualifier)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl MetadataStore for PostgresMetadata {
    async fn insert_function(&self, config: &FunctionConfig) -> Result<()> {
        let json = serde_json::to_string(config)?;
        let result = sqlx::query(
            "INSERT INTO functions (name, revision_id, code_sha256, code_size, config) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&config.name)
        .bind(&config.revision_id)
        .bind(&config.code_sha256_hex)
        .bind(config.code_size as i64)
        .bind(json)
        .execute(&self.pool)
        .await;
        conflict_if_taken(result)
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>> {
        let Some(name) = exact(name) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT config FROM functions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_json).transpose()
    }

    async fn replace_function(
        &self,
        config: &FunctionConfig,
        expected_revision: &str,
    ) -> Result<()> {
        let (Some(name), Some(expected)) = (exact(&config.name), exact(expected_revision)) else {
            return Err(StoreError::Stale);
        };
        let json = serde_json::to_string(config)?;
        // One statement: the row lock and READ COMMITTED's re-check of the WHERE clause on
        // the newest row make it a compare-and-swap between nodes too.
        let done = sqlx::query(
            "UPDATE functions SET revision_id = $1, code_sha256 = $2, code_size = $3, config = $4 WHERE name = $5 AND revision_id = $6",
        )
        .bind(&config.revision_id)
        .bind(&config.code_sha256_hex)
        .bind(config.code_size as i64)
        .bind(json)
        .bind(name)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale)
        }
    }

    async fn delete_function(&self, name: &str) -> Result<bool> {
        let Some(name) = exact(name) else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        // Schedules name their function as `name` or `name:qualifier`; the other tables
        // that hang off a function cascade.
        sqlx::query(
            "DELETE FROM schedules WHERE function = $1 OR starts_with(function, $1 || ':')",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM functions WHERE name = $1")
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
        let rows =
            sqlx::query("SELECT config FROM functions WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(lower_bound(after.unwrap_or("")))
                .bind(sql_limit(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(decode_json).collect()
    }

    async fn usage(&self) -> Result<(u64, u64)> {
        // SUM of a BIGINT is a NUMERIC in PostgreSQL: cast it back.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(code_size), 0)::BIGINT AS bytes FROM functions",
        )
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok((n.max(0) as u64, bytes.max(0) as u64))
    }

    async fn referenced_code(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT code_sha256 AS sha FROM functions UNION SELECT code_sha256 FROM versions",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>("sha")?))
            .collect()
    }

    async fn get_scaling(&self, name: &str) -> Result<Option<Scaling>> {
        let Some(name) = exact(name) else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT reserved_concurrency, keep_alive_s FROM functions WHERE name = $1")
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
        let Some(name) = exact(name) else {
            return Ok(false);
        };
        let done = sqlx::query("UPDATE functions SET reserved_concurrency = $1 WHERE name = $2")
            .bind(reserved.map(i64::from))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_keep_alive(&self, name: &str, seconds: Option<u32>) -> Result<bool> {
        let Some(name) = exact(name) else {
            return Ok(false);
        };
        let done = sqlx::query("UPDATE functions SET keep_alive_s = $1 WHERE name = $2")
            .bind(seconds.map(i64::from))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn reserved_total(&self, except: Option<&str>) -> Result<u64> {
        // A name holding a NUL is no stored name: nothing is excepted, as on SQLite.
        let row = sqlx::query(
            "SELECT COALESCE(SUM(reserved_concurrency), 0)::BIGINT AS total FROM functions WHERE name IS DISTINCT FROM $1",
        )
        .bind(except.and_then(exact))
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        Ok(total.max(0) as u64)
    }

    async fn publish_version(&self, config: &FunctionConfig) -> Result<FunctionConfig> {
        let Some(name) = exact(&config.name) else {
            return Err(StoreError::Stale);
        };
        let mut tx = self.pool.begin().await?;
        // The row lock taken here orders concurrent publishes: each gets its own number.
        let row = sqlx::query(
            "UPDATE functions SET last_version = last_version + 1 WHERE name = $1 RETURNING last_version",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Stale);
        };
        let number: i64 = row.try_get("last_version")?;
        let mut published = config.clone();
        published.version = number.to_string();
        sqlx::query(
            "INSERT INTO versions (name, version, code_sha256, config) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(number)
        .bind(&published.code_sha256_hex)
        .bind(serde_json::to_string(&published)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(published)
    }

    async fn get_version(&self, name: &str, version: u64) -> Result<Option<FunctionConfig>> {
        let Some(name) = exact(name) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT config FROM versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(sql_version(version))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_json).transpose()
    }

    async fn list_versions(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>> {
        let Some(name) = exact(name) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT config FROM versions WHERE name = $1 AND version > $2 ORDER BY version LIMIT $3",
        )
        .bind(name)
        .bind(sql_version(after))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_json).collect()
    }

    async fn last_published(&self, name: &str) -> Result<Option<FunctionConfig>> {
        let Some(name) = exact(name) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT config FROM versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_json).transpose()
    }

    async fn delete_version(&self, name: &str, version: u64) -> Result<bool> {
        let Some(name) = exact(name) else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(sql_version(version))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_alias(&self, alias: &AliasConfig) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO aliases (name, alias, revision_id, config) VALUES ($1, $2, $3, $4)",
        )
        .bind(&alias.function)
        .bind(&alias.name)
        .bind(&alias.revision_id)
        .bind(serde_json::to_string(alias)?)
        .execute(&self.pool)
        .await;
        conflict_if_taken(result)
    }

    async fn replace_alias(&self, alias: &AliasConfig, expected_revision: &str) -> Result<()> {
        let (Some(function), Some(name), Some(expected)) = (
            exact(&alias.function),
            exact(&alias.name),
            exact(expected_revision),
        ) else {
            return Err(StoreError::Stale);
        };
        let done = sqlx::query(
            "UPDATE aliases SET revision_id = $1, config = $2 WHERE name = $3 AND alias = $4 AND revision_id = $5",
        )
        .bind(&alias.revision_id)
        .bind(serde_json::to_string(alias)?)
        .bind(function)
        .bind(name)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale)
        }
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<AliasConfig>> {
        let (Some(name), Some(alias)) = (exact(name), exact(alias)) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT config FROM aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_json).transpose()
    }

    async fn list_aliases(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasConfig>> {
        let Some(name) = exact(name) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT config FROM aliases WHERE name = $1 AND alias > $2 ORDER BY alias LIMIT $3",
        )
        .bind(name)
        .bind(lower_bound(after.unwrap_or("")))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_json).collect()
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<bool> {
        let (Some(name), Some(alias)) = (exact(name), exact(alias)) else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_provisioned(&self, config: &ProvisionedConfig) -> Result<()> {
        sqlx::query(
            "INSERT INTO provisioned_concurrency (name, qualifier, requested, last_modified) VALUES ($1, $2, $3, $4) \
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
        let (Some(name), Some(qualifier)) = (exact(name), exact(qualifier)) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT name, qualifier, requested, last_modified FROM provisioned_concurrency WHERE name = $1 AND qualifier = $2",
        )
        .bind(name)
        .bind(qualifier)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_provisioned).transpose()
    }

    async fn list_provisioned(&self, name: Option<&str>) -> Result<Vec<ProvisionedConfig>> {
        let name = match name {
            Some(name) => match exact(name) {
                Some(name) => Some(name),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let rows = sqlx::query(
            "SELECT name, qualifier, requested, last_modified FROM provisioned_concurrency \
             WHERE $1::TEXT IS NULL OR name = $1 ORDER BY name, qualifier",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_provisioned).collect()
    }

    async fn delete_provisioned(&self, name: &str, qualifier: &str) -> Result<bool> {
        let (Some(name), Some(qualifier)) = (exact(name), exact(qualifier)) else {
            return Ok(false);
        };
        let done =
            sqlx::query("DELETE FROM provisioned_concurrency WHERE name = $1 AND qualifier = $2")
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
            "INSERT INTO async_events (id, function, qualifier, payload, attempts, enqueued_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        // SKIP LOCKED: rows another node is claiming right now are passed over, not waited
        // for, so each claim gets events no other claim gets. An event whose node's lease
        // ran out goes again, that delivery counting as an attempt.
        let rows = sqlx::query(
            "WITH due AS (\
                 SELECT id FROM async_events \
                 WHERE (NOT inflight AND next_attempt_at <= $1) OR (inflight AND lease_until_ms < $1) \
                 ORDER BY next_attempt_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE async_events AS e SET \
                 attempts = e.attempts + (CASE WHEN e.inflight THEN 1 ELSE 0 END), \
                 last_error = CASE WHEN e.inflight THEN COALESCE(e.last_error, convert_to($5, 'UTF8')) ELSE e.last_error END, \
                 inflight = TRUE, lease_owner = $3, lease_until_ms = $4 \
             FROM due WHERE e.id = due.id \
             RETURNING e.id, e.function, e.qualifier, e.payload, e.attempts, e.enqueued_at, \
                 e.last_error, e.next_attempt_at, e.seq",
        )
        .bind(now)
        .bind(sql_limit(limit))
        .bind(owner)
        .bind(lease_until)
        .bind("the node delivering it stopped")
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
            "UPDATE async_events SET lease_until_ms = $1 WHERE inflight AND lease_owner = $2",
        )
        .bind(lease_until)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_event_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN inflight THEN lease_until_ms ELSE next_attempt_at END) AS due \
             FROM async_events",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    async fn complete_event(&self, id: &str) -> Result<()> {
        let Some(id) = exact(id) else { return Ok(()) };
        sqlx::query("DELETE FROM async_events WHERE id = $1")
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
        let Some(id) = exact(id) else { return Ok(()) };
        sqlx::query(
            "UPDATE async_events SET inflight = FALSE, attempts = $1, next_attempt_at = $2, \
             last_error = COALESCE($3, last_error) WHERE id = $4",
        )
        .bind(i64::from(attempts))
        .bind(due_at)
        .bind(error.map(str::as_bytes))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let event = &letter.event;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO dead_letters (id, function, qualifier, payload, condition, attempts, error, enqueued_at, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET function = excluded.function, qualifier = excluded.qualifier, \
                 payload = excluded.payload, condition = excluded.condition, attempts = excluded.attempts, \
                 error = excluded.error, enqueued_at = excluded.enqueued_at, failed_at = excluded.failed_at",
        )
        .bind(&event.id)
        .bind(&event.function)
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(&letter.condition)
        .bind(i64::from(event.attempts))
        .bind(event.last_error.as_deref().map(str::as_bytes))
        .bind(event.enqueued_at)
        .bind(letter.failed_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM async_events WHERE id = $1")
            .bind(&event.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn requeue_inflight(&self, owner: &str) -> Result<u64> {
        // Only this node's (and those of a server from before leases): other nodes' events
        // are theirs while their leases hold.
        let done = sqlx::query(
            "UPDATE async_events SET inflight = FALSE, attempts = attempts + 1, lease_owner = NULL, \
             lease_until_ms = NULL, last_error = COALESCE(last_error, convert_to($1, 'UTF8')) \
             WHERE inflight AND (lease_owner = $2 OR lease_owner IS NULL)",
        )
        .bind(STOPPED_DURING_DELIVERY)
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
        let function = match function {
            Some(function) => match exact(function) {
                Some(function) => Some(function),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters \
             WHERE $1::TEXT IS NULL OR function = $1 ORDER BY failed_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(function)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_dead_letter).collect()
    }

    async fn take_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>> {
        let Some(id) = exact(id) else {
            return Ok(None);
        };
        let sql = format!("DELETE FROM dead_letters WHERE id = $1 RETURNING {DEAD_LETTER_COLUMNS}");
        let row = sqlx::query(&sql)
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
            "INSERT INTO schedules (name, function, config, next_fire_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&schedule.name)
        .bind(&schedule.function)
        .bind(serde_json::to_string(schedule)?)
        .bind(schedule.next_fire_ms)
        .execute(&self.pool)
        .await;
        conflict_if_taken(result)
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT config FROM schedules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_json).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let Some(name) = exact(name) else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_schedule(&self, schedule: &Schedule) -> Result<()> {
        let Some(name) = exact(&schedule.name) else {
            return Ok(());
        };
        sqlx::query("UPDATE schedules SET config = $1, next_fire_ms = $2 WHERE name = $3")
            .bind(serde_json::to_string(schedule)?)
            .bind(schedule.next_fire_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn fire_schedule(&self, schedule: &Schedule, event: &AsyncEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Compare and swap: only the node that moves the schedule on from this fire's
        // time enqueues it (the event may be delivered and gone before another node looks).
        let moved = sqlx::query(
            "UPDATE schedules SET config = $1, next_fire_ms = $2 \
             WHERE name = $3 AND next_fire_ms IS NOT DISTINCT FROM $4",
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
            "INSERT INTO async_events (id, function, qualifier, payload, attempts, enqueued_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.function)
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(event.enqueued_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_with_a_nul_matches_nothing_and_bounds_as_its_prefix() {
        assert_eq!(exact("f"), Some("f"));
        assert_eq!(exact("f\0g"), None);
        assert_eq!(lower_bound("f\0g"), "f");
        assert_eq!(lower_bound("\0"), "");
        assert_eq!(lower_bound("fg"), "fg");
    }
}
