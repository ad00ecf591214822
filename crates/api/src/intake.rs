//! Request intake: what a request body may cost before anything acts on it. Each family of
//! routes has a size limit; a `Content-Length` over it is refused with 413 before a byte of
//! the body is read, and the body is wrapped so that reading it stops at the limit (413),
//! after the client stalls (408) or at a framing error such as malformed chunked encoding
//! (400). Handlers read bodies only through this wrapper.

use std::error::Error as StdError;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use nimbus_core::{limits, Error, ErrorKind};
use tokio::time::{Instant, Sleep};

use crate::ApiError;

/// Largest body of the code upload operations (CreateFunction, UpdateFunctionCode): a 50 MB
/// zip in base64 plus the other fields — Lambda's own figure.
pub(crate) const CODE_UPLOAD_BODY_MAX: usize = 70_167_211;

/// Largest body of every other route: an Invoke's payload (6 MiB) is the largest of them.
pub(crate) const OTHER_BODY_MAX: usize = limits::SYNC_PAYLOAD_MAX_BYTES;

/// How much body one route family takes, and the operation named in the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLimit {
    /// Largest body, bytes.
    pub bytes: usize,
    /// The operation, for the message (`None`: the route's own).
    pub operation: Option<&'static str>,
}

/// What intake needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntakeConfig {
    /// Longest the body may pause (from the first read on) before the request is cut off.
    pub body_idle_timeout: Duration,
}

/// The body limit of the route `method path` is on.
pub(crate) fn body_limit(method: &Method, path: &str) -> BodyLimit {
    let function_route = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(name, _)| !name.is_empty());
    let limit = |bytes, operation| BodyLimit {
        bytes,
        operation: Some(operation),
    };
    match (method, function_route) {
        (&Method::POST, None)
            if path == "/2015-03-31/functions" || path == "/2015-03-31/functions/" =>
        {
            limit(CODE_UPLOAD_BODY_MAX, "CreateFunction")
        }
        (&Method::PUT, Some((_, "code"))) => limit(CODE_UPLOAD_BODY_MAX, "UpdateFunctionCode"),
        (&Method::POST, Some((_, "invocations"))) => limit(OTHER_BODY_MAX, "InvokeFunction"),
        _ => BodyLimit {
            bytes: OTHER_BODY_MAX,
            operation: None,
        },
    }
}

/// Lambda's refusal of a body over `limit` bytes.
pub(crate) fn too_large(limit: usize, operation: Option<&str>) -> Error {
    let message = match operation {
        Some(operation) => {
            format!("Request must be smaller than {limit} bytes for the {operation} operation")
        }
        None => format!("Request must be smaller than {limit} bytes"),
    };
    Error::new(ErrorKind::RequestTooLarge, message)
}

/// The declared `Content-Length`, if there is a readable one (hyper has refused
/// unreadable ones already).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The middleware: refuses a declared body over the route's limit without reading it, and
/// guards the body for whoever reads it.
pub(crate) async fn intake(
    State(config): State<Arc<IntakeConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let limit = body_limit(request.method(), path);
    if content_length(request.headers()).is_some_and(|length| length > limit.bytes as u64) {
        if path.starts_with("/fn/") {
            // Function URLs answer in plain text, as the trigger does.
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                too_large(limit.bytes, None).message,
            )
                .into_response();
        }
        return ApiError(too_large(limit.bytes, limit.operation)).into_response();
    }
    let (parts, body) = request.into_parts();
    let body = Body::new(GuardedBody::new(
        body,
        limit.bytes,
        config.body_idle_timeout,
    ));
    next.run(Request::from_parts(parts, body)).await
}

/// Why reading a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the route's limit arrived.
    #[error("the request body is over {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Nothing arrived for the idle timeout.
    #[error("the request body stalled for {idle:?}")]
    Stalled {
        /// The idle timeout.
        idle: Duration,
    },
    /// Past the idle timeout's grace, the body arrived slower than [`BODY_RATE_MIN`].
    #[error("the request body arrived slower than {BODY_RATE_MIN} bytes/s")]
    TooSlow,
}

/// Slowest a body may arrive on average, bytes per second, after a grace of the idle
/// timeout: a client trickling a byte just inside the idle timeout is cut off all the same.
pub(crate) const BODY_RATE_MIN: u64 = 4096;

