//! GetAccountSettings.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use nimbus_control::Platform;
use nimbus_core::limits;
use serde_json::{json, Value};

use crate::ApiError;

/// `GET /2016-08-19/account-settings`: Lambda's quotas and this node's usage.
pub(crate) async fn get(State(platform): State<Arc<Platform>>) -> Result<Json<Value>, ApiError> {
    let usage = platform.account_usage().await?;
    Ok(Json(json!({
        "AccountLimit": {
            "TotalCodeSize": limits::TOTAL_CODE_SIZE_BYTES,
            "CodeSizeUnzipped": limits::CODE_UNZIPPED_MAX_BYTES,
            "CodeSizeZipped": limits::CODE_ZIPPED_MAX_BYTES,
            "ConcurrentExecutions": usage.concurrent_executions,
            "UnreservedConcurrentExecutions": usage.unreserved_concurrent_executions,
        },
        "AccountUsage": {
            "TotalCodeSize": usage.total_code_size,
            "FunctionCount": usage.function_count,
        },
    })))
}
