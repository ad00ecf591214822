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
        .filter(|t| !t.is_empty())
        .map_or("Runtime.Unknown", bounded_error_type);
    let message = String::from_utf8_lossy(&body);
    Bytes::from(serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string())
}

/// Longest error type taken from a runtime's header (real ones are names like
/// `Runtime.UnknownReason`; a header may otherwise be hundreds of kilobytes).
const ERROR_TYPE_MAX_BYTES: usize = 128;

/// `error_type` cut to [`ERROR_TYPE_MAX_BYTES`] on a character boundary.
fn bounded_error_type(error_type: &str) -> &str {
    let mut end = error_type.len().min(ERROR_TYPE_MAX_BYTES);
    while !error_type.is_char_boundary(end) {
        end -= 1;
    }
    &error_type[..end]
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
                // One netlink round trip to the kernel: quick enough to make here.
                let owner = socket_owner(peer, local);
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

/// The user owning the TCP socket connected from `peer` to `local` on this host, asked of
/// the kernel with one exact `sock_diag` lookup (constant time, however many sockets).
fn socket_owner(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    let request = diag_request(peer, local)?;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    sendto(
        sock.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut answer = [0u8; 512];
    let len = recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty()).ok()?;
    diag_owner(answer.get(..len)?)
}

/// `SOCK_DIAG_BY_FAMILY`, the netlink message type of `sock_diag` requests.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// Offset of `idiag_uid` in a reply: the netlink header (16), then `inet_diag_msg`'s
/// family/state/timer/retrans (4), socket id (48), expires/rqueue/wqueue (12).
const UID_OFFSET: usize = 16 + 4 + 48 + 12;

/// A netlink `inet_diag_req_v2` asking for the IPv4 TCP socket whose own address is
/// `source` and whose peer is `destination`.
fn diag_request(
    source: std::net::SocketAddr,
    destination: std::net::SocketAddr,
) -> Option<Vec<u8>> {
    let (std::net::SocketAddr::V4(src), std::net::SocketAddr::V4(dst)) = (source, destination)
    else {
        return None;
    };
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST: one socket, no dump
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    m.extend_from_slice(&[2, 6, 0, 0]); // AF_INET, IPPROTO_TCP, no extensions, padding
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
    m.extend_from_slice(&src.port().to_be_bytes());
    m.extend_from_slice(&dst.port().to_be_bytes());
    for ip in [src.ip(), dst.ip()] {
        m.extend_from_slice(&ip.octets());
        m.extend_from_slice(&[0; 12]);
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    Some(m)
}

/// The socket owner's uid in a `sock_diag` reply, `None` for an error reply.
fn diag_owner(reply: &[u8]) -> Option<u32> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    Some(u32::from_ne_bytes(
        reply.get(UID_OFFSET..UID_OFFSET + 4)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_type_header_is_bounded() {
        let mut headers = HeaderMap::new();
        let long = "E".repeat(100_000);
        headers.insert(
            "lambda-runtime-function-error-type",
            long.parse().expect("header"),
        );
        let body = error_body(&headers, Bytes::from_static(b"boom"));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json["errorType"].as_str().map(str::len),
            Some(ERROR_TYPE_MAX_BYTES)
        );
        assert_eq!(json["errorMessage"], "boom");
        assert_eq!(bounded_error_type(&"\u{e9}".repeat(100)).len(), 128);
        assert_eq!(bounded_error_type("Runtime.Short"), "Runtime.Short");
        headers.insert("lambda-runtime-function-error-type", "".parse().expect("h"));
        let body = error_body(&headers, Bytes::from_static(b"x"));
        assert!(String::from_utf8_lossy(&body).contains("Runtime.Unknown"));
    }

    #[test]
    fn the_kernel_names_the_owner_of_a_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(local).expect("connect");
        let peer = client.local_addr().expect("peer");
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(socket_owner(peer, local), Some(me));
        // The listening side of the same connection is another socket of the same user;
        // an address pair nobody uses has no owner.
        let nobody: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert_eq!(socket_owner(nobody, local), None);
    }

    #[test]
    fn a_request_is_one_exact_ipv4_lookup() {
        let src: std::net::SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let dst: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let request = diag_request(src, dst).expect("ipv4");
        assert_eq!(request.len(), 72);
        // After the header (16) and family/protocol/extensions/padding/states (8).
        assert_eq!(&request[24..26], &50000u16.to_be_bytes());
        assert_eq!(&request[26..28], &8080u16.to_be_bytes());
        assert_eq!(&request[28..32], &[127, 0, 0, 1]);
        let v6: std::net::SocketAddr = "[::1]:1".parse().expect("addr");
        assert!(diag_request(v6, dst).is_none());
    }
}
