//! The metadata conformance suite: each case is written once against `&dyn MetadataStore`
//! and run on every backend — SQLite always, PostgreSQL when `NIMBUS_TEST_POSTGRES_URL`
//! names a database (`scripts/test` starts a throwaway one). Same results, same errors.
//!
//! Every test gets a database of its own (a fresh SQLite file; a fresh PostgreSQL schema),
//! so tests run in parallel. "Two nodes" cases open the same database twice, as two
//! servers sharing it would.

use std::collections::{BTreeSet, HashSet};

use nimbus_core::schedule::Schedule;
use nimbus_core::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, ProvisionedConfig,
    UrlConfig,
};
use nimbus_store::{
    ChangeFeed, MetadataStore, NodeBeat, NodeStore, PostgresMetadata, SqliteMetadata, StoreError,
};

/// The node the single-node cases claim events as.
const NODE: &str = "node-a";
/// A lease no single-node case outlives, ms.
const LEASE: i64 = 1_000_000;

/// Everything a metadata backend implements.
trait Store: MetadataStore + NodeStore + ChangeFeed {}
impl<T: MetadataStore + NodeStore + ChangeFeed> Store for T {}

/// The variable that names the PostgreSQL database the PostgreSQL cases run in.
const POSTGRES_URL: &str = "NIMBUS_TEST_POSTGRES_URL";

/// A database of one test's own, on one backend.
enum Database {
    /// A SQLite file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A schema of its own in the PostgreSQL database at `url`; `store_url` selects it.
    Postgres {
        url: String,
        schema: String,
        store_url: String,
    },
}

impl Database {
    fn sqlite() -> Database {
        Database::Sqlite(tempfile::tempdir().expect("temporary directory"))
    }

    /// A fresh schema, or `None` (the case is skipped) when no PostgreSQL is configured.
    async fn postgres() -> Option<Database> {
        let Ok(url) = std::env::var(POSTGRES_URL) else {
            eprintln!("skipped: {POSTGRES_URL} is not set (scripts/test starts a PostgreSQL)");
            return None;
        };
        let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&url).await.expect("connect");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let separator = if url.contains('?') { '&' } else { '?' };
        let store_url = format!("{url}{separator}options[search_path]={schema}");
        Some(Database::Postgres {
            url,
            schema,
            store_url,
        })
    }

    /// A store on this database, as one more node would open it.
    async fn open(&self) -> Box<dyn Store> {
        match self {
            Database::Sqlite(dir) => Box::new(
                SqliteMetadata::open(&dir.path().join("nimbus.db"))
                    .await
                    .expect("open sqlite"),
            ),
            Database::Postgres { store_url, .. } => Box::new(
                PostgresMetadata::open(store_url)
                    .await
                    .expect("open postgres"),
            ),
        }
    }

    /// Removes the database (the SQLite directory goes when dropped).
    async fn remove(self) {
        if let Database::Postgres { url, schema, .. } = self {
            let admin = sqlx::PgPool::connect(&url).await.expect("connect");
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .expect("drop schema");
            admin.close().await;
        }
    }
}

/// Runs each case on each backend: `single` cases get one store, `pair` cases two stores
/// on one database.
macro_rules! conformance {
    (single: [$($single:ident),* $(,)?], pair: [$($pair:ident),* $(,)?] $(,)?) => {
        conformance!(@backend sqlite, Some(Database::sqlite()), [$($single),*], [$($pair),*]);
        conformance!(@backend postgres, Database::postgres().await, [$($single),*], [$($pair),*]);
    };
    (@backend $backend:ident, $database:expr, [$($single:ident),*], [$($pair:ident),*]) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $single() {
                    let Some(database) = $database else { return };
                    let store = database.open().await;
                    super::cases::$single(&*store).await;
                    drop(store);
                    database.remove().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $pair() {
                    let Some(database) = $database else { return };
                    let (a, b) = (database.open().await, database.open().await);
                    super::cases::$pair(&*a, &*b).await;
                    drop((a, b));
                    database.remove().await;
                }
            )*
        }
    };
}

conformance! {
    single: [
        a_taken_function_name_is_a_conflict,
        replacing_a_function_is_a_compare_and_swap_on_its_revision,
        functions_list_in_byte_order_and_page_after_a_marker,
        usage_counts_functions_and_their_code_bytes,
        deleting_a_function_removes_everything_that_hangs_off_it,
        scaling_settings_leave_the_revision_alone_and_reserved_concurrency_adds_up,
        referenced_code_is_latest_and_every_published_version,
        version_numbers_count_up_and_are_never_reused,
        aliases_conflict_on_a_taken_name_and_swap_on_their_revision,
        provisioned_configs_are_upserted_and_listed_by_function_and_qualifier,
        a_url_must_be_new_only_when_asked,
        event_invoke_configs_are_kept_per_qualifier,
        due_events_are_claimed_once_in_due_order,
        a_retried_event_comes_back_with_its_attempts_and_last_error,
        dead_letters_leave_the_queue_and_can_be_taken_back_once,
        a_restart_requeues_events_left_in_flight_counting_an_attempt,
        queue_rows_need_their_function_and_a_unique_id,
        a_taken_schedule_name_is_a_conflict_and_updates_keep_their_state,
        a_schedule_fires_once_per_event_id,
        a_key_holding_a_nul_matches_nothing,
        referencing_a_missing_function_is_a_database_error,
        a_tick_delivered_and_gone_is_not_fired_again,
        nodes_heartbeat_are_rewritten_and_leave,
        the_change_feed_says_what_changed_since_a_place,
    ],
    pair: [
        a_leased_event_is_one_nodes_until_its_lease_runs_out,
        two_nodes_claiming_at_once_never_get_the_same_event,
        two_nodes_publishing_at_once_get_distinct_version_numbers,
        two_nodes_firing_the_same_tick_queue_one_event,
        two_nodes_swapping_one_revision_see_one_win,
    ],
}

