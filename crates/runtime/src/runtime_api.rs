//! The Lambda Runtime API (2018-06-01) one instance's process talks to.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use nimbus_core::limits::RUNTIME_RESPONSE_MAX_BYTES;

use crate::instance::{lock, Inflight, Queued, Reply, Shared};

/// The routes of one instance's Runtime API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn accepted() -> Response {
    json(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

/// Long-polls for the next invocation and hands it to the runtime.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.ready.send_replace(true);
    let received = shared.queue.lock().await.recv().await;
    let Some(Queued {
        invocation,
        reply,
        picked_up,
    }) = received
    else {
        // The instance is being retired: the runtime will be killed.
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"errorMessage": "instance is shutting down", "errorType": "Runtime.Shutdown"}),
        );
    };
    let now = std::time::Instant::now();
    let deadline = match invocation.not_after {
        Some(limit) => (now + invocation.timeout).min(limit),
        None => now + invocation.timeout,
    };
    let deadline_epoch_ms = (std::time::SystemTime::now()
        + deadline.saturating_duration_since(now))
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_millis())
    .unwrap_or_default();
    *lock(&shared.inflight) = Some(Inflight {
        request_id: invocation.request_id.clone(),
        reply,
    });
    let _ = picked_up.send(deadline);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/json");
    put("lambda-runtime-aws-request-id", &invocation.request_id);
    put("lambda-runtime-deadline-ms", &deadline_epoch_ms.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        &invocation.invoked_arn,
    );
    put("lambda-runtime-trace-id", &trace_id());
    if let Some(context) = &invocation.client_context {
        put("lambda-runtime-client-context", context);
    }
    (StatusCode::OK, headers, Body::from(invocation.payload)).into_response()
}

/// An X-Ray style trace header value.
fn trace_id() -> String {
    let epoch = chrono::Utc::now().timestamp();
    let root = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

/// Why a reply was refused: Lambda's two answers.
enum Refusal {
    /// The id was answered already (403 InvalidStateTransition).
    AlreadyAnswered,
    /// The id is not the invocation in flight (400 InvalidRequestID).
    UnknownId,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::AlreadyAnswered => json(
                StatusCode::FORBIDDEN,
                serde_json::json!({"errorMessage": "Invalid state transition", "errorType": "InvalidStateTransition"}),
            ),
            Refusal::UnknownId => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        }
    }
}

/// Takes the in-flight invocation if `id` names it, or says why not.
fn take_inflight(shared: &Shared, id: &str) -> Result<Inflight, Refusal> {
    let mut inflight = lock(&shared.inflight);
    if inflight.as_ref().is_some_and(|i| i.request_id == id) {
        if let Some(taken) = inflight.take() {
            *lock(&shared.last_answered) = Some(id.to_owned());
            return Ok(taken);
        }
    }
    if lock(&shared.last_answered).as_deref() == Some(id) {
        return Err(Refusal::AlreadyAnswered);
    }
    Err(Refusal::UnknownId)
}

/// The runtime's result for an invocation.
async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let inflight = match take_inflight(&shared, &id) {
        Ok(i) => i,
        Err(refusal) => return refusal.into_response(),
    };
    match axum::body::to_bytes(body, RUNTIME_RESPONSE_MAX_BYTES).await {
        Ok(bytes) => {
            let _ = inflight.reply.send(Reply::Response(bytes));
            accepted()
        }
        Err(_) => {
            let _ = inflight.reply.send(Reply::TooLarge);
            json(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"errorMessage": format!("Exceeded maximum allowed payload size ({RUNTIME_RESPONSE_MAX_BYTES} bytes)."), "errorType": "RequestEntityTooLarge"}),
            )
        }
    }
}

/// The runtime's error for an invocation.
async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let inflight = match take_inflight(&shared, &id) {
        Ok(i) => i,
        Err(refusal) => return refusal.into_response(),
    };
    let body = axum::body::to_bytes(body, RUNTIME_RESPONSE_MAX_BYTES)
        .await
        .unwrap_or_default();
    let _ = inflight
        .reply
        .send(Reply::Error(error_body(&headers, body)));
    accepted()
}

/// The runtime's report that it could not initialise.
async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let body = axum::body::to_bytes(body, RUNTIME_RESPONSE_MAX_BYTES)
        .await
        .unwrap_or_default();
    *lock(&shared.init_error) = Some(error_body(&headers, body));
    accepted()
}

/// An error body as the caller will see it: the runtime's JSON object if it sent one,
/// otherwise one built from the error-type header and the raw text.
fn error_body(headers: &HeaderMap, body: Bytes) -> Bytes {
    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body).is_ok() {
        return body;
    }
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Runtime.Unknown");
    let message = String::from_utf8_lossy(&body);
    Bytes::from(serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string())
}

/// The listener of an instance's Runtime API: where instances run as users of their own,
/// it serves only connections made by the instance's user, so no other function can take
/// this instance's events or answer for it (all instances share the loopback interface).
pub(crate) struct OwnerOnly {
    /// The bound listener.
    pub(crate) listener: tokio::net::TcpListener,
    /// The instance's user id; `None` serves anyone (instances run as the server's user).
    pub(crate) uid: Option<u32>,
}

impl axum::serve::Listener for OwnerOnly {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "runtime api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let (Some(uid), Ok(local)) = (self.uid, self.listener.local_addr()) {
                let owner = tokio::task::spawn_blocking(move || socket_owner(peer, local))
                    .await
                    .ok()
                    .flatten();
                if owner != Some(uid) {
                    tracing::warn!(%peer, ?owner, expected = uid, "refused a runtime api connection from another user");
                    continue;
                }
            }
            // Small request/response exchanges: don't let Nagle's algorithm delay them.
            let _ = stream.set_nodelay(true);
            return (stream, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The user owning the loopback TCP socket connected from `peer` to `local`, read from the
/// kernel's socket table.
fn socket_owner(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    let (table, want_local, want_remote) = match (peer, local) {
        (std::net::SocketAddr::V4(p), std::net::SocketAddr::V4(l)) => {
            ("/proc/net/tcp", hex_v4(p), hex_v4(l))
        }
        _ => return None,
    };
    let text = std::fs::read_to_string(table).ok()?;
    owner_in_table(&text, &want_local, &want_remote)
}

/// An IPv4 socket address as `/proc/net/tcp` writes it: `0100007F:1F90`.
fn hex_v4(addr: std::net::SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(addr.ip().octets()),
        addr.port()
    )
}

/// The uid column of the row of `table` (`/proc/net/tcp` text) with these addresses.
fn owner_in_table(table: &str, local: &str, remote: &str) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local) && fields.get(2) == Some(&remote))
            .then(|| fields.get(7)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_the_matching_row() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:A1B2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0100007F:C350 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000 2000001        0 2 1\n";
        let peer: std::net::SocketAddrV4 = "127.0.0.1:50000".parse().expect("addr");
        let local: std::net::SocketAddrV4 = "127.0.0.1:41394".parse().expect("addr");
        assert_eq!(hex_v4(peer), "0100007F:C350");
        assert_eq!(
            owner_in_table(table, &hex_v4(peer), &hex_v4(local)),
            Some(2_000_001)
        );
        assert_eq!(owner_in_table(table, &hex_v4(local), &hex_v4(peer)), None);
    }
}
