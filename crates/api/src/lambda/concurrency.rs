//! Reserved concurrency: PutFunctionConcurrency, GetFunctionConcurrency,
//! DeleteFunctionConcurrency.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_json, read_body};
use crate::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutConcurrencyIn {
    reserved_concurrent_executions: Option<i64>,
}

/// `PUT /2017-10-31/functions/{name}/concurrency`.
pub(crate) async fn put(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, 64 * 1024, "PutFunctionConcurrency").await?;
    let request: PutConcurrencyIn = parse_json(&body)?;
    let reserved = request.reserved_concurrent_executions.ok_or_else(|| {
        Error::new(
            ErrorKind::Validation,
            "1 validation error detected: Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let reserved = platform.put_reserved_concurrency(&name, reserved).await?;
    Ok(Json(json!({ "ReservedConcurrentExecutions": reserved })))
}

/// `GET /2019-09-30/functions/{name}/concurrency`: `{}` when nothing is reserved.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let scaling = platform.get_scaling(&name).await?;
    Ok(Json(match scaling.reserved_concurrency {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

/// `DELETE /2017-10-31/functions/{name}/concurrency`.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_reserved_concurrency(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
