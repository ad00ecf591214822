//! `/nimbus/v1/dead-letters`: async events that could not be delivered; re-drive or delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::{DeadLetter, ErrorKind};
use serde_json::{json, Value};

use crate::ApiError;

type Params = Query<HashMap<String, String>>;

fn view(letter: &DeadLetter) -> Value {
    let event = &letter.event;
    json!({
        "id": event.id,
        "function": event.function,
        "qualifier": event.qualifier,
        "payload": nimbus_control::payload_json(&event.payload),
        "condition": letter.condition,
        "attempts": event.attempts,
        "error": event.last_error,
        "enqueued_at_ms": event.enqueued_at,
        "failed_at_ms": letter.failed_at,
    })
}

/// `GET /nimbus/v1/dead-letters[?function=N]`.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let letters = platform
        .dead_letters(params.get("function").map(String::as_str))
        .await?;
    Ok(Json(
        json!({ "dead_letters": letters.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `POST /nimbus/v1/dead-letters/{id}/redrive`.
pub(crate) async fn redrive_one(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.redrive(&id).await?;
    Ok(Json(json!({ "redriven": 1 })))
}

/// `POST /nimbus/v1/dead-letters/redrive[?function=N]`: every dead letter (of N).
pub(crate) async fn redrive_all(
    State(platform): State<Arc<Platform>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let letters = platform
        .dead_letters(params.get("function").map(String::as_str))
        .await?;
    let mut redriven = 0;
    for letter in &letters {
        match platform.redrive(&letter.event.id).await {
            Ok(()) => redriven += 1,
            // Deleted or re-driven by someone else since the listing: not this call's to
            // send, and no reason to answer an (undocumented) 404 after sending the rest.
            Err(e) if e.kind == ErrorKind::ResourceNotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(json!({ "redriven": redriven })))
}

/// `DELETE /nimbus/v1/dead-letters/{id}`: 204.
pub(crate) async fn delete(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_dead_letter(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
