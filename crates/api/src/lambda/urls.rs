//! Function URL configurations: Create/Get/Update/Delete/ListFunctionUrlConfig(s).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::{Platform, UrlPatch};
use nimbus_core::UrlConfig;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_json, qualifier, read_body};
use crate::ApiError;

type Params = Query<HashMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlIn {
    auth_type: Option<String>,
    cors: Option<Value>,
    invoke_mode: Option<String>,
}

impl From<UrlIn> for UrlPatch {
    fn from(u: UrlIn) -> Self {
        UrlPatch {
            auth_type: u.auth_type,
            cors: u.cors,
            invoke_mode: u.invoke_mode,
        }
    }
}

/// The address a function URL is reached at: this server's trigger path.
pub(crate) fn function_url(headers: &HeaderMap, url: &UrlConfig) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9300");
    match &url.qualifier {
        Some(q) => format!("http://{host}/fn/{}:{q}/", url.function),
        None => format!("http://{host}/fn/{}/", url.function),
    }
}

fn view(platform: &Platform, headers: &HeaderMap, url: &UrlConfig) -> Value {
    let arn = match &url.qualifier {
        Some(q) => platform.scope().qualified_arn(&url.function, q),
        None => platform.scope().function_arn(&url.function),
    };
    let mut out = json!({
        "FunctionUrl": function_url(headers, url),
        "FunctionArn": arn,
        "AuthType": url.auth_type,
        "CreationTime": url.creation_time,
        "LastModifiedTime": url.last_modified_time,
        "InvokeMode": url.invoke_mode,
    });
    if let Some(cors) = &url.cors {
        out["Cors"] = cors.clone();
    }
    out
}

/// `POST /2021-10-31/functions/{name}/url`: 201.
pub(crate) async fn create(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "CreateFunctionUrlConfig").await?;
    let request: UrlIn = parse_json(&body)?;
    let url = platform
        .create_url(&name, qualifier(&params), request.into())
        .await?;
    let mut out = view(&platform, &headers, &url);
    if let Some(o) = out.as_object_mut() {
        o.remove("LastModifiedTime");
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /2021-10-31/functions/{name}/url`.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let url = platform.get_url(&name, qualifier(&params)).await?;
    Ok(Json(view(&platform, &headers, &url)))
}

/// `PUT /2021-10-31/functions/{name}/url`.
pub(crate) async fn update(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, 64 * 1024, "UpdateFunctionUrlConfig").await?;
    let request: UrlIn = parse_json(&body)?;
    let url = platform
        .update_url(&name, qualifier(&params), request.into())
        .await?;
    Ok(Json(view(&platform, &headers, &url)))
}

/// `DELETE /2021-10-31/functions/{name}/url`: 204.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<StatusCode, ApiError> {
    platform.delete_url(&name, qualifier(&params)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /2021-10-31/functions/{name}/urls`.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let urls = platform.list_urls(&name).await?;
    let configs: Vec<Value> = urls.iter().map(|u| view(&platform, &headers, u)).collect();
    Ok(Json(json!({ "FunctionUrlConfigs": configs })))
}
