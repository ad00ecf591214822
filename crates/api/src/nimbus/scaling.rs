//! `GET|PUT /nimbus/v1/functions/{name}/scaling`: per-function keep-alive (and the
//! reserved concurrency, read-only here; set it with PutFunctionConcurrency).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::Scaling;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::lambda::{parse_json, read_body};
use crate::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ScalingIn {
    /// Seconds; `null` returns to the server's default.
    keep_alive_seconds: Option<i64>,
}

fn view(scaling: Scaling) -> Json<Value> {
    Json(json!({
        "KeepAliveSeconds": scaling.keep_alive_s,
        "ReservedConcurrentExecutions": scaling.reserved_concurrency,
    }))
}

/// The function's scaling settings.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(view(platform.get_scaling(&name).await?))
}

/// Sets the function's keep-alive.
pub(crate) async fn put(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, 64 * 1024, "PutScaling").await?;
    let request: ScalingIn = parse_json(&body)?;
    Ok(view(
        platform
            .set_keep_alive(&name, request.keep_alive_seconds)
            .await?,
    ))
}
