//! Logs (`/nimbus/v1/functions/{name}/logs`, followable as server-sent events), usage
//! (`/nimbus/v1/usage`) and Prometheus metrics (`/metrics`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::Error;
use nimbus_telemetry::{Gauges, LogEntry, LogQuery, UsageQuery};
use serde_json::{json, Value};

use crate::ApiError;

type Params = Query<HashMap<String, String>>;

/// A time parameter: epoch milliseconds, or an age such as `10m`, `2h`, `30s`, `1d`.
fn parse_time(raw: &str) -> Result<i64, Error> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    // By the last character, not byte: `since=ró` split inside `ó` and panicked.
    let mut chars = raw.chars();
    let unit = chars.next_back();
    let scale: i64 = match unit {
        Some('s') => 1_000,
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        _ => 0,
    };
    let age = chars
        .as_str()
        .parse::<i64>()
        .ok()
        .filter(|n| scale > 0 && *n >= 0)
        // Checked: an age of 10^17 days overflowed (a panic in debug builds).
        .and_then(|n| n.checked_mul(scale))
        .and_then(|ms| chrono::Utc::now().timestamp_millis().checked_sub(ms));
    age.ok_or_else(|| {
        Error::invalid(format!(
            "'{raw}' is not a time: give epoch milliseconds or an age like 10m, 2h, 1d"
        ))
    })
}

fn log_query(function: String, params: &HashMap<String, String>) -> Result<LogQuery, Error> {
    let time = |key: &str| params.get(key).map(|v| parse_time(v)).transpose();
    let limit = params
        .get("limit")
        .map(|l| {
            l.parse::<u32>()
                .map_err(|_| Error::invalid(format!("limit '{l}' is not a number")))
        })
        .transpose()?;
    Ok(LogQuery {
        function,
        since_ms: time("since")?,
        until_ms: time("until")?,
        request_id: params.get("request_id").cloned(),
        grep: params.get("grep").cloned(),
        limit,
    })
}

fn entry_json(entry: &LogEntry) -> Value {
    json!({
        "function": entry.function,
        "version": entry.version,
        "request_id": entry.request_id,
        "at_ms": entry.at_ms,
        "text": entry.text,
    })
}

/// `GET /nimbus/v1/functions/{name}/logs[?since&until&request_id&grep&limit&follow=true]`.
pub(crate) async fn logs(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let function = platform.get_function(&name, None).await?;
    let query = log_query(function.name, &params)?;
    let telemetry = platform.telemetry().clone();
    // Subscribe before reading the store, so nothing falls between the two.
    let live = telemetry.follow();
    let stored = telemetry.logs(&query).await.map_err(Error::service)?;
    if params.get("follow").map(String::as_str) != Some("true") {
        let entries: Vec<Value> = stored.iter().map(entry_json).collect();
        return Ok(Json(json!({ "logs": entries })).into_response());
    }
    let seen: std::collections::HashSet<String> =
        stored.iter().map(|e| e.request_id.clone()).collect();
    let backlog = futures_util::stream::iter(
        stored
            .into_iter()
            .map(|e| Ok::<_, Infallible>(Event::default().data(entry_json(&e).to_string()))),
    );
    let follow =
        futures_util::stream::unfold((live, query, seen), |(mut live, query, seen)| async move {
            loop {
                match live.recv().await {
                    Ok(entry) if entry.matches(&query) && !seen.contains(&entry.request_id) => {
                        let event = Event::default().data(entry_json(&entry).to_string());
                        return Some((Ok::<_, Infallible>(event), (live, query, seen)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        let event = Event::default()
                            .event("lagged")
                            .data(format!("{missed} entries skipped"));
                        return Some((Ok(event), (live, query, seen)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    let stream = futures_util::StreamExt::chain(backlog, follow);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `GET /nimbus/v1/usage[?from=YYYY-MM-DD&to=YYYY-MM-DD&function=N]`.
pub(crate) async fn usage(
    State(platform): State<Arc<Platform>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let day = |key: &str| -> Result<Option<String>, Error> {
        match params.get(key) {
            None => Ok(None),
            Some(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() => {
                Ok(Some(d.clone()))
            }
            Some(d) => Err(Error::invalid(format!(
                "{key} '{d}' is not a date (YYYY-MM-DD)"
            ))),
        }
    };
    let query = UsageQuery {
        from: day("from")?,
        to: day("to")?,
        function: params.get("function").cloned(),
    };
    let telemetry = platform.telemetry();
    let lines = telemetry.usage(&query).await.map_err(Error::service)?;
    let requests: u64 = lines.iter().map(|l| l.requests).sum();
    let gb_seconds: f64 = lines.iter().map(|l| l.billed_gb_seconds).sum();
    let cost: f64 = lines.iter().map(|l| l.cost).sum();
    Ok(Json(json!({
        "functions": lines,
        "total": {"requests": requests, "billed_gb_seconds": gb_seconds, "cost": cost},
        "prices": telemetry.prices(),
        "currency": "USD",
    })))
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(platform): State<Arc<Platform>>) -> Result<Response, ApiError> {
    let scheduler = platform.scheduler();
    let mut by_state: HashMap<String, i64> = HashMap::new();
    let instances = scheduler.instances(None);
    for i in &instances {
        *by_state
            .entry(format!("{:?}", i.state).to_lowercase())
            .or_default() += 1;
    }
    let (depth, oldest_ms) = platform.queue_depth().await?;
    let dead = platform.dead_letters(None).await?.len();
    let gauges = Gauges {
        concurrent_executions: instances
            .iter()
            .filter(|i| {
                matches!(
                    i.state,
                    nimbus_scheduler::InstanceState::Busy
                        | nimbus_scheduler::InstanceState::Starting
                )
            })
            .count() as i64,
        instances_by_state: by_state.into_iter().collect(),
        async_queue_depth: depth as i64,
        async_queue_oldest_seconds: oldest_ms as f64 / 1000.0,
        dead_letters: dead as i64,
    };
    let text = platform
        .telemetry()
        .metrics()
        .encode(&gauges)
        .map_err(Error::service)?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_epoch_ms_or_ages_and_anything_else_is_refused_without_a_panic() {
        assert_eq!(
            parse_time("1700000000000").expect("epoch ms"),
            1_700_000_000_000
        );
        let now = chrono::Utc::now().timestamp_millis();
        let ten_minutes_ago = parse_time("10m").expect("an age");
        assert!((now - 600_000 - ten_minutes_ago).abs() < 5_000);
        // A multi-byte last character (found by schemathesis: it panicked), an age past i64.
        for bad in [
            "ró",
            "é",
            "",
            "m",
            "-5m",
            "10x",
            "99999999999999999d",
            "5 m",
        ] {
            let err = parse_time(bad).expect_err(bad);
            assert!(err.message.contains("is not a time"), "{bad}: {err}");
        }
    }
}
