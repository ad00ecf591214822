//! The node-to-node channel: an invocation forwarded to its function's home node. The
//! sending side is [`HttpForwarder`] (a pooled hyper client, every request SigV4-signed
//! with the cluster's credentials, like any API call); the receiving side is the internal
//! route `POST /nimbus/internal/v1/functions/{name}/invocations`, which runs the invocation
//! on that node without forwarding it again and answers with the payload as its body and
//! the rest of the result in headers. Everything that says what to run is in the signed
//! path and query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use nimbus_control::{ForwardError, Forwarded, Forwarder, Invoke, Platform};
use nimbus_core::sigv4::{self, Signer};
use nimbus_core::{limits, Error, ErrorKind};
use nimbus_scheduler::InvokeResult;

use crate::{ApiError, Credentials, RequestId};

/// Where forwarded invocations arrive.
const INVOCATIONS: &str = "/nimbus/internal/v1/functions/{name}/invocations";
/// Where a node hears that a function changed on another.
const CHANGES: &str = "/nimbus/internal/v1/functions/{name}/changes";
/// Where a node asks a function's home how many provisioned instances are ready (a POST,
/// like every internal call, so it is signed the same way).
const PROVISIONED: &str = "/nimbus/internal/v1/functions/{name}/provisioned";

/// How much of a forwarded invocation's log comes back (what `LogType=Tail` shows).
const LOG_TAIL_BYTES: usize = 4096;

/// Longest a forwarded invocation may take: the longest function timeout, and margin.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(900 + 60);

/// Headers of the internal answer.
mod header {
    pub const EXECUTED_VERSION: &str = "x-nimbus-executed-version";
    pub const FUNCTION_ERROR: &str = "x-nimbus-function-error";
    pub const DURATION_MS: &str = "x-nimbus-duration-ms";
    pub const INIT_MS: &str = "x-nimbus-init-ms";
    pub const TIMED_OUT: &str = "x-nimbus-timed-out";
    pub const LOG_TAIL: &str = "x-nimbus-log-tail";
}

/// The internal routes.
pub(crate) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route(INVOCATIONS, post(invoke_forwarded))
        .route(CHANGES, post(change_announced))
        .route(PROVISIONED, post(provisioned_ready))
}

/// How many provisioned instances of `?version=` are ready on this node.
async fn provisioned_ready(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let version = params
        .get("version")
        .map(String::as_str)
        .unwrap_or_default();
    let (_, ready) = platform.scheduler().provisioned(&name, version);
    axum::Json(serde_json::json!({ "ready": ready }))
}

/// Another node changed a function: this node drops what it cached of it.
async fn change_announced(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> StatusCode {
    platform.apply_change(&name).await;
    StatusCode::NO_CONTENT
}

/// Runs a forwarded invocation here; never forwards it again.
async fn invoke_forwarded(
    State(platform): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    Extension(RequestId(own_id)): Extension<RequestId>,
    body: Body,
) -> Result<Response, ApiError> {
    let payload = crate::intake::read(body, limits::SYNC_PAYLOAD_MAX_BYTES, None).await?;
    let request = Invoke {
        function: name,
        qualifier: params.get("qualifier").cloned(),
        payload,
        client_context: params.get("client_context").cloned(),
        // The request id the caller was given, so logs agree wherever it ran.
        request_id: params.get("request_id").cloned().unwrap_or(own_id),
    };
    let result = platform.invoke_here(request).await?;
    let mut response = (StatusCode::OK, result.payload).into_response();
    let out = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    put(header::EXECUTED_VERSION, result.executed_version);
    put(header::FUNCTION_ERROR, result.function_error.to_string());
    put(header::DURATION_MS, result.duration_ms.to_string());
    if let Some(init) = result.init_ms {
        put(header::INIT_MS, init.to_string());
    }
    put(header::TIMED_OUT, result.timed_out.to_string());
    let tail = &result.log[result.log.len().saturating_sub(LOG_TAIL_BYTES)..];
    put(
        header::LOG_TAIL,
        base64::engine::general_purpose::STANDARD.encode(tail),
    );
    Ok(response)
}

/// Forwards invocations over HTTP/1.1 with pooled connections.
pub struct HttpForwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    credentials: Option<Credentials>,
    region: String,
}

impl HttpForwarder {
    /// A forwarder signing with `credentials` (the cluster's; `None` without auth) for
    /// `region`.
    pub fn new(credentials: Option<Credentials>, region: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpForwarder {
            client,
            credentials,
            region,
        }
    }

