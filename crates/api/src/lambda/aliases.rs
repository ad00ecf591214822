//! Aliases: CreateAlias, GetAlias, UpdateAlias, DeleteAlias, ListAliases.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::{AliasPatch, Platform};
use nimbus_core::{AliasConfig, Error, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{max_items, parse_json, read_body};
use crate::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingIn {
    additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingIn>,
    revision_id: Option<String>,
}

/// `AliasConfiguration`.
fn alias_configuration(platform: &Platform, alias: &AliasConfig) -> Value {
    let mut out = json!({
        "AliasArn": platform.scope().qualified_arn(&alias.function, &alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    });
    if !alias.additional_version_weights.is_empty() {
        out["RoutingConfig"] =
            json!({ "AdditionalVersionWeights": alias.additional_version_weights });
    }
    out
}

fn required(value: Option<String>, field: &str) -> Result<String, Error> {
    value.ok_or_else(|| {
        Error::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

/// `POST /2015-03-31/functions/{name}/aliases`.
pub(crate) async fn create(
    State(platform): State<Arc<Platform>>,
    Path(function): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 64 * 1024, "CreateAlias").await?;
    let request: AliasIn = parse_json(&body)?;
    let name = required(request.name, "name")?;
    let version = required(request.function_version, "functionVersion")?;
    let weights = request
        .routing_config
        .and_then(|r| r.additional_version_weights);
    let alias = platform
        .create_alias(&function, &name, &version, request.description, weights)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(alias_configuration(&platform, &alias)),
    )
        .into_response())
}

/// `GET /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path((function, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let alias = platform.get_alias(&function, &name).await?;
    Ok(Json(alias_configuration(&platform, &alias)))
}

/// `PUT /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn update(
    State(platform): State<Arc<Platform>>,
    Path((function, name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, 64 * 1024, "UpdateAlias").await?;
    let request: AliasIn = parse_json(&body)?;
    let patch = AliasPatch {
        function_version: request.function_version,
        description: request.description,
        additional_version_weights: request
            .routing_config
            .map(|r| r.additional_version_weights.unwrap_or_default()),
    };
    let alias = platform
        .update_alias(&function, &name, patch, request.revision_id.as_deref())
        .await?;
    Ok(Json(alias_configuration(&platform, &alias)))
}

/// `DELETE /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path((function, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    platform.delete_alias(&function, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /2015-03-31/functions/{name}/aliases`.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Path(function): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = platform
        .list_aliases(
            &function,
            params.get("FunctionVersion").map(String::as_str),
            params.get("Marker").map(String::as_str),
            max_items(&params)?,
        )
        .await?;
    let aliases: Vec<Value> = page
        .items
        .iter()
        .map(|a| alias_configuration(&platform, a))
        .collect();
    let mut out = json!({ "Aliases": aliases });
    if let Some(marker) = page.next_marker {
        out["NextMarker"] = json!(marker);
    }
    Ok(Json(out))
}
