//! `GET /nimbus/v1/nodes`: the cluster's nodes, their load and when each was last heard from.

use std::sync::Arc;

use axum::Json;
use nimbus_control::Membership;
use serde_json::{json, Value};

use crate::ApiError;

/// Lists every node the shared store knows, live or not.
pub(crate) async fn list(membership: Arc<Membership>) -> Result<Json<Value>, ApiError> {
    let nodes = membership.nodes().await?;
    Ok(Json(json!({ "nodes": nodes })))
}