/// A request body that ends in an error past `limit` bytes or after `idle` without data.
struct GuardedBody {
    /// The body as hyper delivers it.
    inner: Body,
    /// Bytes still allowed.
    remaining: usize,
    /// The limit, for the error.
    limit: usize,
    /// The idle timeout.
    idle: Duration,
    /// Fires at the earlier of `idle` after the last data and the time the body falls
    /// behind [`BODY_RATE_MIN`] (armed at the first read, so a handler that reads late is
    /// not cut off for it).
    timer: Pin<Box<Sleep>>,
    /// When the first read came, once it has.
    started: Option<Instant>,
    /// Bytes received so far.
    received: u64,
    /// When data last came (or the first read).
    last: Instant,
}

impl GuardedBody {
    fn new(inner: Body, limit: usize, idle: Duration) -> Self {
        GuardedBody {
            inner,
            remaining: limit,
            limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            started: None,
            received: 0,
            last: Instant::now(),
        }
    }

    /// When the body falls behind the minimum rate with what it has sent.
    fn behind_at(&self, started: Instant) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / BODY_RATE_MIN as f64);
        started + self.idle + earned
    }

    /// Re-arms the timer after data (or at the first read).
    fn rearm(&mut self, started: Instant) {
        self.last = Instant::now();
        let next = (self.last + self.idle).min(self.behind_at(started));
        self.timer.as_mut().reset(next);
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let started = match this.started {
            Some(started) => started,
            None => {
                let now = Instant::now();
                this.started = Some(now);
                this.rearm(now);
                now
            }
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.remaining {
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(axum::Error::new(BodyError::TooLarge {
                            limit: this.limit,
                        }))));
                    }
                    this.remaining -= data.len();
                    this.received += data.len() as u64;
                }
                this.rearm(started);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let error = if Instant::now() >= this.last + this.idle {
                        BodyError::Stalled { idle: this.idle }
                    } else {
                        BodyError::TooSlow
                    };
                    Poll::Ready(Some(Err(axum::Error::new(error))))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The first error of type `T` in `error`'s chain.
fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// What the client is told when reading its body failed: 413 over `limit` (the reader's
/// own) or the route's limit, 408 when it stalled, 400 when it was not a well-formed body.
pub(crate) fn read_error(error: &axum::Error, limit: usize, operation: Option<&str>) -> Error {
    match find::<BodyError>(error) {
        Some(BodyError::TooLarge { limit: route }) => too_large(limit.min(*route), operation),
        Some(BodyError::Stalled { idle }) => Error::new(
            ErrorKind::RequestTimeout,
            format!(
                "The request body stopped arriving: nothing for {} s. Send the whole body without pausing, then retry.",
                idle.as_secs_f64()
            ),
        ),
        Some(BodyError::TooSlow) => Error::new(
            ErrorKind::RequestTimeout,
            format!(
                "The request body arrived slower than {} KiB/s. Send it over a faster connection, then retry.",
                BODY_RATE_MIN / 1024
            ),
        ),
        None if find::<http_body_util::LengthLimitError>(error).is_some() => {
            too_large(limit, operation)
        }
        None => Error::new(
            ErrorKind::InvalidRequestContent,
            format!(
                "The request body could not be read ({}). Send it with a correct Content-Length or valid chunked encoding.",
                root_cause(error)
            ),
        ),
    }
}

/// The innermost error's message (hyper's own says what was wrong with the framing).
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Most a body's buffer reserves up front on the word of its Content-Length.
const INITIAL_BUFFER_MAX: usize = 256 * 1024;

/// Reads a whole body of at most `limit` bytes, calling `on_piece` with each piece as it
/// arrives (e.g. to hash it); errors are the client's, as [`read_error`] words them.
pub(crate) async fn read_with(
    body: Body,
    limit: usize,
    operation: Option<&str>,
    mut on_piece: impl FnMut(&[u8]),
) -> Result<Bytes, Error> {
    use http_body_util::BodyExt;
    let expected = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
    let mut body = http_body_util::Limited::new(body, limit);
    let mut collected: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(&axum::Error::new(e), limit, operation))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        on_piece(&data);
        match &mut collected {
            // A body that came whole (as one already verified does) is passed on as it is.
            None if body.is_end_stream() => return Ok(data),
            None => {
                // The declared length is the sender's word: reserve no more than a
                // modest start for it, and grow with what really arrives.
                let start = expected.min(limit).min(INITIAL_BUFFER_MAX);
                let mut buffer = bytes::BytesMut::with_capacity(start.max(data.len()));
                buffer.extend_from_slice(&data);
                collected = Some(buffer);
            }
            Some(buffer) => buffer.extend_from_slice(&data),
        }
    }
    Ok(collected.map(bytes::BytesMut::freeze).unwrap_or_default())
}

