//! PublishVersion and ListVersionsByFunction.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::Platform;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::function_configuration;
use super::{max_items, parse_json, read_body};
use crate::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

/// `POST /2015-03-31/functions/{name}/versions`.
pub(crate) async fn publish(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "PublishVersion").await?;
    let request: PublishIn = parse_json(&body)?;
    let version = platform
        .publish_version(
            &name,
            request.code_sha256.as_deref(),
            request.description,
            request.revision_id.as_deref(),
        )
        .await?;
    let out = function_configuration(platform.scope(), &version, true);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /2015-03-31/functions/{name}/versions`.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = platform
        .list_versions(
            &name,
            params.get("Marker").map(String::as_str),
            max_items(&params)?,
        )
        .await?;
    let versions: Vec<Value> = page
        .items
        .iter()
        .map(|f| function_configuration(platform.scope(), f, false))
        .collect();
    let mut out = json!({ "Versions": versions });
    if let Some(marker) = page.next_marker {
        out["NextMarker"] = json!(marker);
    }
    Ok(Json(out))
}
