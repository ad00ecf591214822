//! `/nimbus/v1/schedules`: functions invoked on cron or rate expressions.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::{NewSchedule, Platform};
use nimbus_core::schedule::Schedule;
use nimbus_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::lambda::{parse_json, read_body};
use crate::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleIn {
    name: Option<String>,
    function: Option<String>,
    expression: Option<String>,
    payload: Option<Value>,
    enabled: Option<bool>,
}

fn view(s: &Schedule) -> Value {
    json!({
        "name": s.name,
        "function": s.function,
        "expression": s.expression,
        "payload": s.payload,
        "enabled": s.enabled,
        "next_fire_ms": s.next_fire_ms,
        "last_fire_ms": s.last_fire_ms,
    })
}

fn required(value: Option<String>, field: &str) -> Result<String, Error> {
    value.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidParameterValue,
            format!("{field} is required"),
        )
    })
}

/// `POST /nimbus/v1/schedules`: 201.
pub(crate) async fn create(
    State(platform): State<Arc<Platform>>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "CreateSchedule").await?;
    let request: ScheduleIn = parse_json(&body)?;
    let schedule = platform
        .create_schedule(NewSchedule {
            name: required(request.name, "name")?,
            function: required(request.function, "function")?,
            expression: required(request.expression, "expression")?,
            payload: request.payload,
            enabled: request.enabled,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(&schedule))).into_response())
}

/// `GET /nimbus/v1/schedules`.
pub(crate) async fn list(State(platform): State<Arc<Platform>>) -> Result<Json<Value>, ApiError> {
    let schedules = platform.list_schedules().await?;
    Ok(Json(
        json!({ "schedules": schedules.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /nimbus/v1/schedules/{name}`: 204.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
