//! `GET /nimbus/v1/instances[?function=N]`: every live instance, and per-function counters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use nimbus_control::Platform;
use serde_json::{json, Value};

/// Lists live instances and cold/warm/throttle counters.
pub(crate) async fn list(
    State(platform): State<Arc<Platform>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Value> {
    let function = params.get("function").map(String::as_str);
    let scheduler = platform.scheduler();
    Json(json!({
        "instances": scheduler.instances(function),
        "functions": scheduler.counters(function),
    }))
}