/// Reads a whole body of at most `limit` bytes (see [`read_with`]).
pub(crate) async fn read(
    body: Body,
    limit: usize,
    operation: Option<&str>,
) -> Result<Bytes, Error> {
    read_with(body, limit, operation, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_uploads_get_the_large_limit_and_everything_else_the_invoke_limit() {
        let post = Method::POST;
        let put = Method::PUT;
        assert_eq!(
            body_limit(&post, "/2015-03-31/functions").bytes,
            CODE_UPLOAD_BODY_MAX
        );
        assert_eq!(
            body_limit(&put, "/2015-03-31/functions/f/code").operation,
            Some("UpdateFunctionCode")
        );
        assert_eq!(
            body_limit(&post, "/2015-03-31/functions/f/invocations").bytes,
            OTHER_BODY_MAX
        );
        for (method, path) in [
            (&put, "/2015-03-31/functions/f/configuration"),
            (&post, "/2015-03-31/functions/f/code"),
            (&put, "/2015-03-31/functions//code"),
            (&post, "/fn/f/upload"),
            (&post, "/nimbus/v1/functions/f/code"),
        ] {
            assert_eq!(body_limit(method, path).bytes, OTHER_BODY_MAX, "{path}");
        }
    }

    fn chunks(pieces: Vec<Result<&'static [u8], std::io::Error>>) -> Body {
        Body::from_stream(futures_util::stream::iter(
            pieces.into_iter().map(|p| p.map(Bytes::from_static)),
        ))
    }

    #[tokio::test]
    async fn a_guarded_body_stops_at_its_limit_with_a_413() {
        let body = Body::new(GuardedBody::new(
            chunks(vec![Ok(b"0123"), Ok(b"4567"), Ok(b"89")]),
            9,
            Duration::from_secs(30),
        ));
        let error = read(body, 100, Some("Op")).await.expect_err("over 9 bytes");
        assert_eq!(error.kind, ErrorKind::RequestTooLarge);
        assert_eq!(
            error.message,
            "Request must be smaller than 9 bytes for the Op operation"
        );
        let body = Body::new(GuardedBody::new(
            chunks(vec![Ok(b"0123"), Ok(b"4567")]),
            9,
            Duration::from_secs(30),
        ));
        let mut seen = Vec::new();
        let whole = read_with(body, 100, None, |p| seen.extend_from_slice(p))
            .await
            .expect("within the limit");
        assert_eq!(
            (&whole[..], &seen[..]),
            (&b"01234567"[..], &b"01234567"[..])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_off_with_a_408() {
        let stalled =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let body = Body::new(GuardedBody::new(stalled, 100, Duration::from_secs(2)));
        let error = read(body, 100, None).await.expect_err("stalls");
        assert_eq!(error.kind, ErrorKind::RequestTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_off_though_it_never_stalls() {
        // A byte every 1.5 s never trips a 2 s idle timeout, but falls behind the rate.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        let body = Body::new(GuardedBody::new(
            Body::from_stream(trickle),
            1 << 20,
            Duration::from_secs(2),
        ));
        let began = Instant::now();
        let error = read(body, 1 << 20, None).await.expect_err("too slow");
        assert_eq!(error.kind, ErrorKind::RequestTimeout);
        assert!(error.message.contains("slower than"), "{}", error.message);
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "{:?}",
            began.elapsed()
        );
    }

    #[tokio::test]
    async fn a_broken_body_is_a_400_not_a_413() {
        let broken = chunks(vec![
            Ok(b"12"),
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "Invalid chunk size line",
            )),
        ]);
        let body = Body::new(GuardedBody::new(broken, 100, Duration::from_secs(30)));
        let error = read(body, 100, None).await.expect_err("broken");
        assert_eq!(error.kind, ErrorKind::InvalidRequestContent);
        assert!(
            error.message.contains("Invalid chunk size line"),
            "{}",
            error.message
        );
    }
}
