//! The control plane: function lifecycle operations (create, read, update, delete, list)
//! over the stores, and the entry point of invocations. The `api` crate calls only this.

mod aliases;
mod cache;
mod collector;
mod events;
mod membership;
mod provisioned;
mod routing;
mod schedules;
mod urls;
mod versions;

use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::arn::{parse_function_ref, ArnScope};
use nimbus_core::model::{lambda_timestamp, new_revision_id, LATEST};
use nimbus_core::validate::{self, SpecPatch};
use nimbus_core::{limits, AliasConfig, Error, ErrorKind, FunctionConfig, Scaling};
use nimbus_scheduler::{InvokeError, InvokeRequest, InvokeResult, Scheduler};
use nimbus_store::{CodeCache, MetadataStore, StoreError};

pub use aliases::AliasPatch;
pub use events::{payload_json, AsyncConfig, EventConfigPatch};
pub use membership::{Membership, MembershipConfig, NodeView};
pub use nimbus_core::error::Result;
pub use provisioned::ProvisionedStatus;
pub use routing::{ForwardError, Forwarded, Forwarder};
pub use schedules::NewSchedule;
pub use urls::UrlPatch;

/// What Nimbus knows and runs: the stores, the scheduler, and where ARNs point.
pub struct Platform {
    meta: Arc<dyn MetadataStore>,
    code: Arc<CodeCache>,
    scheduler: Arc<Scheduler>,
    scope: ArnScope,
    /// What invokes read, kept in memory.
    cache: cache::FunctionCache,
    /// How async events are delivered.
    async_config: events::AsyncConfig,
    /// Wakes the async delivery loop when an event is accepted.
    async_ready: tokio::sync::Notify,
    /// Wakes the schedule loop when schedules change.
    schedules_changed: tokio::sync::Notify,
    /// Schedules whose last fire failed: failures in a row, and when to try again (ms).
    schedule_backoff: std::sync::Mutex<std::collections::HashMap<String, (u32, i64)>>,
    /// Logs, metrics and usage of invocations.
    telemetry: Arc<nimbus_telemetry::Telemetry>,
    /// The cluster, once this node has joined it: where invocations are routed.
    routing: std::sync::OnceLock<routing::Routing>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next_marker: Option<String>,
}

/// Account-wide usage, for GetAccountSettings.
#[derive(Debug, Clone, Copy)]
pub struct AccountUsage {
    /// Number of functions.
    pub function_count: u64,
    /// Bytes of code stored.
    pub total_code_size: u64,
    /// The node's concurrency limit.
    pub concurrent_executions: u32,
    /// What is left of it after reservations.
    pub unreserved_concurrent_executions: u64,
}

/// One invocation as the control plane receives it.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// The `FunctionName` path parameter.
    pub function: String,
    /// The `Qualifier` query parameter.
    pub qualifier: Option<String>,
    /// The event, already checked to be JSON.
    pub payload: Bytes,
    /// Decoded client context JSON.
    pub client_context: Option<String>,
    /// The request id.
    pub request_id: String,
}

/// The page size a list answers with: `MaxItems` (1–10000), at most 50.
fn page_size(max_items: Option<i64>) -> Result<usize> {
    match max_items {
        None => Ok(limits::LIST_PAGE_MAX),
        Some(n) if (1..=10_000).contains(&n) => Ok((n as usize).min(limits::LIST_PAGE_MAX)),
        Some(n) => Err(Error::validation(
            &n.to_string(),
            "maxItems",
            "Member must have value between 1 and 10000",
        )),
    }
}

/// What a client is told when the server's disk is full.
const DISK_FULL: &str = "the server is out of disk space: delete functions or versions you no longer need (their code is freed after a grace period) or free space on the server's data disk, then retry";

