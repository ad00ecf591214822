//! The HTTP edge: the Lambda-compatible API (and, later, function URLs, the Nimbus
//! extensions and the console). Requests become typed calls on the control plane; nothing
//! below this crate knows HTTP (except each instance's Runtime API).

mod auth;
mod cluster;
mod error;
mod intake;
mod lambda;
mod nimbus;
mod serve;
mod trigger;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use nimbus_control::Platform;

pub use auth::Credentials;
pub use cluster::HttpForwarder;
pub use error::ApiError;
pub use nimbus::{CgroupVersion, Isolation};
pub use serve::{serve, ConnectionLimits};

/// How the API treats requests.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// With credentials, every request must be SigV4-signed with them; `None` turns
    /// authentication off.
    pub credentials: Option<Credentials>,
    /// The server's region: signatures must be scoped to it.
    pub region: String,
    /// Longest a request body may pause before the request is cut off (408).
    pub body_idle_timeout: Duration,
    /// MB of body held at once, node-wide, for requests whose signature can only be
    /// checked once their body is in (no `x-amz-content-sha256`); a request that finds no
    /// room within `body_idle_timeout` is answered 429.
    pub unverified_body_budget_mb: u32,
}

/// The request id of one API request, also the invocation's request id.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Every route Nimbus serves on its public address, guarded as `config` says. Layers, from
/// the outside in: request id; the signature checks a request's head allows (refused at
/// once); intake (413 from `Content-Length` over the route's limit, the body bounded and
/// timed); the body hashed and the signature finished; the handler.
/// `isolation` describes what the sandbox does on this host, for `/nimbus/v1/health`.
/// `membership` is this node's place in the cluster, for `/nimbus/v1/nodes`.
pub fn router(
    platform: Arc<Platform>,
    membership: Arc<nimbus_control::Membership>,
    config: ApiConfig,
    isolation: Isolation,
) -> Router {
    let auth = Arc::new(auth::AuthState::new(
        config.credentials,
        config.region,
        config.unverified_body_budget_mb,
        config.body_idle_timeout,
    ));
    let intake = Arc::new(intake::IntakeConfig {
        body_idle_timeout: config.body_idle_timeout,
    });
    lambda::routes()
        .merge(nimbus::routes(isolation, membership))
        .merge(trigger::routes())
        .merge(cluster::routes())
        .fallback(error::unknown_operation)
        .with_state(platform)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::check_body,
        ))
        .layer(axum::middleware::from_fn_with_state(intake, intake::intake))
        .layer(axum::middleware::from_fn_with_state(auth, auth::check_head))
        .layer(axum::middleware::from_fn(contain_panics))
        .layer(axum::middleware::from_fn(request_id))
}

/// Answers a request whose handling panicked with a 500 (and logs it), rather than
/// dropping its connection unanswered: a bug in one request must not look like a network
/// failure to its client.
async fn contain_panics(request: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(%method, %path, "a request handler panicked");
            axum::response::IntoResponse::into_response(ApiError(nimbus_core::Error::service(
                "the request failed inside the server; it was logged, retry it or report it",
            )))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler with a bug.
    async fn buggy() -> &'static str {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_not_dropped() {
        let mut app: Router = Router::new()
            .route("/boom", axum::routing::get(buggy))
            .layer(axum::middleware::from_fn(contain_panics));
        let request = Request::builder()
            .uri("/boom")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = tower_service::Service::call(&mut app, request)
            .await
            .expect("an answer");
        assert_eq!(response.status(), 500);
        assert_eq!(
            response
                .headers()
                .get("x-amzn-errortype")
                .map(|v| v.as_bytes()),
            Some(&b"ServiceException"[..])
        );
    }
}
