//! Async (Event) invocations: accepted durably, delivered at least once by a background
//! loop through the scheduler, retried after function errors, and given up to the dead
//! letters (and the OnFailure destination) when retries or the event's age run out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::model::LATEST;
use nimbus_core::{AsyncEvent, DeadLetter, Error, ErrorKind, EventInvokeConfig};
use serde_json::{json, Value};

use crate::{store_error, Invoke, Platform, Result};

/// How async events are delivered.
#[derive(Debug, Clone)]
pub struct AsyncConfig {
    /// Delay before the first retry after a function error; the n-th waits n times this
    /// (Lambda: about 1 minute, then 2).
    pub retry_delay: Duration,
    /// How many events are delivered at once.
    pub workers: usize,
    /// This node's id: the owner of the leases it takes on events.
    pub node_id: String,
    /// How long a claimed event's lease lasts; it is renewed every third of it while the
    /// event is delivered, so a node that dies gives its events up after at most this.
    pub lease: Duration,
}

/// Renews this node's leases on the events it is delivering every third of a lease, until
/// the platform is gone: while the node lives, no other takes its events.
async fn renew_leases_forever(platform: std::sync::Weak<crate::Platform>) {
    let Some(every) = platform.upgrade().map(|p| p.async_config.lease / 3) else {
        return;
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(platform) = platform.upgrade() else {
            return;
        };
        let until = platform.lease_until(now_ms());
        if let Err(e) = platform
            .meta
            .renew_leases(&platform.async_config.node_id, until)
            .await
        {
            tracing::warn!(error = %e, "renewing this node's async event leases failed; another node may deliver them too");
        }
    }
}

/// Lambda's defaults for functions without an EventInvokeConfig.
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_AGE_S: u32 = 21_600;
/// Wait before retrying a delivery that was throttled or failed on Nimbus's side.
const THROTTLE_RETRY: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a Put/UpdateFunctionEventInvokeConfig request sets; `None` keeps (or defaults) it.
#[derive(Debug, Clone, Default)]
pub struct EventConfigPatch {
    /// Retries after a function error, 0–2.
    pub maximum_retry_attempts: Option<i64>,
    /// Oldest age, seconds, 60–21600.
    pub maximum_event_age_s: Option<i64>,
    /// OnSuccess destination ARN (`Some("")` clears it).
    pub on_success: Option<String>,
    /// OnFailure destination ARN (`Some("")` clears it).
    pub on_failure: Option<String>,
}

