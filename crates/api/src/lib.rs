//! The HTTP edge: the Lambda-compatible API (and, later, function URLs, the Nimbus
//! extensions and the console). Requests become typed calls on the control plane; nothing
//! below this crate knows HTTP (except each instance's Runtime API).

mod auth;
mod error;
mod lambda;
mod nimbus;
mod trigger;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use nimbus_control::Platform;

pub use auth::Credentials;
pub use error::ApiError;

/// The request id of one API request, also the invocation's request id.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Every route Nimbus serves on its public address; with `credentials`, requests must be
/// signed with them.
/// `isolation` describes what the sandbox does on this host, for `/nimbus/v1/health`.
pub fn router(
    platform: Arc<Platform>,
    credentials: Option<Credentials>,
    isolation: serde_json::Value,
) -> Router {
    lambda::routes()
        .merge(nimbus::routes(isolation))
        .merge(trigger::routes())
        .fallback(error::unknown_operation)
        .with_state(platform)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(credentials),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(request_id))
}

/// Gives each request an id, visible to handlers and sent back as `x-amzn-RequestId`.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}