/// A storage failure as the client sees it. Faults of the request (a bad zip) say what is
/// wrong with it; the server's own faults are logged here, with the paths and causes
/// that only the operator should see, and reach the client without them.
fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::Unpack(unpack) if unpack.is_user_error() => match unpack {
            nimbus_store::UnpackError::TooLarge { .. } => Error::invalid(unpack.to_string()),
            other => Error::invalid(format!(
                "Could not unzip uploaded file. Please check your file, then try to upload again. ({other})"
            )),
        },
        other if other.is_disk_full() => {
            tracing::error!(error = %other, "storage failure: out of disk space");
            Error::new(ErrorKind::Service, DISK_FULL)
        }
        other => {
            tracing::error!(error = %other, "storage failure");
            Error::new(
                ErrorKind::Service,
                "internal error: the server could not read or write its storage; its log has the details; retry later",
            )
        }
    }
}

impl Platform {
    /// A platform over these stores and scheduler.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        code: Arc<CodeCache>,
        scheduler: Arc<Scheduler>,
        scope: ArnScope,
        async_config: events::AsyncConfig,
        telemetry: Arc<nimbus_telemetry::Telemetry>,
    ) -> Self {
        Platform {
            meta,
            code,
            scheduler,
            scope,
            cache: cache::FunctionCache::default(),
            async_config,
            async_ready: tokio::sync::Notify::new(),
            schedules_changed: tokio::sync::Notify::new(),
            schedule_backoff: Default::default(),
            telemetry,
            routing: std::sync::OnceLock::new(),
        }
    }

    /// Brings the scheduler up to date with stored settings; call once at start.
    pub async fn load(&self) -> Result<()> {
        let reserved = self.meta.reserved_total(None).await.map_err(store_error)?;
        self.scheduler
            .set_reserved_total(u32::try_from(reserved).unwrap_or(u32::MAX));
        Ok(())
    }

    /// Brings the node up to date with stored settings at start: reservations, and the
    /// provisioned instances to start.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        self.load().await?;
        self.start_async_delivery().await?;
        self.start_schedules().await
    }

    /// Where ARNs point.
    pub fn scope(&self) -> &ArnScope {
        &self.scope
    }

    /// Logs, metrics and usage of invocations.
    pub fn telemetry(&self) -> &Arc<nimbus_telemetry::Telemetry> {
        &self.telemetry
    }

    /// The scheduler that runs invocations.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// Checks a code zip's size and stores it (nothing is stored if it is refused).
    async fn install_code(&self, zip: Bytes) -> Result<nimbus_store::code::Installed> {
        if zip.len() as u64 > limits::CODE_ZIPPED_MAX_BYTES {
            return Err(Error::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "Zipped size must be smaller than {} bytes",
                    limits::CODE_ZIPPED_MAX_BYTES
                ),
            ));
        }
        let installed = self.code.install(zip).await.map_err(store_error)?;
        // (`installed.pin` keeps the package from the collector until the caller has
        // recorded it.)
        // Ready by the first cold start, most likely: compiling runs in the background.
        self.scheduler.precompile(&installed.sha256_hex);
        Ok(installed)
    }

    /// CreateFunction: validates everything, stores the code, then records the function.
    pub async fn create_function(
        &self,
        name: &str,
        patch: SpecPatch,
        zip: Bytes,
    ) -> Result<FunctionConfig> {
        validate::function_name(name)?;
        let spec = patch.into_new_spec()?;
        if self
            .meta
            .get_function(name)
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(self.exists(name));
        }
        let installed = self.install_code(zip).await?;
        let config = FunctionConfig {
            name: name.to_owned(),
            version: LATEST.to_owned(),
            spec,
            code_sha256_hex: installed.sha256_hex,
            code_size: installed.size,
            code_unzipped_size: installed.unzipped_size,
            revision_id: new_revision_id(),
            last_modified: lambda_timestamp(chrono::Utc::now()),
        };
        match self.meta.insert_function(&config).await {
            Ok(()) => {
                self.changed(name).await;
                Ok(config)
            }
            Err(StoreError::Conflict) => Err(self.exists(name)),
            Err(e) => Err(store_error(e)),
        }
    }

    fn exists(&self, name: &str) -> Error {
        Error::new(
            ErrorKind::ResourceConflict,
            format!("Function already exist: {name}"),
        )
    }

    /// Resolves a `FunctionName` parameter plus optional `Qualifier` to the stored function.
    /// Only `$LATEST` exists until versions are published.
    pub async fn get_function(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionConfig> {
        let (name, qualifier) = self.resolve(function, qualifier)?;
        match qualifier.as_deref() {
            None | Some(LATEST) => self.load_exact(&name, qualifier.as_deref()).await,
            Some(q) if validate::is_version_number(q) => self.load_exact(&name, Some(q)).await,
            Some(alias) => {
                let alias = self.load_alias(&name, alias).await?;
                self.load_exact(&name, Some(&alias.function_version)).await
            }
        }
    }

    /// `$LATEST` or a published version of function `name`.
    async fn load_exact(&self, name: &str, version: Option<&str>) -> Result<FunctionConfig> {
        let found = match version {
            None | Some(LATEST) => self.meta.get_function(name).await,
            Some(q) => match q.parse::<u64>() {
                Ok(n) => self.meta.get_version(name, n).await,
                Err(_) => Ok(None),
            },
        }
        .map_err(store_error)?;
        found.ok_or_else(|| match version {
            Some(q) if q != LATEST => Error::function_not_found(&self.scope.qualified_arn(name, q)),
            _ => Error::function_not_found(&self.scope.function_arn(name)),
        })
    }

    /// Alias `alias` of function `name`.
    async fn load_alias(&self, name: &str, alias: &str) -> Result<AliasConfig> {
        self.meta
            .get_alias(name, alias)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Error::function_not_found(&self.scope.qualified_arn(name, alias)))
    }

    /// The alias a `FunctionName` plus `Qualifier` names, if it names one (for answers that
    /// carry the alias's ARN).
    pub fn alias_named(&self, function: &str, qualifier: Option<&str>) -> Option<(String, String)> {
        let (name, qualifier) = self.resolve(function, qualifier).ok()?;
        let q = qualifier.filter(|q| q != LATEST && !validate::is_version_number(q))?;
        Some((name, q))
    }

    /// Splits a `FunctionName` into name and qualifier, checking it against `?Qualifier`.
    fn resolve(&self, function: &str, qualifier: Option<&str>) -> Result<(String, Option<String>)> {
        let reference = parse_function_ref(function)?;
        let foreign_account = reference
            .account
            .as_deref()
            .is_some_and(|a| a != nimbus_core::arn::ACCOUNT_ID);
        let foreign_region = reference
            .region
            .as_deref()
            .is_some_and(|r| r != self.scope.region);
        if foreign_account || foreign_region {
            return Err(Error::function_not_found(function));
        }
        if let Some(q) = qualifier {
            if !validate::is_qualifier(q) {
                return Err(Error::validation(
                    q,
                    "qualifier",
                    "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)",
                ));
            }
        }
        let qualifier = match (reference.qualifier, qualifier) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid(
                    "The derived qualifier from the function name does not match the specified qualifier.",
                ))
            }
            (a, b) => a.or(b.map(str::to_owned)),
        };
        Ok((reference.name, qualifier))
    }

    /// ListFunctions: functions in name order, at most 50 a page.
    pub async fn list_functions(
        &self,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<Page<FunctionConfig>> {
        let page = page_size(max_items)?;
        let mut items = self
            .meta
            .list_functions(marker.filter(|m| !m.is_empty()), page + 1)
            .await
            .map_err(store_error)?;
        let next_marker = if items.len() > page {
            items.truncate(page);
            items.last().map(|f| f.name.clone())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }

    /// Checks a caller's `RevisionId` precondition against the stored one.
    fn check_revision(current: &FunctionConfig, expected: Option<&str>) -> Result<()> {
        match expected {
            Some(rev) if rev != current.revision_id => Err(Error::new(
                ErrorKind::PreconditionFailed,
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            )),
            _ => Ok(()),
        }
    }

    /// Stores `next` in place of `current`, retiring instances of the old revision.
    async fn replace(
        &self,
        current: &FunctionConfig,
        next: FunctionConfig,
    ) -> Result<FunctionConfig> {
        match self.meta.replace_function(&next, &current.revision_id).await {
            Ok(()) => {
                self.changed(&next.name).await;
                self.scheduler
                    .retire(&next.name, Some(LATEST), Some(&next.revision_id));
                Ok(next)
            }
            Err(StoreError::Stale) => Err(Error::new(
                ErrorKind::ResourceConflict,
                format!(
                    "The operation cannot be performed at this time. An update is in progress for resource: {}",
                    self.scope.function_arn(&current.name)
                ),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// UpdateFunctionCode: new code for `$LATEST`. With `dry_run`, only checks it.
    pub async fn update_code(
        &self,
        function: &str,
        zip: Bytes,
        revision_id: Option<&str>,
        dry_run: bool,
    ) -> Result<FunctionConfig> {
        let current = self.get_unqualified(function).await?;
        Self::check_revision(&current, revision_id)?;
        let installed = self.install_code(zip).await?;
        let next = FunctionConfig {
            code_sha256_hex: installed.sha256_hex,
            code_size: installed.size,
            code_unzipped_size: installed.unzipped_size,
            revision_id: new_revision_id(),
            last_modified: lambda_timestamp(chrono::Utc::now()),
            ..current.clone()
        };
        if dry_run {
            return Ok(next);
        }
        self.replace(&current, next).await
    }

    /// UpdateFunctionConfiguration: new settings for `$LATEST`.
    pub async fn update_configuration(
        &self,
        function: &str,
        patch: SpecPatch,
        revision_id: Option<&str>,
    ) -> Result<FunctionConfig> {
        let current = self.get_unqualified(function).await?;
        Self::check_revision(&current, revision_id)?;
        let spec = patch.apply_to(&current.spec)?;
        let next = FunctionConfig {
            spec,
            revision_id: new_revision_id(),
            last_modified: lambda_timestamp(chrono::Utc::now()),
            ..current.clone()
        };
        self.replace(&current, next).await
    }

    /// The function named by an operation that takes no qualifier.
    async fn get_unqualified(&self, function: &str) -> Result<FunctionConfig> {
        let (name, qualifier) = self.resolve(function, None)?;
        if let Some(q) = qualifier {
            if q != LATEST {
                return Err(Error::invalid(format!(
                    "Qualifier '{q}' is not allowed here: this operation changes $LATEST"
                )));
            }
        }
        self.get_function(&name, None).await
    }

    /// DeleteFunction: removes the function and everything that hangs off it (versions,
    /// aliases, URL, provisioned concurrency, event-invoke configs, queued events,
    /// schedules) and retires its instances.
    pub async fn delete_function(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let (name, qualifier) = self.resolve(function, qualifier)?;
        if let Some(q) = qualifier {
            return self.delete_version(&name, &q).await;
        }
        if !self
            .meta
            .delete_function(&name)
            .await
            .map_err(store_error)?
        {
            return Err(Error::function_not_found(&self.scope.function_arn(&name)));
        }
        self.changed(&name).await;
        self.scheduler.retire(&name, None, None);
        // Its schedules went with it.
        self.schedules_changed.notify_one();
        Ok(())
    }

    /// The code zip of the function named by `function` (for GetFunction's download link).
    pub async fn code_zip(&self, function: &str) -> Result<Bytes> {
        let config = self.get_function(function, None).await?;
        self.code
            .zip(&config.code_sha256_hex)
            .await
            .map_err(store_error)
    }

    /// Usage figures for GetAccountSettings.
    pub async fn account_usage(&self) -> Result<AccountUsage> {
        let (function_count, total_code_size) = self.meta.usage().await.map_err(store_error)?;
        let reserved = self.meta.reserved_total(None).await.map_err(store_error)?;
        let concurrent_executions = self.scheduler.max_concurrency();
        Ok(AccountUsage {
            function_count,
            total_code_size,
            concurrent_executions,
            unreserved_concurrent_executions: u64::from(concurrent_executions)
                .saturating_sub(reserved),
        })
    }

    /// The scheduling settings of the function named by `function`.
    pub async fn get_scaling(&self, function: &str) -> Result<Scaling> {
        let config = self.get_unqualified(function).await?;
        self.meta
            .get_scaling(&config.name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Error::function_not_found(&self.scope.function_arn(&config.name)))
    }

    /// How many executions must stay unreserved: Lambda's 100, or a tenth of a small node.
    fn min_unreserved(&self) -> u64 {
        u64::from(self.scheduler.max_concurrency() / 10).min(100)
    }

    /// PutFunctionConcurrency: reserves concurrency for one function.
    pub async fn put_reserved_concurrency(&self, function: &str, reserved: i64) -> Result<u32> {
        let config = self.get_unqualified(function).await?;
        let max = u64::from(self.scheduler.max_concurrency());
        let Ok(value) = u32::try_from(reserved) else {
            return Err(Error::invalid(format!(
                "ReservedConcurrentExecutions must be between 0 and {max}, got {reserved}"
            )));
        };
        let others = self
            .meta
            .reserved_total(Some(&config.name))
            .await
            .map_err(store_error)?;
        if others + u64::from(value) > max.saturating_sub(self.min_unreserved()) {
            return Err(Error::invalid(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                self.min_unreserved()
            )));
        }
        self.meta
            .set_reserved_concurrency(&config.name, Some(value))
            .await
            .map_err(store_error)?;
        self.changed(&config.name).await;
        self.load().await?;
        Ok(value)
    }

    /// DeleteFunctionConcurrency: the function shares the unreserved pool again.
    pub async fn delete_reserved_concurrency(&self, function: &str) -> Result<()> {
        let config = self.get_unqualified(function).await?;
        self.meta
            .set_reserved_concurrency(&config.name, None)
            .await
            .map_err(store_error)?;
        self.changed(&config.name).await;
        self.load().await
    }

    /// Sets how long the function's idle instances stay warm (`None`: the server default).
    pub async fn set_keep_alive(&self, function: &str, seconds: Option<i64>) -> Result<Scaling> {
        let config = self.get_unqualified(function).await?;
        let seconds = match seconds {
            None => None,
            Some(s) if (0..=86_400).contains(&s) => u32::try_from(s).ok(),
            Some(s) => {
                return Err(Error::invalid(format!(
                    "KeepAliveSeconds must be between 0 and 86400, got {s}"
                )))
            }
        };
        self.meta
            .set_keep_alive(&config.name, seconds)
            .await
            .map_err(store_error)?;
        self.changed(&config.name).await;
        self.get_scaling(&config.name).await
    }

    /// The function and scaling an invoke of `function` at `qualifier` runs with, from
    /// the cache when it is there.
    async fn cached_function(&self, name: &str, qualifier: &str) -> Result<cache::Cached> {
        if let Ok(entry) = self.cache.get(name, qualifier) {
            return Ok(entry);
        }
        // One load at a time: a burst of first calls waits for the first one's load.
        let _loading = self.cache.loading.lock().await;
        let generation = match self.cache.get(name, qualifier) {
            Ok(entry) => return Ok(entry),
            Err(generation) => generation,
        };
        let entry = if qualifier == LATEST || validate::is_version_number(qualifier) {
            let config = self.load_exact(name, Some(qualifier)).await?;
            let scaling = self
                .meta
                .get_scaling(name)
                .await
                .map_err(store_error)?
                .unwrap_or_default();
            cache::Cached::Version(Arc::new((config, scaling)))
        } else {
            cache::Cached::Alias(Arc::new(self.load_alias(name, qualifier).await?))
        };
        self.cache.store(name, qualifier, entry.clone(), generation);
        Ok(entry)
    }

    /// The version an invoke of `function` at `qualifier` runs (an alias is routed by its
    /// weights), with its function's scaling settings, and the qualifier the caller named.
    async fn invoke_target(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(cache::Entry, Option<String>)> {
        let (name, named) = self.resolve(function, qualifier)?;
        let qualifier = named.as_deref().unwrap_or(LATEST);
        let entry = match self.cached_function(&name, qualifier).await? {
            cache::Cached::Version(entry) => entry,
            cache::Cached::Alias(alias) => {
                let draw =
                    f64::from(uuid::Uuid::new_v4().as_u128() as u32) / (f64::from(u32::MAX) + 1.0);
                match self.cached_function(&name, alias.route(draw)).await? {
                    cache::Cached::Version(entry) => entry,
                    cache::Cached::Alias(_) => {
                        return Err(Error::service("an alias points at an alias"))
                    }
                }
            }
        };
        Ok((entry, named))
    }

    /// Invoke (RequestResponse) on this node, never forwarded (see [`Platform::invoke`]
    /// for the cluster's routing): runs the function and returns its result or error payload.
    ///
    /// The invocation runs in a task of its own, so a caller that gives up (a read timeout,
    /// a closed connection) does not cut it short: as on Lambda, it runs to completion or
    /// its timeout, is logged and billed, and its instance and every counter come back.
    pub async fn invoke_here(self: &Arc<Self>, request: Invoke) -> Result<InvokeResult> {
        let platform = self.clone();
        tokio::spawn(async move { platform.invoke_to_end(request).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "an invocation task failed");
                Error::service("the invocation failed inside the server; retry it")
            })?
    }

    /// [`Platform::invoke`] on the caller's task: the caller must not drop it midway.
    async fn invoke_to_end(&self, request: Invoke) -> Result<InvokeResult> {
        let (entry, invoked) = self
            .invoke_target(&request.function, request.qualifier.as_deref())
            .await?;
        let (function, scaling) = (&entry.0, entry.1);
        let invoked_arn = match &invoked {
            Some(q) => self.scope.qualified_arn(&function.name, q),
            None => self.scope.function_arn(&function.name),
        };
        let request_id = request.request_id.clone();
        let result = self
            .scheduler
            .invoke(
                function,
                scaling,
                InvokeRequest {
                    request_id: request.request_id,
                    payload: request.payload,
                    invoked_arn,
                    client_context: request.client_context,
                },
            )
            .await;
        match result {
            Ok(result) => {
                let outcome = if result.timed_out {
                    nimbus_telemetry::Outcome::Timeout
                } else if result.function_error {
                    nimbus_telemetry::Outcome::Error
                } else {
                    nimbus_telemetry::Outcome::Success
                };
                self.telemetry.record(nimbus_telemetry::InvocationRecord {
                    function: function.name.clone(),
                    version: result.executed_version.clone(),
                    request_id: request_id.clone(),
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    log: result.log.clone(),
                    duration_ms: result.duration_ms,
                    init_ms: result.init_ms,
                    memory_mb: function.spec.memory_mb,
                    outcome,
                });
                Ok(result)
            }
            Err(InvokeError::Throttled(reason)) => {
                self.telemetry.throttled(&function.name, &function.version);
                Err(Error::throttled(reason.as_str()))
            }
            Err(InvokeError::ShuttingDown) => Err(Error::new(
                ErrorKind::Service,
                "the server is shutting down; retry against a running server",
            )),
            Err(InvokeError::Code(e)) => {
                tracing::error!(function = %function.name, "could not prepare the function's code");
                Err(store_error(e))
            }
            Err(e) => {
                tracing::error!(function = %function.name, error = %e, "invoke failed");
                Err(Error::new(
                    ErrorKind::Service,
                    "internal error: the server could not start an instance of the function; its log has the details",
                ))
            }
        }
    }
}

#[cfg(test)]
mod send_check {
    #[allow(dead_code)]
    fn invoke_is_send(p: &std::sync::Arc<super::Platform>, i: super::Invoke) {
        fn is_send<T: Send>(_: T) {}
        is_send(p.invoke(i));
    }
}
