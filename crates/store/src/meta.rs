//! Function metadata: the [`MetadataStore`] interface and its SQLite backend.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use nimbus_core::schedule::Schedule;
use nimbus_core::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, ProvisionedConfig,
    Scaling, UrlConfig,
};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::{Result, StoreError};

/// Stores function records. Every backend (SQLite, later Postgres) implements this.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Adds a new function; [`StoreError::Conflict`] if the name is taken.
    async fn insert_function(&self, config: &FunctionConfig) -> Result<()>;
    /// The function named `name`, if any.
    async fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>>;
    /// Replaces a function whose stored revision is `expected_revision`;
    /// [`StoreError::Stale`] if it changed meanwhile or is gone.
    async fn replace_function(
        &self,
        config: &FunctionConfig,
        expected_revision: &str,
    ) -> Result<()>;
    /// Removes function `name` and everything that hangs off it (versions, aliases, URLs,
    /// provisioned concurrency, event-invoke configs, queued events, schedules), in one
    /// transaction; whether it existed.
    async fn delete_function(&self, name: &str) -> Result<bool>;
    /// Up to `limit` functions whose names sort after `after`, in name order.
    async fn list_functions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>>;
    /// How many functions exist and the bytes of code they hold.
    async fn usage(&self) -> Result<(u64, u64)>;
    /// The hex SHA-256 of every code package a function's `$LATEST` or one of its
    /// published versions uses: what the code collector must keep.
    async fn referenced_code(&self) -> Result<std::collections::HashSet<String>>;
    /// The scheduling settings of function `name`, if it exists.
    async fn get_scaling(&self, name: &str) -> Result<Option<Scaling>>;
    /// Sets function `name`'s reserved concurrency; whether the function exists.
    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<u32>) -> Result<bool>;
    /// Sets function `name`'s keep-alive override; whether the function exists.
    async fn set_keep_alive(&self, name: &str, seconds: Option<u32>) -> Result<bool>;
    /// Concurrency reserved by all functions but `except`.
    async fn reserved_total(&self, except: Option<&str>) -> Result<u64>;
    /// Stores `config` as the function's next version number, given to it and returned.
    /// Numbers are never reused, even after a version is deleted.
    async fn publish_version(&self, config: &FunctionConfig) -> Result<FunctionConfig>;
    /// Published version `version` of function `name`.
    async fn get_version(&self, name: &str, version: u64) -> Result<Option<FunctionConfig>>;
    /// Up to `limit` versions numbered above `after`, in order.
    async fn list_versions(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>>;
    /// The highest published version, if any.
    async fn last_published(&self, name: &str) -> Result<Option<FunctionConfig>>;
    /// Removes one version; whether it existed.
    async fn delete_version(&self, name: &str, version: u64) -> Result<bool>;
    /// Adds an alias; [`StoreError::Conflict`] if the name is taken.
    async fn insert_alias(&self, alias: &AliasConfig) -> Result<()>;
    /// Replaces an alias whose stored revision is `expected_revision`; else [`StoreError::Stale`].
    async fn replace_alias(&self, alias: &AliasConfig, expected_revision: &str) -> Result<()>;
    /// Alias `alias` of function `name`.
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<AliasConfig>>;
    /// Up to `limit` aliases of `name` sorting after `after`.
    async fn list_aliases(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasConfig>>;
    /// Removes an alias; whether it existed.
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<bool>;
    /// Creates or replaces a provisioned-concurrency configuration.
    async fn put_provisioned(&self, config: &ProvisionedConfig) -> Result<()>;
    /// The provisioned-concurrency configuration of `name` at `qualifier`.
    async fn get_provisioned(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConfig>>;
    /// Every provisioned-concurrency configuration (of `name`, if given).
    async fn list_provisioned(&self, name: Option<&str>) -> Result<Vec<ProvisionedConfig>>;
    /// Removes one; whether it existed.
    async fn delete_provisioned(&self, name: &str, qualifier: &str) -> Result<bool>;
    /// Creates or replaces a function URL; with `must_be_new`, [`StoreError::Conflict`] if
    /// one exists.
    async fn put_url(&self, url: &UrlConfig, must_be_new: bool) -> Result<()>;
    /// The URL of `name` at `qualifier` (`None`: unqualified).
    async fn get_url(&self, name: &str, qualifier: Option<&str>) -> Result<Option<UrlConfig>>;
    /// Every URL of `name`.
    async fn list_urls(&self, name: &str) -> Result<Vec<UrlConfig>>;
    /// Removes a URL; whether it existed.
    async fn delete_url(&self, name: &str, qualifier: Option<&str>) -> Result<bool>;
    /// Stores an accepted async event, due at once. Durable when this returns.
    async fn enqueue_event(&self, event: &AsyncEvent, due_at: i64) -> Result<()>;
    /// Claims for node `owner` up to `limit` events due by `now` (epoch ms), with a lease
    /// until `lease_until`: queued ones, and in-flight ones whose lease ran out (their node
    /// died; that delivery counts as an attempt). No two nodes hold one event's lease.
    async fn claim_due_events(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<AsyncEvent>>;
    /// Extends the leases `owner` holds to `lease_until` (it is still delivering them).
    async fn renew_leases(&self, owner: &str, lease_until: i64) -> Result<u64>;
    /// When the next event is due (or the next lease runs out), epoch ms.
    async fn next_event_due(&self) -> Result<Option<i64>>;
    /// Removes a delivered event.
    async fn complete_event(&self, id: &str) -> Result<()>;
    /// Puts an event back in the queue, due at `due_at`, with its attempts and last error.
    async fn retry_event(
        &self,
        id: &str,
        attempts: u32,
        due_at: i64,
        error: Option<&str>,
    ) -> Result<()>;
    /// Moves an event to the dead letters.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()>;
    /// Puts back the events node `owner` left in flight when it stopped (and those of a
    /// server from before leases), counting that as an attempt; other nodes' are theirs.
    async fn requeue_inflight(&self, owner: &str) -> Result<u64>;
    /// Queued events and the age of the oldest, ms.
    async fn queue_depth(&self, now: i64) -> Result<(u64, i64)>;
    /// Dead letters (of `function`, if given), oldest first.
    async fn list_dead_letters(&self, function: Option<&str>) -> Result<Vec<DeadLetter>>;
    /// Removes a dead letter; it, if it existed.
    async fn take_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>>;
    /// Sets a function's (or qualifier's) async settings.
    async fn put_event_config(&self, config: &EventInvokeConfig) -> Result<()>;
    /// The async settings of `name` at `qualifier`.
    async fn get_event_config(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<EventInvokeConfig>>;
    /// Every async setting of `name`.
    async fn list_event_configs(&self, name: &str) -> Result<Vec<EventInvokeConfig>>;
    /// Removes async settings; whether they existed.
    async fn delete_event_config(&self, name: &str, qualifier: Option<&str>) -> Result<bool>;
    /// Adds a schedule; [`StoreError::Conflict`] if the name is taken.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<()>;
    /// Every schedule, by name.
    async fn list_schedules(&self) -> Result<Vec<Schedule>>;
    /// Removes a schedule; whether it existed.
    async fn delete_schedule(&self, name: &str) -> Result<bool>;
    /// Records a schedule's new state (next fire, last fire) without firing it.
    async fn update_schedule(&self, schedule: &Schedule) -> Result<()>;
    /// Fires a schedule in one transaction: enqueues `event` (ignored if an event with its
    /// id exists, so a fire is never doubled) and stores the schedule's new state.
    async fn fire_schedule(&self, schedule: &Schedule, event: &AsyncEvent) -> Result<()>;
}

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
        include_str!("../migrations/sqlite/0001_functions.sql"),
    ),
    (
        2,
        "scaling",
        include_str!("../migrations/sqlite/0002_scaling.sql"),
    ),
    (
        3,
        "versions and aliases",
        include_str!("../migrations/sqlite/0003_versions_aliases.sql"),
    ),
    (
        4,
        "provisioned concurrency",
        include_str!("../migrations/sqlite/0004_provisioned.sql"),
    ),
    (
        5,
        "function urls",
        include_str!("../migrations/sqlite/0005_function_urls.sql"),
    ),
    (
        6,
        "async events",
        include_str!("../migrations/sqlite/0006_async_events.sql"),
    ),
    (
        7,
        "schedules",
        include_str!("../migrations/sqlite/0007_schedules.sql"),
    ),
    (
        8,
        "nodes",
        include_str!("../migrations/sqlite/0008_nodes.sql"),
    ),
    (
        9,
        "event leases",
        include_str!("../migrations/sqlite/0009_event_leases.sql"),
    ),
    (
        10,
        "changes",
        include_str!("../migrations/sqlite/0010_changes.sql"),
    ),
];

/// The embedded migrations, as sqlx's migrator reads them.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<
        's,
        std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

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

/// Tables of JSON configurations keyed by function name and qualifier ('' for none).
#[derive(Clone, Copy)]
enum QualifiedTable {
    FunctionUrls,
    EventInvokeConfigs,
}

impl QualifiedTable {
    fn name(self) -> &'static str {
        match self {
            QualifiedTable::FunctionUrls => "function_urls",
            QualifiedTable::EventInvokeConfigs => "event_invoke_configs",
        }
    }
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
        // One statement: SQLite runs it under the database's write lock, so two nodes
        // never claim one event.
        let rows = sqlx::query(
            "UPDATE async_events SET \
               attempts = attempts + inflight, \
               last_error = CASE WHEN inflight = 1 THEN COALESCE(last_error, 'the node delivering it stopped') ELSE last_error END, \
               inflight = 1, lease_owner = ?1, lease_until_ms = ?3 \
             WHERE id IN (SELECT id FROM async_events \
               WHERE (inflight = 0 AND next_attempt_at <= ?2) OR (inflight = 1 AND lease_until_ms < ?2) \
               ORDER BY next_attempt_at LIMIT ?4) \
             RETURNING id, function, qualifier, payload, attempts, enqueued_at, last_error",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event).collect()
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
        sqlx::query("UPDATE schedules SET config = ?, next_fire_ms = ? WHERE name = ?")
            .bind(serde_json::to_string(schedule)?)
            .bind(schedule.next_fire_ms)
            .bind(&schedule.name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, sha: &str) -> FunctionConfig {
        let spec = nimbus_core::validate::SpecPatch {
            runtime: Some("python3.11".into()),
            handler: Some("app.handler".into()),
            role: Some("arn:aws:iam::123456789012:role/r".into()),
            ..Default::default()
        }
        .into_new_spec()
        .expect("spec");
        FunctionConfig {
            name: name.into(),
            version: "$LATEST".into(),
            spec,
            code_sha256_hex: sha.into(),
            code_size: 1,
            code_unzipped_size: 1,
            revision_id: uuid::Uuid::new_v4().to_string(),
            last_modified: String::new(),
        }
    }

    fn event(id: &str) -> AsyncEvent {
        AsyncEvent {
            id: id.into(),
            function: "f".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            attempts: 0,
            enqueued_at: 0,
            last_error: None,
        }
    }

    #[tokio::test]
    async fn a_leased_event_is_one_nodes_until_its_lease_runs_out() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = SqliteMetadata::open(&dir.path().join("nimbus.db"))
            .await
            .expect("open");
        meta.insert_function(&config("f", "v1")).await.expect("f");
        for id in ["e1", "e2"] {
            meta.enqueue_event(&event(id), 100).await.expect("enqueue");
        }
        let a = meta.claim_due_events("a", 100, 1_000, 1).await.expect("a");
        assert_eq!(a.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1"]);
        let b = meta.claim_due_events("b", 200, 1_200, 10).await.expect("b");
        assert_eq!(b.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e2"]);
        // Leases held: nothing to claim, and the next thing due is the first to run out.
        assert!(meta
            .claim_due_events("c", 900, 2_000, 10)
            .await
            .expect("c")
            .is_empty());
        assert_eq!(meta.next_event_due().await.expect("due"), Some(1_000));
        // a lives on (renews); b dies: its event goes to c, as a further attempt.
        assert_eq!(meta.renew_leases("a", 5_000).await.expect("renew"), 1);
        let c = meta
            .claim_due_events("c", 1_300, 9_000, 10)
            .await
            .expect("c");
        assert_eq!(c.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e2"]);
        assert_eq!(
            c[0].attempts, 1,
            "the dead node's delivery counts as an attempt"
        );
        assert_eq!(
            meta.renew_leases("b", 99_000).await.expect("renew"),
            0,
            "b holds nothing now"
        );
        // A restarting node re-queues only its own.
        assert_eq!(meta.requeue_inflight("a").await.expect("requeue"), 1);
        let again = meta
            .claim_due_events("a", 1_400, 9_000, 10)
            .await
            .expect("a");
        assert_eq!(
            again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e1"]
        );
        assert!(
            meta.claim_due_events("d", 8_000, 9_000, 10)
                .await
                .expect("d")
                .is_empty(),
            "c's lease holds"
        );
    }

    #[tokio::test]
    async fn referenced_code_is_latest_and_every_published_version() {
        let dir = tempfile::tempdir().expect("tmp");
        let meta = SqliteMetadata::open(&dir.path().join("nimbus.db"))
            .await
            .expect("open");
        let first = config("f", "v1");
        meta.insert_function(&first).await.expect("insert");
        meta.publish_version(&first).await.expect("publish");
        let second = FunctionConfig {
            code_sha256_hex: "latest".into(),
            revision_id: "r2".into(),
            ..first.clone()
        };
        meta.replace_function(&second, &first.revision_id)
            .await
            .expect("update");
        meta.insert_function(&config("g", "other"))
            .await
            .expect("insert");
        let expected = |shas: &[&str]| shas.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            meta.referenced_code().await.expect("list"),
            expected(&["v1", "latest", "other"])
        );
        meta.delete_function("f").await.expect("delete");
        assert_eq!(
            meta.referenced_code().await.expect("list"),
            expected(&["other"])
        );
    }
}