/// The cases, each written once.
mod cases {
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
            code_size: 100,
            code_unzipped_size: 1000,
            revision_id: uuid::Uuid::new_v4().to_string(),
            last_modified: "2026-11-30T12:00:00.000+0000".into(),
        }
    }

    async fn function(store: &dyn MetadataStore, name: &str) -> FunctionConfig {
        let config = config(name, &format!("sha-{name}"));
        store.insert_function(&config).await.expect("insert");
        config
    }

    fn alias(function: &str, name: &str, version: &str) -> AliasConfig {
        AliasConfig {
            name: name.into(),
            function: function.into(),
            function_version: version.into(),
            description: "a \"quoted\" description \u{0} with a NUL".into(),
            additional_version_weights: Default::default(),
            revision_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    fn url(function: &str, qualifier: Option<&str>, auth: &str) -> UrlConfig {
        UrlConfig {
            function: function.into(),
            qualifier: qualifier.map(str::to_owned),
            auth_type: auth.into(),
            cors: Some(serde_json::json!({"AllowOrigins": ["*"], "MaxAge": 60})),
            invoke_mode: "BUFFERED".into(),
            creation_time: "2026-11-30T12:00:00.000+0000".into(),
            last_modified_time: "2026-11-30T12:00:00.000+0000".into(),
        }
    }

    fn event_config(function: &str, qualifier: Option<&str>, retries: u32) -> EventInvokeConfig {
        EventInvokeConfig {
            function: function.into(),
            qualifier: qualifier.map(str::to_owned),
            maximum_retry_attempts: retries,
            maximum_event_age_s: 3600,
            on_success: None,
            on_failure: Some("arn:aws:lambda:us-east-1:123456789012:function:dlq".into()),
            last_modified: 1_764_504_000.125,
        }
    }

    fn event(id: &str, function: &str, enqueued_at: i64) -> AsyncEvent {
        AsyncEvent {
            id: id.into(),
            function: function.into(),
            qualifier: Some("live".into()),
            payload: format!("{{\"id\":\"{id}\",\"bytes\":\"\u{0}\u{ff}\"}}").into_bytes(),
            attempts: 0,
            enqueued_at,
            last_error: None,
        }
    }

    fn schedule(name: &str, function: &str, next_fire_ms: i64) -> Schedule {
        Schedule {
            name: name.into(),
            function: function.into(),
            expression: "rate(1 minute)".into(),
            payload: serde_json::json!({"tick": true}),
            enabled: true,
            created_ms: 1_000,
            next_fire_ms: Some(next_fire_ms),
            last_fire_ms: None,
        }
    }

    fn names(configs: &[FunctionConfig]) -> Vec<&str> {
        configs.iter().map(|c| c.name.as_str()).collect()
    }

    fn ids(events: &[AsyncEvent]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    pub async fn a_taken_function_name_is_a_conflict(store: &dyn MetadataStore) {
        assert_eq!(store.get_function("f").await.expect("get"), None);
        let f = function(store, "f").await;
        assert_eq!(store.get_function("f").await.expect("get"), Some(f.clone()));
        let again = config("f", "other");
        assert!(matches!(
            store.insert_function(&again).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.get_function("f").await.expect("get"), Some(f));
        // Names are case-sensitive: `F` is another function.
        function(store, "F").await;
    }

    pub async fn replacing_a_function_is_a_compare_and_swap_on_its_revision(
        store: &dyn MetadataStore,
    ) {
        let f = function(store, "f").await;
        let update = FunctionConfig {
            code_sha256_hex: "new".into(),
            code_size: 7,
            revision_id: "r2".into(),
            ..f.clone()
        };
        assert!(matches!(
            store.replace_function(&update, "not-the-revision").await,
            Err(StoreError::Stale)
        ));
        assert_eq!(store.get_function("f").await.expect("get"), Some(f.clone()));
        store
            .replace_function(&update, &f.revision_id)
            .await
            .expect("replace");
        assert_eq!(
            store.get_function("f").await.expect("get"),
            Some(update.clone())
        );
        // The old revision no longer matches: a second writer that read it loses.
        let late = FunctionConfig {
            revision_id: "r3".into(),
            ..f.clone()
        };
        assert!(matches!(
            store.replace_function(&late, &f.revision_id).await,
            Err(StoreError::Stale)
        ));
        let missing = config("missing", "x");
        assert!(matches!(
            store.replace_function(&missing, &missing.revision_id).await,
            Err(StoreError::Stale)
        ));
        assert_eq!(store.usage().await.expect("usage"), (1, 7));
    }

    pub async fn functions_list_in_byte_order_and_page_after_a_marker(store: &dyn MetadataStore) {
        // Byte order, as SQLite compares: uppercase before `_` before lowercase, `-` first.
        for name in ["b", "a_b", "B", "ab", "a-b", "Z9", "a", "a0"] {
            function(store, name).await;
        }
        let all = store.list_functions(None, 100).await.expect("list");
        assert_eq!(names(&all), ["B", "Z9", "a", "a-b", "a0", "a_b", "ab", "b"]);
        let first = store.list_functions(None, 3).await.expect("page");
        assert_eq!(names(&first), ["B", "Z9", "a"]);
        let next = store.list_functions(Some("a"), 3).await.expect("page");
        assert_eq!(names(&next), ["a-b", "a0", "a_b"]);
        let last = store.list_functions(Some("a_b"), 3).await.expect("page");
        assert_eq!(names(&last), ["ab", "b"]);
        // A marker need not be a stored name.
        let between = store.list_functions(Some("a1"), 2).await.expect("page");
        assert_eq!(names(&between), ["a_b", "ab"]);
        assert!(store
            .list_functions(Some("c"), 10)
            .await
            .expect("page")
            .is_empty());
        assert!(store
            .list_functions(None, 0)
            .await
            .expect("page")
            .is_empty());
    }

    pub async fn usage_counts_functions_and_their_code_bytes(store: &dyn MetadataStore) {
        assert_eq!(store.usage().await.expect("usage"), (0, 0));
        function(store, "f").await;
        function(store, "g").await;
        assert_eq!(store.usage().await.expect("usage"), (2, 200));
        store.delete_function("f").await.expect("delete");
        assert_eq!(store.usage().await.expect("usage"), (1, 100));
    }

    pub async fn deleting_a_function_removes_everything_that_hangs_off_it(
        store: &dyn MetadataStore,
    ) {
        let f = function(store, "f").await;
        let other = function(store, "fx").await;
        for owner in [&f, &other] {
            let name = owner.name.as_str();
            store.publish_version(owner).await.expect("publish");
            store
                .insert_alias(&alias(name, "live", "1"))
                .await
                .expect("alias");
            store
                .put_provisioned(&ProvisionedConfig {
                    function: name.into(),
                    qualifier: "1".into(),
                    requested: 2,
                    last_modified: "t".into(),
                })
                .await
                .expect("provisioned");
            store
                .put_url(&url(name, None, "NONE"), true)
                .await
                .expect("url");
            store
                .put_event_config(&event_config(name, None, 1))
                .await
                .expect("event config");
            store
                .enqueue_event(&event(&format!("{name}-e"), name, 1), 1)
                .await
                .expect("enqueue");
            store
                .insert_schedule(&schedule(&format!("{name}-plain"), name, 5))
                .await
                .expect("schedule");
            store
                .insert_schedule(&schedule(
                    &format!("{name}-alias"),
                    &format!("{name}:live"),
                    5,
                ))
                .await
                .expect("schedule");
        }
        // Not `f`'s: a name that merely starts with `f`.
        store
            .insert_schedule(&schedule("stranger", "f_x", 5))
            .await
            .expect("schedule");

        assert!(store.delete_function("f").await.expect("delete"));
        assert_eq!(store.get_function("f").await.expect("get"), None);
        assert_eq!(store.get_version("f", 1).await.expect("version"), None);
        assert_eq!(store.get_alias("f", "live").await.expect("alias"), None);
        assert_eq!(store.get_provisioned("f", "1").await.expect("pc"), None);
        assert_eq!(store.get_url("f", None).await.expect("url"), None);
        assert_eq!(store.get_event_config("f", None).await.expect("ec"), None);
        let schedules: Vec<String> = store
            .list_schedules()
            .await
            .expect("schedules")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(schedules, ["fx-alias", "fx-plain", "stranger"]);
        let queued = store
            .claim_due_events(NODE, 10, 10 + LEASE, 10)
            .await
            .expect("claim");
        assert_eq!(ids(&queued), ["fx-e"]);
        // `fx` keeps everything.
        assert!(store.get_version("fx", 1).await.expect("version").is_some());
        assert!(store
            .get_alias("fx", "live")
            .await
            .expect("alias")
            .is_some());
        assert_eq!(store.list_provisioned(None).await.expect("pc").len(), 1);
        assert_eq!(store.list_urls("fx").await.expect("urls").len(), 1);
        assert_eq!(store.list_event_configs("fx").await.expect("ec").len(), 1);

        assert!(!store.delete_function("f").await.expect("delete again"));
        // A new `f` starts from nothing, version numbers included.
        let again = function(store, "f").await;
        assert!(store
            .list_aliases("f", None, 10)
            .await
            .expect("aliases")
            .is_empty());
        let published = store.publish_version(&again).await.expect("publish");
        assert_eq!(published.version, "1");
    }

    pub async fn scaling_settings_leave_the_revision_alone_and_reserved_concurrency_adds_up(
        store: &dyn MetadataStore,
    ) {
        assert_eq!(store.get_scaling("f").await.expect("scaling"), None);
        assert!(!store
            .set_reserved_concurrency("f", Some(1))
            .await
            .expect("set"));
        assert!(!store.set_keep_alive("f", Some(1)).await.expect("set"));
        let f = function(store, "f").await;
        function(store, "g").await;
        function(store, "h").await;
        let scaling = store
            .get_scaling("f")
            .await
            .expect("scaling")
            .expect("some");
        assert_eq!(scaling, nimbus_core::Scaling::default());
        assert!(store
            .set_reserved_concurrency("f", Some(10))
            .await
            .expect("set"));
        assert!(store
            .set_reserved_concurrency("g", Some(5))
            .await
            .expect("set"));
        assert!(store.set_keep_alive("f", Some(600)).await.expect("set"));
        let scaling = store
            .get_scaling("f")
            .await
            .expect("scaling")
            .expect("some");
        assert_eq!(scaling.reserved_concurrency, Some(10));
        assert_eq!(scaling.keep_alive_s, Some(600));
        assert_eq!(store.get_function("f").await.expect("get"), Some(f));
        assert_eq!(store.reserved_total(None).await.expect("total"), 15);
        assert_eq!(store.reserved_total(Some("f")).await.expect("total"), 5);
        assert_eq!(store.reserved_total(Some("h")).await.expect("total"), 15);
        assert_eq!(store.reserved_total(Some("nope")).await.expect("total"), 15);
        assert!(store
            .set_reserved_concurrency("f", None)
            .await
            .expect("set"));
        assert!(store.set_keep_alive("f", None).await.expect("set"));
        assert_eq!(
            store.get_scaling("f").await.expect("scaling"),
            Some(nimbus_core::Scaling::default())
        );
        assert_eq!(store.reserved_total(None).await.expect("total"), 5);
    }

    pub async fn referenced_code_is_latest_and_every_published_version(store: &dyn MetadataStore) {
        assert!(store.referenced_code().await.expect("list").is_empty());
        let first = config("f", "v1");
        store.insert_function(&first).await.expect("insert");
        store.publish_version(&first).await.expect("publish");
        let second = FunctionConfig {
            code_sha256_hex: "latest".into(),
            revision_id: "r2".into(),
            ..first.clone()
        };
        store
            .replace_function(&second, &first.revision_id)
            .await
            .expect("update");
        store
            .insert_function(&config("g", "other"))
            .await
            .expect("insert");
        let expected = |shas: &[&str]| shas.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(
            store.referenced_code().await.expect("list"),
            expected(&["v1", "latest", "other"])
        );
        store.delete_version("f", 1).await.expect("delete");
        assert_eq!(
            store.referenced_code().await.expect("list"),
            expected(&["latest", "other"])
        );
        store.delete_function("f").await.expect("delete");
        assert_eq!(
            store.referenced_code().await.expect("list"),
            expected(&["other"])
        );
    }

    pub async fn version_numbers_count_up_and_are_never_reused(store: &dyn MetadataStore) {
        let missing = config("missing", "x");
        assert!(matches!(
            store.publish_version(&missing).await,
            Err(StoreError::Stale)
        ));
        let f = function(store, "f").await;
        assert_eq!(store.last_published("f").await.expect("last"), None);
        let mut published = Vec::new();
        for sha in ["a", "b", "c"] {
            let snapshot = FunctionConfig {
                code_sha256_hex: sha.into(),
                ..f.clone()
            };
            published.push(store.publish_version(&snapshot).await.expect("publish"));
        }
        let numbers: Vec<&str> = published.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(numbers, ["1", "2", "3"]);
        assert_eq!(published[1].code_sha256_hex, "b");
        assert_eq!(
            store.get_version("f", 2).await.expect("get"),
            Some(published[1].clone())
        );
        assert_eq!(store.get_version("f", 9).await.expect("get"), None);
        assert_eq!(store.get_version("f", u64::MAX).await.expect("get"), None);
        assert_eq!(
            store.last_published("f").await.expect("last"),
            Some(published[2].clone())
        );
        // $LATEST is untouched by publishing.
        assert_eq!(store.get_function("f").await.expect("get"), Some(f.clone()));

        assert!(store.delete_version("f", 3).await.expect("delete"));
        assert!(!store.delete_version("f", 3).await.expect("delete again"));
        assert_eq!(
            store.last_published("f").await.expect("last"),
            Some(published[1].clone())
        );
        let fourth = store.publish_version(&f).await.expect("publish");
        assert_eq!(fourth.version, "4");

        let listed = store.list_versions("f", 0, 100).await.expect("list");
        let listed: Vec<&str> = listed.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(listed, ["1", "2", "4"]);
        let page = store.list_versions("f", 1, 1).await.expect("page");
        assert_eq!(page, [published[1].clone()]);
        let page = store.list_versions("f", 2, 10).await.expect("page");
        assert_eq!(page, [fourth]);
        assert!(store
            .list_versions("f", 4, 10)
            .await
            .expect("page")
            .is_empty());
        assert!(store
            .list_versions("g", 0, 10)
            .await
            .expect("page")
            .is_empty());
    }

    pub async fn aliases_conflict_on_a_taken_name_and_swap_on_their_revision(
        store: &dyn MetadataStore,
    ) {
        function(store, "f").await;
        function(store, "g").await;
        let live = alias("f", "live", "1");
        store.insert_alias(&live).await.expect("insert");
        assert!(matches!(
            store.insert_alias(&alias("f", "live", "2")).await,
            Err(StoreError::Conflict)
        ));
        // The same alias name on another function is another alias.
        store
            .insert_alias(&alias("g", "live", "1"))
            .await
            .expect("insert");
        assert_eq!(
            store.get_alias("f", "live").await.expect("get"),
            Some(live.clone())
        );
        assert_eq!(store.get_alias("f", "Live").await.expect("get"), None);

        let mut shifted = live.clone();
        shifted.function_version = "2".into();
        shifted.additional_version_weights.insert("1".into(), 0.25);
        shifted.revision_id = "r2".into();
        assert!(matches!(
            store.replace_alias(&shifted, "not-the-revision").await,
            Err(StoreError::Stale)
        ));
        store
            .replace_alias(&shifted, &live.revision_id)
            .await
            .expect("replace");
        assert_eq!(
            store.get_alias("f", "live").await.expect("get"),
            Some(shifted.clone())
        );
        assert!(matches!(
            store.replace_alias(&shifted, &live.revision_id).await,
            Err(StoreError::Stale)
        ));
        let ghost = alias("f", "ghost", "1");
        assert!(matches!(
            store.replace_alias(&ghost, &ghost.revision_id).await,
            Err(StoreError::Stale)
        ));

        for name in ["b", "A", "a-1", "a_1"] {
            store
                .insert_alias(&alias("f", name, "1"))
                .await
                .expect("insert");
        }
        let listed = |aliases: Vec<AliasConfig>| -> Vec<String> {
            aliases.into_iter().map(|a| a.name).collect()
        };
        assert_eq!(
            listed(store.list_aliases("f", None, 10).await.expect("list")),
            ["A", "a-1", "a_1", "b", "live"]
        );
        assert_eq!(
            listed(store.list_aliases("f", Some("a-1"), 2).await.expect("page")),
            ["a_1", "b"]
        );
        assert_eq!(
            listed(store.list_aliases("g", None, 10).await.expect("list")),
            ["live"]
        );
        assert!(store.delete_alias("f", "live").await.expect("delete"));
        assert!(!store.delete_alias("f", "live").await.expect("delete again"));
        assert_eq!(store.get_alias("f", "live").await.expect("get"), None);
        assert!(store.get_alias("g", "live").await.expect("get").is_some());
    }

    pub async fn provisioned_configs_are_upserted_and_listed_by_function_and_qualifier(
        store: &dyn MetadataStore,
    ) {
        function(store, "f").await;
        function(store, "e").await;
        let pc = |function: &str, qualifier: &str, requested| ProvisionedConfig {
            function: function.into(),
            qualifier: qualifier.into(),
            requested,
            last_modified: format!("t{requested}"),
        };
        assert_eq!(store.get_provisioned("f", "2").await.expect("get"), None);
        for config in [
            pc("f", "2", 1),
            pc("f", "live", 3),
            pc("f", "10", 2),
            pc("e", "1", 1),
        ] {
            store.put_provisioned(&config).await.expect("put");
        }
        store
            .put_provisioned(&pc("f", "2", 5))
            .await
            .expect("update");
        assert_eq!(
            store.get_provisioned("f", "2").await.expect("get"),
            Some(pc("f", "2", 5))
        );
        assert_eq!(
            store.list_provisioned(Some("f")).await.expect("list"),
            [pc("f", "10", 2), pc("f", "2", 5), pc("f", "live", 3)]
        );
        assert_eq!(
            store.list_provisioned(None).await.expect("list"),
            [
                pc("e", "1", 1),
                pc("f", "10", 2),
                pc("f", "2", 5),
                pc("f", "live", 3)
            ]
        );
        assert!(store
            .list_provisioned(Some("nope"))
            .await
            .expect("list")
            .is_empty());
        assert!(store.delete_provisioned("f", "2").await.expect("delete"));
        assert!(!store
            .delete_provisioned("f", "2")
            .await
            .expect("delete again"));
        assert_eq!(store.get_provisioned("f", "2").await.expect("get"), None);
    }

    pub async fn a_url_must_be_new_only_when_asked(store: &dyn MetadataStore) {
        function(store, "f").await;
        assert_eq!(store.get_url("f", None).await.expect("get"), None);
        store
            .put_url(&url("f", None, "NONE"), true)
            .await
            .expect("put");
        assert!(matches!(
            store.put_url(&url("f", None, "AWS_IAM"), true).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store.get_url("f", None).await.expect("get"),
            Some(url("f", None, "NONE"))
        );
        store
            .put_url(&url("f", None, "AWS_IAM"), false)
            .await
            .expect("replace");
        store
            .put_url(&url("f", Some("live"), "NONE"), false)
            .await
            .expect("put");
        store
            .put_url(&url("f", Some("beta"), "NONE"), true)
            .await
            .expect("put");
        assert_eq!(
            store.get_url("f", None).await.expect("get"),
            Some(url("f", None, "AWS_IAM"))
        );
        assert_eq!(
            store.get_url("f", Some("live")).await.expect("get"),
            Some(url("f", Some("live"), "NONE"))
        );
        assert_eq!(
            store.list_urls("f").await.expect("list"),
            [
                url("f", None, "AWS_IAM"),
                url("f", Some("beta"), "NONE"),
                url("f", Some("live"), "NONE")
            ]
        );
        assert!(store.delete_url("f", Some("live")).await.expect("delete"));
        assert!(!store
            .delete_url("f", Some("live"))
            .await
            .expect("delete again"));
        assert!(store.delete_url("f", None).await.expect("delete"));
        assert_eq!(
            store.list_urls("f").await.expect("list"),
            [url("f", Some("beta"), "NONE")]
        );
    }

    pub async fn event_invoke_configs_are_kept_per_qualifier(store: &dyn MetadataStore) {
        function(store, "f").await;
        assert_eq!(store.get_event_config("f", None).await.expect("get"), None);
        store
            .put_event_config(&event_config("f", None, 2))
            .await
            .expect("put");
        store
            .put_event_config(&event_config("f", None, 0))
            .await
            .expect("replace");
        store
            .put_event_config(&event_config("f", Some("1"), 1))
            .await
            .expect("put");
        assert_eq!(
            store.get_event_config("f", None).await.expect("get"),
            Some(event_config("f", None, 0))
        );
        assert_eq!(
            store.get_event_config("f", Some("1")).await.expect("get"),
            Some(event_config("f", Some("1"), 1))
        );
        assert_eq!(
            store.get_event_config("f", Some("2")).await.expect("get"),
            None
        );
        assert_eq!(
            store.list_event_configs("f").await.expect("list"),
            [event_config("f", None, 0), event_config("f", Some("1"), 1)]
        );
        assert!(store
            .delete_event_config("f", Some("1"))
            .await
            .expect("delete"));
        assert!(!store
            .delete_event_config("f", Some("1"))
            .await
            .expect("delete again"));
        assert_eq!(
            store.list_event_configs("f").await.expect("list"),
            [event_config("f", None, 0)]
        );
    }

    pub async fn due_events_are_claimed_once_in_due_order(store: &dyn MetadataStore) {
        function(store, "f").await;
        assert_eq!(store.next_event_due().await.expect("due"), None);
        assert_eq!(store.queue_depth(1_000).await.expect("depth"), (0, 0));
        // Due times, in enqueue order; `z` and `a` tie and go first come, first served.
        for (id, due) in [
            ("late", 300),
            ("z", 100),
            ("a", 100),
            ("early", 50),
            ("never", 900),
        ] {
            store
                .enqueue_event(&event(id, "f", 10), due)
                .await
                .expect("enqueue");
        }
        assert_eq!(store.next_event_due().await.expect("due"), Some(50));
        assert_eq!(store.queue_depth(110).await.expect("depth"), (5, 100));
        assert!(store
            .claim_due_events(NODE, 49, 49 + LEASE, 10)
            .await
            .expect("claim")
            .is_empty());
        let first = store
            .claim_due_events(NODE, 100, 100 + LEASE, 2)
            .await
            .expect("claim");
        assert_eq!(ids(&first), ["early", "z"]);
        assert_eq!(first[0], event("early", "f", 10));
        let second = store
            .claim_due_events(NODE, 500, 500 + LEASE, 10)
            .await
            .expect("claim");
        assert_eq!(ids(&second), ["a", "late"]);
        assert!(store
            .claim_due_events(NODE, 500, 500 + LEASE, 10)
            .await
            .expect("claim")
            .is_empty());
        // Claimed events still count as queued, but are no longer due.
        assert_eq!(store.next_event_due().await.expect("due"), Some(900));
        assert_eq!(store.queue_depth(110).await.expect("depth"), (5, 100));
        for id in ["early", "z", "a"] {
            store.complete_event(id).await.expect("complete");
        }
        store.complete_event("early").await.expect("complete twice");
        assert_eq!(store.queue_depth(110).await.expect("depth"), (2, 100));
        // The oldest event's age is never negative.
        assert_eq!(store.queue_depth(0).await.expect("depth"), (2, 0));
    }

    pub async fn a_retried_event_comes_back_with_its_attempts_and_last_error(
        store: &dyn MetadataStore,
    ) {
        function(store, "f").await;
        store
            .enqueue_event(&event("e", "f", 10), 10)
            .await
            .expect("enqueue");
        let claimed = store
            .claim_due_events(NODE, 10, 10 + LEASE, 1)
            .await
            .expect("claim");
        assert_eq!(ids(&claimed), ["e"]);
        // A function's error may hold anything, a NUL included.
        let error = "{\"errorMessage\":\"boom\u{0}\"}";
        store
            .retry_event("e", 1, 2_000, Some(error))
            .await
            .expect("retry");
        assert_eq!(store.next_event_due().await.expect("due"), Some(2_000));
        assert!(store
            .claim_due_events(NODE, 1_999, 1_999 + LEASE, 1)
            .await
            .expect("claim")
            .is_empty());
        let again = store
            .claim_due_events(NODE, 2_000, 2_000 + LEASE, 1)
            .await
            .expect("claim");
        let expected = AsyncEvent {
            attempts: 1,
            last_error: Some(error.into()),
            ..event("e", "f", 10)
        };
        assert_eq!(again, std::slice::from_ref(&expected));
        // A retry without an error (a throttle) keeps the last one.
        store.retry_event("e", 1, 3_000, None).await.expect("retry");
        assert_eq!(
            store
                .claim_due_events(NODE, 3_000, 3_000 + LEASE, 1)
                .await
                .expect("claim"),
            [expected]
        );
        store
            .retry_event("unknown", 1, 1, None)
            .await
            .expect("retry");
    }

    pub async fn dead_letters_leave_the_queue_and_can_be_taken_back_once(
        store: &dyn MetadataStore,
    ) {
        function(store, "f").await;
        function(store, "g").await;
        for (id, function) in [("e1", "f"), ("e2", "g"), ("e3", "f")] {
            store
                .enqueue_event(&event(id, function, 10), 10)
                .await
                .expect("enqueue");
        }
        store
            .claim_due_events(NODE, 10, 10 + LEASE, 10)
            .await
            .expect("claim");
        let letter = |id: &str, function: &str, failed_at| DeadLetter {
            event: AsyncEvent {
                attempts: 3,
                last_error: Some("Unhandled \u{0}".into()),
                ..event(id, function, 10)
            },
            condition: "RetriesExhausted".into(),
            failed_at,
        };
        store
            .dead_letter(&letter("e3", "f", 500))
            .await
            .expect("dead");
        store
            .dead_letter(&letter("e2", "g", 400))
            .await
            .expect("dead");
        store
            .dead_letter(&letter("e1", "f", 500))
            .await
            .expect("dead");
        assert_eq!(store.queue_depth(10).await.expect("depth"), (0, 0));
        assert_eq!(
            store.list_dead_letters(None).await.expect("list"),
            [
                letter("e2", "g", 400),
                letter("e1", "f", 500),
                letter("e3", "f", 500)
            ]
        );
        assert_eq!(
            store.list_dead_letters(Some("f")).await.expect("list"),
            [letter("e1", "f", 500), letter("e3", "f", 500)]
        );
        assert!(store
            .list_dead_letters(Some("h"))
            .await
            .expect("list")
            .is_empty());
        // Dead-lettering the same event again replaces its letter.
        let replaced = DeadLetter {
            condition: "EventAgeExceeded".into(),
            ..letter("e1", "f", 600)
        };
        store.dead_letter(&replaced).await.expect("dead again");
        assert_eq!(
            store.list_dead_letters(Some("f")).await.expect("list"),
            [letter("e3", "f", 500), replaced.clone()]
        );

        // Redrive: the letter is taken once, and its event queued afresh.
        assert_eq!(
            store.take_dead_letter("e1").await.expect("take"),
            Some(replaced.clone())
        );
        assert_eq!(
            store.take_dead_letter("e1").await.expect("take again"),
            None
        );
        let fresh = AsyncEvent {
            attempts: 0,
            enqueued_at: 700,
            last_error: None,
            ..replaced.event
        };
        store.enqueue_event(&fresh, 700).await.expect("requeue");
        assert_eq!(
            store
                .claim_due_events(NODE, 700, 700 + LEASE, 10)
                .await
                .expect("claim"),
            [fresh]
        );
        assert_eq!(store.list_dead_letters(None).await.expect("list").len(), 2);
    }

    pub async fn a_restart_requeues_events_left_in_flight_counting_an_attempt(
        store: &dyn MetadataStore,
    ) {
        function(store, "f").await;
        for id in ["quiet", "failed", "waiting"] {
            store
                .enqueue_event(&event(id, "f", 10), 10)
                .await
                .expect("enqueue");
        }
        assert_eq!(store.requeue_inflight(NODE).await.expect("requeue"), 0);
        store
            .claim_due_events(NODE, 10, 10 + LEASE, 2)
            .await
            .expect("claim");
        store
            .retry_event("failed", 1, 10, Some("first failure"))
            .await
            .expect("retry");
        store
            .claim_due_events(NODE, 10, 10 + LEASE, 1)
            .await
            .expect("claim failed");
        assert_eq!(store.requeue_inflight(NODE).await.expect("requeue"), 2);
        assert_eq!(
            store.requeue_inflight(NODE).await.expect("requeue again"),
            0
        );
        let back = store
            .claim_due_events(NODE, 10, 10 + LEASE, 10)
            .await
            .expect("claim");
        assert_eq!(
            back,
            [
                AsyncEvent {
                    attempts: 1,
                    last_error: Some("the server stopped during delivery".into()),
                    ..event("quiet", "f", 10)
                },
                AsyncEvent {
                    attempts: 2,
                    last_error: Some("first failure".into()),
                    ..event("failed", "f", 10)
                },
                event("waiting", "f", 10),
            ]
        );
    }

    pub async fn queue_rows_need_their_function_and_a_unique_id(store: &dyn MetadataStore) {
        function(store, "f").await;
        store
            .enqueue_event(&event("e", "f", 10), 10)
            .await
            .expect("enqueue");
        assert!(matches!(
            store.enqueue_event(&event("e", "f", 20), 20).await,
            Err(StoreError::Database(_))
        ));
        assert!(matches!(
            store.enqueue_event(&event("x", "ghost", 10), 10).await,
            Err(StoreError::Database(_))
        ));
        assert_eq!(
            store
                .claim_due_events(NODE, 100, 100 + LEASE, 10)
                .await
                .expect("claim"),
            [event("e", "f", 10)]
        );
    }

    pub async fn a_taken_schedule_name_is_a_conflict_and_updates_keep_their_state(
        store: &dyn MetadataStore,
    ) {
        assert!(store.list_schedules().await.expect("list").is_empty());
        // A schedule may name a function that does not exist (yet).
        for name in ["tick", "Nightly", "a-b"] {
            store
                .insert_schedule(&schedule(name, "f", 60_000))
                .await
                .expect("insert");
        }
        assert!(matches!(
            store.insert_schedule(&schedule("tick", "g", 1)).await,
            Err(StoreError::Conflict)
        ));
        let mut tick = schedule("tick", "f", 60_000);
        tick.next_fire_ms = Some(120_000);
        tick.last_fire_ms = Some(60_000);
        tick.enabled = false;
        store.update_schedule(&tick).await.expect("update");
        store
            .update_schedule(&schedule("ghost", "f", 1))
            .await
            .expect("update of nothing");
        assert_eq!(
            store.list_schedules().await.expect("list"),
            [
                schedule("Nightly", "f", 60_000),
                schedule("a-b", "f", 60_000),
                tick
            ]
        );
        assert!(store.delete_schedule("tick").await.expect("delete"));
        assert!(!store.delete_schedule("tick").await.expect("delete again"));
        assert_eq!(store.list_schedules().await.expect("list").len(), 2);
    }

    pub async fn a_schedule_fires_once_per_event_id(store: &dyn MetadataStore) {
        function(store, "f").await;
        let mut tick = schedule("tick", "f", 60_000);
        store.insert_schedule(&tick).await.expect("insert");
        let fire = |at: i64| AsyncEvent {
            id: format!("tick-{at}"),
            attempts: 7,
            last_error: Some("ignored".into()),
            ..event("unused", "f", at)
        };
        tick.last_fire_ms = Some(60_000);
        tick.next_fire_ms = Some(120_000);
        store
            .fire_schedule(&tick, &fire(60_000))
            .await
            .expect("fire");
        // The same tick again (a retry, or another node): the event is not doubled.
        store
            .fire_schedule(&tick, &fire(60_000))
            .await
            .expect("refire");
        assert_eq!(store.list_schedules().await.expect("list"), [tick.clone()]);
        assert_eq!(store.next_event_due().await.expect("due"), Some(60_000));
        let fired = store
            .claim_due_events(NODE, 60_000, 60_000 + LEASE, 10)
            .await
            .expect("claim");
        // A fire is a fresh event due when it was enqueued.
        assert_eq!(
            fired,
            [AsyncEvent {
                attempts: 0,
                last_error: None,
                ..fire(60_000)
            }]
        );
        tick.last_fire_ms = Some(120_000);
        tick.next_fire_ms = Some(180_000);
        store
            .fire_schedule(&tick, &fire(120_000))
            .await
            .expect("fire");
        assert_eq!(
            store.queue_depth(120_000).await.expect("depth"),
            (2, 60_000)
        );
        assert_eq!(store.list_schedules().await.expect("list"), [tick]);
    }

    pub async fn a_key_holding_a_nul_matches_nothing(store: &dyn MetadataStore) {
        let f = function(store, "f").await;
        function(store, "g").await;
        store.publish_version(&f).await.expect("publish");
        store
            .insert_alias(&alias("f", "live", "1"))
            .await
            .expect("alias");
        let nul = "f\0";
        assert_eq!(store.get_function(nul).await.expect("get"), None);
        assert_eq!(store.get_scaling(nul).await.expect("scaling"), None);
        assert!(!store.set_keep_alive(nul, Some(1)).await.expect("set"));
        assert!(!store
            .set_reserved_concurrency(nul, Some(1))
            .await
            .expect("set"));
        assert_eq!(store.get_version(nul, 1).await.expect("version"), None);
        assert!(store
            .list_versions(nul, 0, 10)
            .await
            .expect("list")
            .is_empty());
        assert_eq!(store.get_alias("f", "live\0").await.expect("alias"), None);
        assert!(store
            .list_aliases(nul, None, 10)
            .await
            .expect("aliases")
            .is_empty());
        assert_eq!(store.get_url(nul, None).await.expect("url"), None);
        assert_eq!(
            store.get_event_config("f", Some("\0")).await.expect("ec"),
            None
        );
        assert!(store
            .list_provisioned(Some(nul))
            .await
            .expect("pc")
            .is_empty());
        assert!(store
            .list_dead_letters(Some(nul))
            .await
            .expect("dl")
            .is_empty());
        assert_eq!(store.take_dead_letter("e\0").await.expect("take"), None);
        assert!(!store.delete_schedule("s\0").await.expect("delete"));
        assert!(!store.delete_function(nul).await.expect("delete"));
        assert_eq!(store.reserved_total(Some(nul)).await.expect("total"), 0);
        // As a marker it pages like the name before the NUL.
        let after = store
            .list_functions(Some("f\0zzz"), 10)
            .await
            .expect("list");
        assert_eq!(names(&after), ["g"]);
        let after = store.list_functions(Some("\0"), 10).await.expect("list");
        assert_eq!(names(&after), ["f", "g"]);
        assert!(store.get_function("f").await.expect("get").is_some());
    }

    pub async fn referencing_a_missing_function_is_a_database_error(store: &dyn MetadataStore) {
        let database_error = |result: nimbus_store::Result<()>| {
            assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
        };
        database_error(store.insert_alias(&alias("ghost", "live", "1")).await);
        database_error(store.put_url(&url("ghost", None, "NONE"), true).await);
        database_error(store.put_url(&url("ghost", None, "NONE"), false).await);
        database_error(
            store
                .put_event_config(&event_config("ghost", None, 1))
                .await,
        );
        database_error(
            store
                .put_provisioned(&ProvisionedConfig {
                    function: "ghost".into(),
                    qualifier: "1".into(),
                    requested: 1,
                    last_modified: "t".into(),
                })
                .await,
        );
        let tick = schedule("tick", "ghost", 1);
        store.insert_schedule(&tick).await.expect("insert");
        let fired = Schedule {
            last_fire_ms: Some(1),
            next_fire_ms: Some(2),
            ..tick.clone()
        };
        database_error(
            store
                .fire_schedule(&fired, &event("tick-1", "ghost", 1))
                .await,
        );
        // The failed fire changed nothing.
        assert_eq!(store.list_schedules().await.expect("list"), [tick]);
    }

    pub async fn two_nodes_claiming_at_once_never_get_the_same_event(
        a: &dyn MetadataStore,
        b: &dyn MetadataStore,
    ) {
        function(a, "f").await;
        const EVENTS: usize = 60;
        for i in 0..EVENTS {
            a.enqueue_event(&event(&format!("e{i:02}"), "f", 10), 10)
                .await
                .expect("enqueue");
        }
        async fn drain(node: &dyn MetadataStore) -> Vec<String> {
            let mut mine = Vec::new();
            loop {
                let batch = node
                    .claim_due_events(NODE, 10, 10 + LEASE, 3)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|e| e.id));
                tokio::task::yield_now().await;
            }
        }
        let (from_a, from_b, from_a2, from_b2) =
            tokio::join!(drain(a), drain(b), drain(a), drain(b));
        let mut all: Vec<String> = [from_a, from_b, from_a2, from_b2].concat();
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(total, EVENTS, "an event was claimed twice");
        assert_eq!(all.len(), EVENTS, "an event was never claimed");
        // Nothing is queued: the next thing due is the first lease to run out.
        assert_eq!(a.next_event_due().await.expect("due"), Some(10 + LEASE));
    }

    pub async fn two_nodes_publishing_at_once_get_distinct_version_numbers(
        a: &dyn MetadataStore,
        b: &dyn MetadataStore,
    ) {
        let f = function(a, "f").await;
        async fn publish(store: &dyn MetadataStore, f: &FunctionConfig) -> Vec<u64> {
            let mut numbers = Vec::new();
            for _ in 0..5 {
                let v = store.publish_version(f).await.expect("publish");
                numbers.push(v.version.parse::<u64>().expect("number"));
            }
            numbers
        }
        let (x, y) = tokio::join!(publish(a, &f), publish(b, &f));
        let numbers: BTreeSet<u64> = x.iter().chain(&y).copied().collect();
        assert_eq!(numbers, (1..=10).collect());
        let listed = b.list_versions("f", 0, 100).await.expect("list");
        assert_eq!(listed.len(), 10);
    }

    pub async fn two_nodes_firing_the_same_tick_queue_one_event(
        a: &dyn MetadataStore,
        b: &dyn MetadataStore,
    ) {
        function(a, "f").await;
        let mut tick = schedule("tick", "f", 1_000);
        a.insert_schedule(&tick).await.expect("insert");
        tick.last_fire_ms = Some(1_000);
        tick.next_fire_ms = Some(2_000);
        let fire = event("tick-1000", "f", 1_000);
        let (x, y) = tokio::join!(a.fire_schedule(&tick, &fire), b.fire_schedule(&tick, &fire));
        x.expect("fire on a");
        y.expect("fire on b");
        assert_eq!(b.queue_depth(1_000).await.expect("depth"), (1, 0));
        assert_eq!(b.list_schedules().await.expect("list"), [tick]);
    }

    pub async fn two_nodes_swapping_one_revision_see_one_win(
        a: &dyn MetadataStore,
        b: &dyn MetadataStore,
    ) {
        let f = function(a, "f").await;
        let by = |revision: &str| FunctionConfig {
            revision_id: revision.into(),
            ..f.clone()
        };
        let (from_a, from_b) = (by("from-a"), by("from-b"));
        let (x, y) = tokio::join!(
            a.replace_function(&from_a, &f.revision_id),
            b.replace_function(&from_b, &f.revision_id)
        );
        let stale = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Stale)))
            .count();
        assert_eq!((x.is_ok() as usize + y.is_ok() as usize, stale), (1, 1));
        let winner = if x.is_ok() { "from-a" } else { "from-b" };
        assert_eq!(
            b.get_function("f")
                .await
                .expect("get")
                .map(|f| f.revision_id),
            Some(winner.to_owned())
        );
    }

    pub async fn a_tick_delivered_and_gone_is_not_fired_again(store: &dyn MetadataStore) {
        function(store, "f").await;
        let mut tick = schedule("tick", "f", 60_000);
        store.insert_schedule(&tick).await.expect("insert");
        tick.last_fire_ms = Some(60_000);
        tick.next_fire_ms = Some(120_000);
        let fire = event("tick-60000", "f", 60_000);
        store.fire_schedule(&tick, &fire).await.expect("fire");
        let claimed = store
            .claim_due_events(NODE, 60_000, 60_000 + LEASE, 10)
            .await
            .expect("claim");
        store
            .complete_event(&claimed[0].id)
            .await
            .expect("complete");
        // Another node that read the schedule before the fire moved it on tries the same
        // tick: the event is gone, but the schedule says the tick was fired.
        store.fire_schedule(&tick, &fire).await.expect("late fire");
        assert_eq!(store.queue_depth(60_000).await.expect("depth"), (0, 0));
        assert_eq!(store.list_schedules().await.expect("list"), [tick]);
    }

    fn beat(id: &str, live: u32) -> NodeBeat {
        NodeBeat {
            id: id.to_owned(),
            address: format!("http://{id}.example:9300"),
            version: "0.1.0".to_owned(),
            started_ms: 1,
            live_instances: live,
            busy_instances: 0,
        }
    }

    pub async fn nodes_heartbeat_are_rewritten_and_leave(store: &dyn Store) {
        store.heartbeat(&beat("b", 1)).await.expect("b");
        store.heartbeat(&beat("a", 2)).await.expect("a");
        store.heartbeat(&beat("b", 5)).await.expect("b again");
        let nodes = store.nodes().await.expect("nodes");
        assert_eq!(
            nodes.iter().map(|n| n.beat.clone()).collect::<Vec<_>>(),
            vec![beat("a", 2), beat("b", 5)]
        );
        assert!(nodes
            .iter()
            .all(|n| (0..5_000).contains(&n.heartbeat_age_ms)));
        store.leave("a").await.expect("leave");
        store.leave("nobody").await.expect("leave unknown");
        assert_eq!(store.nodes().await.expect("nodes").len(), 1);
    }

    pub async fn the_change_feed_says_what_changed_since_a_place(store: &dyn Store) {
        assert_eq!(store.changes_since(0).await.expect("empty"), (vec![], 0));
        let first = store.record_change("f").await.expect("f");
        store.record_change("g").await.expect("g");
        let last = store.record_change("f").await.expect("f again");
        assert!(first < last);
        let (mut changed, latest) = store.changes_since(0).await.expect("all");
        changed.sort();
        assert_eq!(
            (changed, latest),
            (vec!["f".to_owned(), "g".to_owned()], last)
        );
        let (after_first, _) = store.changes_since(first).await.expect("since");
        let mut after_first = after_first;
        after_first.sort();
        assert_eq!(after_first, vec!["f".to_owned(), "g".to_owned()]);
        assert_eq!(
            store.changes_since(last).await.expect("none"),
            (vec![], last)
        );
        assert_eq!(
            store.changes_since(i64::MAX).await.expect("latest"),
            (vec![], last)
        );
    }

    pub async fn a_leased_event_is_one_nodes_until_its_lease_runs_out(
        a: &dyn Store,
        b: &dyn Store,
    ) {
        function(a, "f").await;
        for id in ["e1", "e2"] {
            a.enqueue_event(&event(id, "f", 100), 100)
                .await
                .expect("enqueue");
        }
        let ids = |events: &[AsyncEvent]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let mine = a.claim_due_events("a", 100, 1_000, 1).await.expect("a");
        assert_eq!(ids(&mine), ["e1"]);
        let theirs = b.claim_due_events("b", 200, 1_200, 10).await.expect("b");
        assert_eq!(ids(&theirs), ["e2"]);
        // Leases held: nothing to claim, and the next thing due is the first to run out.
        assert!(b
            .claim_due_events("c", 900, 2_000, 10)
            .await
            .expect("c")
            .is_empty());
        assert_eq!(a.next_event_due().await.expect("due"), Some(1_000));
        // a lives on (renews); b dies: its event goes to c, as a further attempt.
        assert_eq!(a.renew_leases("a", 5_000).await.expect("renew"), 1);
        let taken = a.claim_due_events("c", 1_300, 9_000, 10).await.expect("c");
        assert_eq!(ids(&taken), ["e2"]);
        assert_eq!(
            taken[0].attempts, 1,
            "the dead node's delivery counts as an attempt"
        );
        assert_eq!(
            b.renew_leases("b", 99_000).await.expect("renew"),
            0,
            "b holds nothing now"
        );
        // A restarting node re-queues only its own.
        assert_eq!(a.requeue_inflight("a").await.expect("requeue"), 1);
        let again = a.claim_due_events("a", 1_400, 9_000, 10).await.expect("a");
        assert_eq!(ids(&again), ["e1"]);
        assert_eq!(
            again[0].attempts, 1,
            "an interrupted delivery counts as an attempt"
        );
        assert!(
            b.claim_due_events("d", 8_000, 9_000, 10)
                .await
                .expect("d")
                .is_empty(),
            "c's and a's leases hold"
        );
    }
}
