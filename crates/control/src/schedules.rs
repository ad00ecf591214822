//! Schedules: functions invoked asynchronously on cron or rate expressions. Each fire is an
//! async event (so retries and dead letters apply), enqueued in the same transaction that
//! moves the schedule on, under an id made of the schedule and the fire time: a fire is
//! never doubled, even across a crash. Fires missed while the server was down are skipped
//! (and logged), not made up.

use std::sync::Arc;
use std::time::Duration;

use nimbus_core::schedule::{Expression, Schedule};
use nimbus_core::{validate, AsyncEvent, Error, ErrorKind};
use serde_json::Value;

use crate::{store_error, Platform, Result};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a new schedule is made of.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Its name, `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// The function (`name` or `name:qualifier`).
    pub function: String,
    /// A cron (5 or 6 fields) or `rate(N unit)` expression.
    pub expression: String,
    /// The event each fire sends (default `{}`).
    pub payload: Option<Value>,
    /// Whether it fires (default true).
    pub enabled: Option<bool>,
}

impl Platform {
    /// Creates a schedule; a bad expression is refused with the parser's message.
    pub async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule> {
        if !validate::is_function_name(&new.name) {
            return Err(Error::invalid(format!(
                "schedule name '{}' must be 1-64 of [A-Za-z0-9_-]",
                new.name
            )));
        }
        let expression = Expression::parse(&new.expression)?;
        let target = self.get_function(&new.function, None).await?;
        // Stored as `name` or `name:qualifier` whatever form (ARN, partial ARN) it came in.
        let (name, qualifier) = self.resolve(&new.function, None)?;
        let function = match qualifier {
            Some(q) => format!("{}:{q}", target.name),
            None => name,
        };
        let now = now_ms();
        let enabled = new.enabled.unwrap_or(true);
        let schedule = Schedule {
            name: new.name,
            function,
            expression: new.expression,
            payload: new
                .payload
                .unwrap_or_else(|| Value::Object(Default::default())),
            enabled,
            created_ms: now,
            next_fire_ms: expression.next_after(now, now),
            last_fire_ms: None,
        };
        match self.meta.insert_schedule(&schedule).await {
            Ok(()) => {
                self.schedules_changed.notify_one();
                Ok(schedule)
            }
            Err(nimbus_store::StoreError::Conflict) => Err(Error::new(
                ErrorKind::ResourceConflict,
                format!("Schedule already exists: {}", schedule.name),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Every schedule.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.meta.list_schedules().await.map_err(store_error)
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        if self.meta.delete_schedule(name).await.map_err(store_error)? {
            self.schedules_changed.notify_one();
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::ResourceNotFound,
                format!("Schedule not found: {name}"),
            ))
        }
    }

    /// Skips fires missed while the server was down, then starts the firing loop.
    pub(crate) async fn start_schedules(self: &Arc<Self>) -> Result<()> {
        let now = now_ms();
        for mut schedule in self.list_schedules().await? {
            let missed =
                schedule.enabled && schedule.next_fire_ms.is_some_and(|next| next < now - 1000);
            if !missed {
                continue;
            }
            let Ok(expression) = Expression::parse(&schedule.expression) else {
                continue;
            };
            tracing::warn!(
                schedule = %schedule.name,
                missed_since_ms = schedule.next_fire_ms.unwrap_or_default(),
                "fires missed while the server was down are skipped"
            );
            schedule.next_fire_ms = expression.next_after(now, schedule.created_ms);
            self.meta
                .update_schedule(&schedule)
                .await
                .map_err(store_error)?;
        }
        let platform = self.clone();
        tokio::spawn(async move { platform.fire_forever().await });
        Ok(())
    }

    async fn fire_forever(self: Arc<Self>) {
        loop {
            let wait = match self.fire_due().await {
                Ok(next) => next.map_or(1000, |due| (due - now_ms()).clamp(1, 1000)),
                Err(e) => {
                    tracing::warn!(error = %e, "firing schedules failed; retrying");
                    1000
                }
            };
            tokio::select! {
                _ = self.schedules_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
            }
        }
    }

    /// Fires every due schedule once; says when the next one is due. A schedule that
    /// cannot fire is logged by name and tried again later, backing off.
    async fn fire_due(&self) -> Result<Option<i64>> {
        let now = now_ms();
        let mut soonest: Option<i64> = None;
        for schedule in self.list_schedules().await? {
            let (true, Some(due)) = (schedule.enabled, schedule.next_fire_ms) else {
                continue;
            };
            let retry_at = self.backoff().get(&schedule.name).map(|(_, at)| *at);
            let due_or_retry = retry_at.map_or(due, |at| at.max(due));
            if due_or_retry > now {
                soonest = Some(soonest.map_or(due_or_retry, |s| s.min(due_or_retry)));
                continue;
            }
            let (name, function) = (schedule.name.clone(), schedule.function.clone());
            match self.fire(schedule, due, now).await {
                Ok(next) => {
                    self.backoff().remove(&name);
                    if let Some(next) = next {
                        soonest = Some(soonest.map_or(next, |s| s.min(next)));
                    }
                }
                Err(e) => {
                    let mut backoff = self.backoff();
                    let failures = backoff.get(&name).map_or(1, |(n, _)| n + 1);
                    let wait_ms = 1000_i64 << failures.min(8);
                    backoff.insert(name.clone(), (failures, now + wait_ms));
                    tracing::warn!(schedule = %name, function = %function, error = %e, failures, retry_in_ms = wait_ms, "a schedule could not fire");
                }
            }
        }
        Ok(soonest)
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, i64)>> {
        match self.schedule_backoff.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Fires `schedule`'s fire due at `due`; says when its next one is due.
    async fn fire(&self, mut schedule: Schedule, due: i64, now: i64) -> Result<Option<i64>> {
        let expression = Expression::parse(&schedule.expression)?;
        let (name, qualifier) = match schedule.function.split_once(':') {
            Some((n, q)) => (n.to_owned(), Some(q.to_owned())),
            None => (schedule.function.clone(), None),
        };
        let event = AsyncEvent {
            id: format!("schedule-{}-{due}", schedule.name),
            function: name,
            qualifier,
            payload: schedule.payload.to_string().into_bytes(),
            attempts: 0,
            enqueued_at: now,
            last_error: None,
        };
        schedule.last_fire_ms = Some(due);
        // One fire per due time; if the server fell behind, the next is after now.
        schedule.next_fire_ms = expression.next_after(due.max(now), schedule.created_ms);
        self.meta
            .fire_schedule(&schedule, &event)
            .await
            .map_err(store_error)?;
        tracing::debug!(schedule = %schedule.name, due, "fired");
        self.async_ready.notify_one();
        Ok(schedule.next_fire_ms)
    }
}