/// The JSON of an event's payload (as sent), for records and listings.
pub fn payload_json(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

impl Platform {
    /// Invoke with InvocationType Event: checks the function, stores the event durably and
    /// returns once it is stored. Delivery happens in the background.
    pub async fn enqueue(&self, request: Invoke) -> Result<()> {
        let function = self
            .get_function(&request.function, request.qualifier.as_deref())
            .await?;
        let (_, qualifier) = self.resolve(&request.function, request.qualifier.as_deref())?;
        let now = now_ms();
        let event = AsyncEvent {
            id: request.request_id,
            function: function.name,
            qualifier: qualifier.filter(|q| q != LATEST),
            payload: request.payload.to_vec(),
            attempts: 0,
            enqueued_at: now,
            last_error: None,
        };
        self.meta
            .enqueue_event(&event, now)
            .await
            .map_err(store_error)?;
        self.async_ready.notify_one();
        Ok(())
    }

    /// Starts the delivery loop, after putting back events a stopped server left in flight.
    pub(crate) async fn start_async_delivery(self: &Arc<Self>) -> Result<()> {
        let requeued = self
            .meta
            .requeue_inflight(&self.async_config.node_id)
            .await
            .map_err(store_error)?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "async events interrupted by the last stop go out again"
            );
        }
        let platform = self.clone();
        tokio::spawn(async move { platform.deliver_forever().await });
        tokio::spawn(renew_leases_forever(Arc::downgrade(self)));
        Ok(())
    }

    /// The lease an event claimed now gets.
    fn lease_until(&self, now: i64) -> i64 {
        now + i64::try_from(self.async_config.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    async fn deliver_forever(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.async_config.workers.max(1),
        ));
        loop {
            let free = slots.available_permits();
            if free == 0 {
                if let Ok(permit) = slots.clone().acquire_owned().await {
                    drop(permit);
                }
                continue;
            }
            let now = now_ms();
            let claimed = self.meta.claim_due_events(
                &self.async_config.node_id,
                now,
                self.lease_until(now),
                free,
            );
            let events = match claimed.await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the async queue failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if events.is_empty() {
                let next = self.meta.next_event_due().await.ok().flatten();
                let wait = next.map_or(1000, |due| (due - now).clamp(1, 1000));
                tokio::select! {
                    _ = self.async_ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
                }
                continue;
            }
            for event in events {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let platform = self.clone();
                tokio::spawn(async move {
                    platform.deliver(event).await;
                    drop(permit);
                });
            }
        }
    }

    /// The settings that govern `function` at `qualifier`: its own, the function's, or
    /// Lambda's defaults.
    async fn effective_event_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> EventInvokeConfig {
        let own = match qualifier {
            Some(q) => self
                .meta
                .get_event_config(function, Some(q))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let found = match own {
            Some(c) => Some(c),
            None => self
                .meta
                .get_event_config(function, None)
                .await
                .ok()
                .flatten(),
        };
        found.unwrap_or(EventInvokeConfig {
            function: function.to_owned(),
            qualifier: None,
            maximum_retry_attempts: DEFAULT_RETRIES,
            maximum_event_age_s: DEFAULT_MAX_AGE_S,
            on_success: None,
            on_failure: None,
            last_modified: 0.0,
        })
    }

    /// One delivery attempt of `event`, and what follows from its outcome.
    async fn deliver(&self, mut event: AsyncEvent) {
        let config = self
            .effective_event_config(&event.function, event.qualifier.as_deref())
            .await;
        let now = now_ms();
        if now - event.enqueued_at > i64::from(config.maximum_event_age_s) * 1000 {
            self.give_up(event, "EventAgeExceeded", None, &config).await;
            return;
        }
        let result = self
            .invoke_to_end(Invoke {
                function: event.function.clone(),
                qualifier: event.qualifier.clone(),
                payload: Bytes::from(event.payload.clone()),
                client_context: None,
                request_id: event.id.clone(),
            })
            .await;
        let outcome = match result {
            Ok(result) if !result.function_error => {
                if let Err(e) = self.meta.complete_event(&event.id).await {
                    tracing::warn!(event = %event.id, error = %e, "recording a delivered async event failed; it may be delivered again");
                }
                event.attempts += 1;
                let record = self.record(&event, "Success", Some(&result));
                self.send_to_destination(config.on_success.as_deref(), record)
                    .await;
                return;
            }
            Ok(result) => {
                event.attempts += 1;
                event.last_error = Some(String::from_utf8_lossy(&result.payload).into_owned());
                if event.attempts > config.maximum_retry_attempts {
                    self.give_up(event, "RetriesExhausted", Some(&result), &config)
                        .await;
                    return;
                }
                let delay = self.async_config.retry_delay * event.attempts;
                self.meta
                    .retry_event(
                        &event.id,
                        event.attempts,
                        now_ms() + delay.as_millis() as i64,
                        event.last_error.as_deref(),
                    )
                    .await
            }
            Err(e) if e.kind == ErrorKind::ResourceNotFound => {
                event.last_error = Some(e.message);
                self.give_up(event, "RetriesExhausted", None, &config).await;
                return;
            }
            Err(e) => {
                // Throttled or failed on our side: not an attempt; try again shortly.
                self.meta
                    .retry_event(
                        &event.id,
                        event.attempts,
                        now_ms() + THROTTLE_RETRY.as_millis() as i64,
                        Some(&e.message),
                    )
                    .await
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(event = %event.id, error = %e, "rescheduling an async event failed; it goes out again after a restart");
        }
    }

    async fn give_up(
        &self,
        event: AsyncEvent,
        condition: &str,
        result: Option<&nimbus_scheduler::InvokeResult>,
        config: &EventInvokeConfig,
    ) {
        let record = self.record(&event, condition, result);
        let letter = DeadLetter {
            event,
            condition: condition.to_owned(),
            failed_at: now_ms(),
        };
        if let Err(e) = self.meta.dead_letter(&letter).await {
            tracing::warn!(event = %letter.event.id, error = %e, "storing a dead letter failed");
            return;
        }
        tracing::info!(event = %letter.event.id, function = %letter.event.function, condition, "async event given up");
        self.send_to_destination(config.on_failure.as_deref(), record)
            .await;
    }

    /// The record Lambda sends to a destination.
    fn record(
        &self,
        event: &AsyncEvent,
        condition: &str,
        result: Option<&nimbus_scheduler::InvokeResult>,
    ) -> Value {
        let arn = match &event.qualifier {
            Some(q) => self.scope.qualified_arn(&event.function, q),
            None => self.scope.qualified_arn(&event.function, LATEST),
        };
        let mut record = json!({
            "version": "1.0",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "requestContext": {
                "requestId": event.id,
                "functionArn": arn,
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": payload_json(&event.payload),
        });
        if let Some(result) = result {
            let mut response =
                json!({"statusCode": 200, "executedVersion": result.executed_version});
            if result.function_error {
                response["functionError"] = json!("Unhandled");
            }
            record["responseContext"] = response;
            record["responsePayload"] = payload_json(&result.payload);
        }
        record
    }

    async fn send_to_destination(&self, destination: Option<&str>, record: Value) {
        let Some(arn) = destination else { return };
        let invoke = Invoke {
            function: arn.to_owned(),
            qualifier: None,
            payload: Bytes::from(record.to_string()),
            client_context: None,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        if let Err(e) = self.enqueue(invoke).await {
            tracing::warn!(destination = %arn, error = %e, "a destination could not take its record");
        }
    }

    /// Checks a destination: the ARN of an existing function on this server.
    async fn check_destination(&self, arn: &str) -> Result<()> {
        if !arn.starts_with("arn:") || !arn.contains(":lambda:") {
            return Err(Error::invalid(format!(
                "The destination ARN {arn} is not supported: Nimbus delivers to its own functions (a function ARN)"
            )));
        }
        self.get_function(arn, None).await.map(|_| ()).map_err(|_| {
            Error::invalid(format!(
                "The destination ARN {arn} is invalid: no such function"
            ))
        })
    }

    /// Put (replace) or Update (merge) the async settings of a function or qualifier.
    pub async fn put_event_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
        patch: EventConfigPatch,
        merge: bool,
    ) -> Result<EventInvokeConfig> {
        let version = self.get_function(function, qualifier).await?;
        let (_, qualifier) = self.resolve(function, qualifier)?;
        let qualifier = qualifier.filter(|q| q != LATEST);
        let current = self
            .meta
            .get_event_config(&version.name, qualifier.as_deref())
            .await
            .map_err(store_error)?;
        if merge && current.is_none() {
            return Err(Error::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "The function {} doesn't have an EventInvokeConfig",
                    self.scope.function_arn(&version.name)
                ),
            ));
        }
        let base = if merge { current } else { None };
        let retries =
            match patch.maximum_retry_attempts {
                Some(n) if (0..=2).contains(&n) => n as u32,
                Some(n) => return Err(Error::validation(
                    &n.to_string(),
                    "maximumRetryAttempts",
                    "Member must have value less than or equal to 2 and greater than or equal to 0",
                )),
                None => base
                    .as_ref()
                    .map_or(DEFAULT_RETRIES, |b| b.maximum_retry_attempts),
            };
        let max_age = match patch.maximum_event_age_s {
            Some(n) if (60..=21_600).contains(&n) => n as u32,
            Some(n) => {
                return Err(Error::validation(&n.to_string(), "maximumEventAgeInSeconds", "Member must have value less than or equal to 21600 and greater than or equal to 60"))
            }
            None => base.as_ref().map_or(DEFAULT_MAX_AGE_S, |b| b.maximum_event_age_s),
        };
        let pick = |given: Option<String>, old: Option<String>| match given {
            Some(arn) if arn.is_empty() => None,
            Some(arn) => Some(arn),
            None => old,
        };
        let on_success = pick(
            patch.on_success,
            base.as_ref().and_then(|b| b.on_success.clone()),
        );
        let on_failure = pick(
            patch.on_failure,
            base.as_ref().and_then(|b| b.on_failure.clone()),
        );
        for arn in on_success.iter().chain(on_failure.iter()) {
            self.check_destination(arn).await?;
        }
        let config = EventInvokeConfig {
            function: version.name,
            qualifier,
            maximum_retry_attempts: retries,
            maximum_event_age_s: max_age,
            on_success,
            on_failure,
            last_modified: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        };
        self.meta
            .put_event_config(&config)
            .await
            .map_err(store_error)?;
        Ok(config)
    }

    /// GetFunctionEventInvokeConfig.
    pub async fn get_event_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<EventInvokeConfig> {
        let version = self.get_function(function, qualifier).await?;
        let (_, qualifier) = self.resolve(function, qualifier)?;
        let qualifier = qualifier.filter(|q| q != LATEST);
        self.meta
            .get_event_config(&version.name, qualifier.as_deref())
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ResourceNotFound,
                    format!(
                        "The function {} doesn't have an EventInvokeConfig",
                        self.scope.function_arn(&version.name)
                    ),
                )
            })
    }

    /// DeleteFunctionEventInvokeConfig.
    pub async fn delete_event_config(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let config = self.get_event_config(function, qualifier).await?;
        self.meta
            .delete_event_config(&config.function, config.qualifier.as_deref())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// ListFunctionEventInvokeConfigs.
    pub async fn list_event_configs(&self, function: &str) -> Result<Vec<EventInvokeConfig>> {
        let owner = self.get_unqualified(function).await?;
        self.meta
            .list_event_configs(&owner.name)
            .await
            .map_err(store_error)
    }

    /// Dead letters (of `function`, if given).
    pub async fn dead_letters(&self, function: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.meta
            .list_dead_letters(function)
            .await
            .map_err(store_error)
    }

    /// Sends a dead letter back to the queue, with fresh attempts.
    pub async fn redrive(&self, id: &str) -> Result<()> {
        let letter = self
            .meta
            .take_dead_letter(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ResourceNotFound,
                    format!("Dead letter not found: {id}"),
                )
            })?;
        let now = now_ms();
        let event = AsyncEvent {
            attempts: 0,
            enqueued_at: now,
            last_error: None,
            ..letter.event.clone()
        };
        if let Err(e) = self.meta.enqueue_event(&event, now).await {
            // Put it back where it was rather than lose it.
            let _ = self.meta.dead_letter(&letter).await;
            return Err(store_error(e));
        }
        self.async_ready.notify_one();
        Ok(())
    }

    /// Removes a dead letter for good.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        match self.meta.take_dead_letter(id).await.map_err(store_error)? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::ResourceNotFound,
                format!("Dead letter not found: {id}"),
            )),
        }
    }

    /// Queued async events and the age of the oldest, ms.
    pub async fn queue_depth(&self) -> Result<(u64, i64)> {
        self.meta.queue_depth(now_ms()).await.map_err(store_error)
    }
}