    /// The invocation `invoke` as a request to the node at `address`.
    fn request(
        &self,
        address: &str,
        invoke: &Invoke,
    ) -> Result<hyper::Request<Full<Bytes>>, Error> {
        let mut query: Vec<(&str, &str)> = vec![("request_id", invoke.request_id.as_str())];
        if let Some(q) = &invoke.qualifier {
            query.push(("qualifier", q));
        }
        if let Some(c) = &invoke.client_context {
            query.push(("client_context", c));
        }
        let path = INVOCATIONS.replace("{name}", &sigv4::uri_encode(&invoke.function, false));
        self.signed_post(address, &path, query, invoke.payload.clone())
    }

    /// A POST of `body` to `path?query` on the node at `address`, signed when the cluster
    /// has credentials.
    fn signed_post(
        &self,
        address: &str,
        path: &str,
        mut query: Vec<(&str, &str)>,
        body: Bytes,
    ) -> Result<hyper::Request<Full<Bytes>>, Error> {
        query.sort_unstable();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={}", sigv4::uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        // The node's address is its URL (`http://HOST:PORT`).
        let host = address
            .split_once("://")
            .map_or(address, |(_, rest)| rest)
            .trim_end_matches('/');
        let mut builder = hyper::Request::post(format!("{address}{path}?{query}"))
            .header("host", host)
            .header("content-type", "application/json");
        if let Some(credentials) = &self.credentials {
            let signer = Signer {
                access_key_id: &credentials.access_key_id,
                secret_access_key: &credentials.secret_access_key,
                region: &self.region,
                service: "lambda",
            };
            let hash = sigv4::sha256_hex(&body);
            for (name, value) in signer.sign("POST", path, &query, host, &hash, chrono::Utc::now())
            {
                if name != "host" {
                    builder = builder.header(name, value);
                }
            }
        }
        builder.body(Full::new(body)).map_err(Error::service)
    }
}

#[async_trait]
impl Forwarder for HttpForwarder {
    async fn provisioned_ready(
        &self,
        address: &str,
        function: &str,
        version: &str,
    ) -> Result<u32, ForwardError> {
        let path = PROVISIONED.replace("{name}", &sigv4::uri_encode(function, false));
        let request = self
            .signed_post(address, &path, vec![("version", version)], Bytes::new())
            .map_err(ForwardError::Refused)?;
        let unreachable = |why: String| ForwardError::Unreachable {
            address: address.to_owned(),
            why,
        };
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| unreachable(e.to_string()))?;
        Ok(answer["ready"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0))
    }

    async fn announce_change(&self, address: &str, function: &str) -> Result<(), ForwardError> {
        let path = CHANGES.replace("{name}", &sigv4::uri_encode(function, false));
        let request = self
            .signed_post(address, &path, Vec::new(), Bytes::new())
            .map_err(ForwardError::Refused)?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| ForwardError::Unreachable {
                    address: address.to_owned(),
                    why: e.to_string(),
                })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ForwardError::Refused(Error::service(format!(
                "node {address} answered {} to a change",
                response.status()
            ))))
        }
    }

    async fn forward(&self, address: &str, invoke: &Invoke) -> Result<Forwarded, ForwardError> {
        let unreachable = |why: String| ForwardError::Unreachable {
            address: address.to_owned(),
            why,
        };
        let request = self
            .request(address, invoke)
            .map_err(ForwardError::Refused)?;
        let response = tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if parts.status == StatusCode::OK {
            let log = text(header::LOG_TAIL)
                .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
                .unwrap_or_default();
            return Ok(Forwarded::Ran(InvokeResult {
                payload: body,
                function_error: text(header::FUNCTION_ERROR).as_deref() == Some("true"),
                executed_version: text(header::EXECUTED_VERSION).unwrap_or_default(),
                duration_ms: text(header::DURATION_MS)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                init_ms: text(header::INIT_MS).and_then(|v| v.parse().ok()),
                log: Bytes::from(log),
                timed_out: text(header::TIMED_OUT).as_deref() == Some("true"),
            }));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let reason = field("Reason");
        let kind = text("x-amzn-errortype")
            .and_then(|code| ErrorKind::from_code(&code))
            .unwrap_or(ErrorKind::Service);
        if kind == ErrorKind::TooManyRequests {
            // The function's own reservation holds wherever it runs: that throttle stands.
            return match reason.as_deref() {
                Some("ReservedFunctionConcurrentInvocationLimitExceeded") => {
                    Err(ForwardError::Refused(Error::throttled(
                        "ReservedFunctionConcurrentInvocationLimitExceeded",
                    )))
                }
                _ => Ok(Forwarded::Saturated),
            };
        }
        let message = field("message")
            .or_else(|| field("Message"))
            .unwrap_or_else(|| format!("node {address} answered {}", parts.status));
        let mut error = Error::new(kind, message);
        error.reason = reason;
        Err(ForwardError::Refused(error))
    }
}
