//! Provisioned concurrency: Put/Get/Delete/ListProvisionedConcurrencyConfig(s).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::{Platform, ProvisionedStatus};
use nimbus_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_json, read_body};
use crate::ApiError;

type Params = Query<HashMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutIn {
    provisioned_concurrent_executions: Option<i64>,
}

fn view(status: &ProvisionedStatus) -> Value {
    json!({
        "RequestedProvisionedConcurrentExecutions": status.config.requested,
        "AvailableProvisionedConcurrentExecutions": status.available,
        "AllocatedProvisionedConcurrentExecutions": status.available,
        "Status": status.status(),
        "LastModified": status.config.last_modified,
    })
}

/// `PUT /2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=Q`: 202.
pub(crate) async fn put(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "PutProvisionedConcurrencyConfig").await?;
    let request: PutIn = parse_json(&body)?;
    let requested = request.provisioned_concurrent_executions.ok_or_else(|| {
        Error::new(
            ErrorKind::Validation,
            "1 validation error detected: Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let status = platform
        .put_provisioned(&name, super::qualifier(&params), requested)
        .await?;
    let mut out = view(&status);
    // Lambda answers the put before any instance is up.
    out["Status"] = json!("IN_PROGRESS");
    if status.available >= status.config.requested {
        out["Status"] = json!("READY");
    }
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

/// `GET /2019-09-30/functions/{name}/provisioned-concurrency`: one configuration with
/// `?Qualifier=Q`, all of them with `?List=ALL`.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    if params.contains_key("List") {
        let all = platform.list_provisioned(&name).await?;
        let configs: Vec<Value> = all
            .iter()
            .map(|status| {
                let mut v = view(status);
                v["FunctionArn"] = json!(platform
                    .scope()
                    .qualified_arn(&status.config.function, &status.config.qualifier));
                v
            })
            .collect();
        return Ok(Json(json!({ "ProvisionedConcurrencyConfigs": configs })));
    }
    let status = platform
        .get_provisioned(&name, super::qualifier(&params))
        .await?;
    Ok(Json(view(&status)))
}

/// `DELETE /2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=Q`: 204.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<StatusCode, ApiError> {
    platform
        .delete_provisioned(&name, super::qualifier(&params))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
