//! Async settings: Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nimbus_control::{EventConfigPatch, Platform};
use nimbus_core::EventInvokeConfig;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_json, read_body};
use crate::ApiError;

type Params = Query<HashMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationIn {
    destination: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationsIn {
    on_success: Option<DestinationIn>,
    on_failure: Option<DestinationIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigIn {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationsIn>,
}

impl From<ConfigIn> for EventConfigPatch {
    fn from(c: ConfigIn) -> Self {
        let destinations = c.destination_config;
        let pick = |d: Option<&DestinationIn>| d.map(|d| d.destination.clone().unwrap_or_default());
        EventConfigPatch {
            maximum_retry_attempts: c.maximum_retry_attempts,
            maximum_event_age_s: c.maximum_event_age_in_seconds,
            on_success: pick(destinations.as_ref().and_then(|d| d.on_success.as_ref())),
            on_failure: pick(destinations.as_ref().and_then(|d| d.on_failure.as_ref())),
        }
    }
}

fn view(platform: &Platform, c: &EventInvokeConfig) -> Value {
    let arn = match &c.qualifier {
        Some(q) => platform.scope().qualified_arn(&c.function, q),
        None => platform.scope().function_arn(&c.function),
    };
    let destination = |d: &Option<String>| match d {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    json!({
        "LastModified": c.last_modified,
        "FunctionArn": arn,
        "MaximumRetryAttempts": c.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": c.maximum_event_age_s,
        "DestinationConfig": {
            "OnSuccess": destination(&c.on_success),
            "OnFailure": destination(&c.on_failure),
        },
    })
}

async fn write(
    platform: &Platform,
    name: &str,
    params: &HashMap<String, String>,
    body: Body,
    merge: bool,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, 64 * 1024, "PutFunctionEventInvokeConfig").await?;
    let request: ConfigIn = parse_json(&body)?;
    let config = platform
        .put_event_config(name, super::qualifier(params), request.into(), merge)
        .await?;
    Ok(Json(view(platform, &config)))
}

/// `PUT /2019-09-25/functions/{name}/event-invoke-config`: replaces the settings.
pub(crate) async fn put(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    write(&platform, &name, &params, body, false).await
}

/// `POST /2019-09-25/functions/{name}/event-invoke-config`: changes the settings given.
pub(crate) async fn update(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    write(&platform, &name, &params, body, true).await
}

/// `GET /2019-09-25/functions/{name}/event-invoke-config`.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let config = platform
        .get_event_config(&name, super::qualifier(&params))
        .await?;
    Ok(Json(view(&platform, &config)))
}

/// `DELETE /2019-09-25/functions/{name}/event-invoke-config`: 204.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<StatusCode, ApiError> {
    platform
        .delete_event_config(&name, super::qualifier(&params))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /2019-09-25/functions/{name}/event-invoke-config/list`.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let configs = platform.list_event_configs(&name).await?;
    let views: Vec<Value> = configs.iter().map(|c| view(&platform, c)).collect();
    Ok(Json(json!({ "FunctionEventInvokeConfigs": views })))
}
