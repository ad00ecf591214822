//! Invoke: runs a function and answers with its result, Lambda-style.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use nimbus_control::{Invoke, Platform};
use nimbus_core::{limits, Error, ErrorKind};

use super::read_body;
use crate::{ApiError, RequestId};

/// How much of the invocation log `X-Amz-Log-Type: Tail` returns, bytes.
const LOG_TAIL_BYTES: usize = 4096;

/// Longest `X-Amz-Client-Context`, bytes of base64.
const CLIENT_CONTEXT_MAX: usize = 3583;

fn bad_content(message: String) -> Error {
    Error::new(ErrorKind::InvalidRequestContent, message)
}

/// Lambda's answer to an Event payload over the async limit.
fn too_large_for_event(size: usize) -> Error {
    Error::new(
        ErrorKind::RequestTooLarge,
        format!(
            "{size} byte payload is too large for the Event invocation type (limit {} bytes)",
            limits::ASYNC_PAYLOAD_MAX_BYTES
        ),
    )
}

/// Decodes `X-Amz-Client-Context` (base64 JSON) into the JSON the runtime receives.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(raw) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    let bad = || bad_content("Client context must be a valid Base64-encoded JSON object.".into());
    let raw = raw.to_str().map_err(|_| bad())?;
    if raw.len() > CLIENT_CONTEXT_MAX {
        return Err(Error::invalid(format!(
            "Client context must be at most {CLIENT_CONTEXT_MAX} bytes"
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad())?;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&decoded)
        .map_err(|_| bad())?;
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

/// `POST /2015-03-31/functions/{name}/invocations`.
pub(crate) async fn invoke(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let qualifier = params.get("Qualifier").cloned();
    let tail = match headers
        .get("x-amz-log-type")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(Error::validation(
                other,
                "logType",
                "Member must satisfy enum value set: [Tail, None]",
            )
            .into())
        }
    };
    match invocation_type {
        "RequestResponse" => {}
        "DryRun" => {
            platform.get_function(&name, qualifier.as_deref()).await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        "Event" => {}
        other => {
            return Err(Error::validation(
                other,
                "invocationType",
                "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
            )
            .into())
        }
    }
    let asynchronous = invocation_type == "Event";
    let payload = if asynchronous {
        // Read a little past the limit, to say how large the payload was.
        let payload = crate::intake::read(body, limits::SYNC_PAYLOAD_MAX_BYTES, None)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::RequestTooLarge => too_large_for_event(limits::SYNC_PAYLOAD_MAX_BYTES),
                _ => e,
            })?;
        if payload.len() > limits::ASYNC_PAYLOAD_MAX_BYTES {
            return Err(too_large_for_event(payload.len()).into());
        }
        payload
    } else {
        read_body(body, limits::SYNC_PAYLOAD_MAX_BYTES, "InvokeFunction").await?
    };
    let payload = if payload.iter().all(u8::is_ascii_whitespace) {
        bytes::Bytes::from_static(b"{}")
    } else {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(bad_content(format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            ))
            .into());
        }
        payload
    };
    let request = Invoke {
        function: name,
        qualifier,
        payload,
        client_context: client_context(&headers)?,
        request_id,
    };
    if asynchronous {
        platform.enqueue(request).await?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let result = platform.invoke(request).await?;
    let mut response = (
        StatusCode::OK,
        [("content-type", "application/json")],
        result.payload,
    )
        .into_response();
    let out = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&result.executed_version) {
        out.insert("x-amz-executed-version", v);
    }
    if result.function_error {
        out.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let last = &result.log[result.log.len().saturating_sub(LOG_TAIL_BYTES)..];
        let encoded = base64::engine::general_purpose::STANDARD.encode(last);
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            out.insert("x-amz-log-result", v);
        }
    }
    Ok(response)
}
