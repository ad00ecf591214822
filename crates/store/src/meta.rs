//! Function metadata: the [`MetadataStore`] interface, one module per backend (`sqlite`,
//! `postgres`), and what the backends share (embedded migrations).

use std::borrow::Cow;

use async_trait::async_trait;
use nimbus_core::schedule::Schedule;
use nimbus_core::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, ProvisionedConfig,
    Scaling, UrlConfig,
};
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use crate::Result;

mod postgres;
mod sqlite;

pub use postgres::{open_postgres, PostgresMetadata};
pub use sqlite::{open_sqlite, SqliteMetadata};

/// Stores function records. Every backend implements it with the same results and the same
/// errors, which `tests/conformance.rs` checks on each.
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
    /// Claims up to `limit` events due by `now` (epoch ms): they are marked in flight, and
    /// returned earliest due first (ties first come, first served). Concurrent claims, from
    /// this node or another sharing the store, never return the same event.
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
    /// Puts back events left in flight by a stopped server, counting that as an attempt.
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
