//! Function resources: create, get, list, update code and configuration, delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::{Error, ErrorKind};
use serde_json::{json, Value};

use super::shapes::{
    self, function_configuration, CreateFunctionIn, UpdateCodeIn, UpdateConfigurationIn,
};
use super::{parse_json, read_body};
use crate::ApiError;

/// Largest control-plane request Lambda accepts (a 50 MB zip, base64-encoded, plus fields).
const CONTROL_BODY_MAX: usize = 70_167_211;

type Params = Query<HashMap<String, String>>;

fn unsupported_package() -> Error {
    Error::invalid(
        "Nimbus takes code as Code.ZipFile (a base64 zip); S3 and container image packages are not supported",
    )
}

/// CreateFunction.
pub(crate) async fn create(
    State(platform): State<Arc<Platform>>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, CONTROL_BODY_MAX, "CreateFunction").await?;
    let request: CreateFunctionIn = parse_json(&body)?;
    let name = request.function_name.ok_or_else(|| {
        Error::new(
            ErrorKind::Validation,
            "1 validation error detected: Value null at 'functionName' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if request
        .config
        .package_type
        .as_deref()
        .is_some_and(|p| p != "Zip")
    {
        return Err(unsupported_package().into());
    }
    if request
        .config
        .layers
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(
            Error::invalid("Layers are not supported yet; bundle dependencies in the zip").into(),
        );
    }
    let code = request.code.ok_or_else(|| {
        Error::new(
            ErrorKind::Validation,
            "1 validation error detected: Value null at 'code' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if code.s3_bucket.is_some() || code.image_uri.is_some() {
        return Err(unsupported_package().into());
    }
    let zip = match code.zip_file {
        Some(b64) => shapes::decode_zip(&b64)?,
        None => return Err(unsupported_package().into()),
    };
    let patch = request.config.into_patch();
    let mut created = platform.create_function(&name, patch, zip).await?;
    if request.publish {
        created = platform.publish_version(&name, None, None, None).await?;
    }
    let out = function_configuration(platform.scope(), &created, true);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// GetFunction.
pub(crate) async fn get(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let function = platform
        .get_function(&name, super::qualifier(&params))
        .await?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9300");
    let scaling = platform.get_scaling(&function.name).await?;
    let mut configuration = function_configuration(platform.scope(), &function, true);
    alias_arn(&platform, &name, &params, &mut configuration);
    let mut out = json!({
        "Configuration": configuration,
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("http://{host}/nimbus/v1/functions/{}/code", function.name),
        },
    });
    if let Some(reserved) = scaling.reserved_concurrency {
        out["Concurrency"] = json!({ "ReservedConcurrentExecutions": reserved });
    }
    Ok(Json(out))
}

/// GetFunctionConfiguration.
pub(crate) async fn get_configuration(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let function = platform
        .get_function(&name, super::qualifier(&params))
        .await?;
    let mut out = function_configuration(platform.scope(), &function, true);
    alias_arn(&platform, &name, &params, &mut out);
    Ok(Json(out))
}

/// Asked through an alias, a configuration carries the alias's ARN, as Lambda's does.
fn alias_arn(platform: &Platform, name: &str, params: &HashMap<String, String>, out: &mut Value) {
    let qualifier = super::qualifier(params);
    if let Some((function, alias)) = platform.alias_named(name, qualifier) {
        out["FunctionArn"] = json!(platform.scope().qualified_arn(&function, &alias));
    }
}

/// ListFunctions.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let page = platform
        .list_functions(
            params.get("Marker").map(String::as_str),
            super::max_items(&params)?,
        )
        .await?;
    let functions: Vec<Value> = page
        .items
        .iter()
        .map(|f| function_configuration(platform.scope(), f, false))
        .collect();
    let mut out = json!({ "Functions": functions });
    if let Some(marker) = page.next_marker {
        out["NextMarker"] = json!(marker);
    }
    Ok(Json(out))
}

/// UpdateFunctionCode.
pub(crate) async fn update_code(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, CONTROL_BODY_MAX, "UpdateFunctionCode").await?;
    let request: UpdateCodeIn = parse_json(&body)?;
    if request.s3_bucket.is_some() || request.image_uri.is_some() {
        return Err(unsupported_package().into());
    }
    let zip = match request.zip_file {
        Some(b64) => shapes::decode_zip(&b64)?,
        None => {
            return Err(Error::invalid(
                "Please provide a source for function code: ZipFile (S3 and image sources are not supported).",
            )
            .into())
        }
    };
    let mut updated = platform
        .update_code(&name, zip, request.revision_id.as_deref(), request.dry_run)
        .await?;
    if request.publish && !request.dry_run {
        updated = platform.publish_version(&name, None, None, None).await?;
    }
    Ok(Json(function_configuration(
        platform.scope(),
        &updated,
        true,
    )))
}

/// UpdateFunctionConfiguration.
pub(crate) async fn update_configuration(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, CONTROL_BODY_MAX, "UpdateFunctionConfiguration").await?;
    let request: UpdateConfigurationIn = parse_json(&body)?;
    if request
        .config
        .layers
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(
            Error::invalid("Layers are not supported yet; bundle dependencies in the zip").into(),
        );
    }
    let updated = platform
        .update_configuration(
            &name,
            request.config.into_patch(),
            request.revision_id.as_deref(),
        )
        .await?;
    Ok(Json(function_configuration(
        platform.scope(),
        &updated,
        true,
    )))
}

/// DeleteFunction: 204 with no body, as Lambda answers.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<StatusCode, ApiError> {
    platform
        .delete_function(&name, super::qualifier(&params))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The code zip behind GetFunction's `Code.Location`.
pub(crate) async fn download_code(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let zip = platform.code_zip(&name).await?;
    Ok(([("content-type", "application/zip")], zip).into_response())
}
