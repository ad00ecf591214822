//! Request authentication: when the server has credentials, every request must carry a
//! valid SigV4 signature for service `lambda` in the server's region (the HTTP trigger of a
//! public URL and `/metrics` excepted).
//!
//! It runs in two stages around [`crate::intake`], so that a request that cannot be
//! authentic costs nothing: [`check_head`] verifies everything the head can tell (key,
//! scope, date, signed headers, and the whole signature when the client sent
//! `x-amz-content-sha256`) before a byte of the body is read; [`check_body`] then hashes the
//! body as it arrives (bounded by intake) and finishes the check against the hash of what
//! was actually received.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use nimbus_core::sigv4::{
    PayloadHasher, PendingBody, RequestHead, Verifier, VerifyError, MAX_SKEW_MINUTES,
};
use nimbus_core::{Error, ErrorKind};
use tokio::sync::Semaphore;

use crate::{intake, ApiError};

/// The server's API credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// The secret they sign with.
    pub secret_access_key: String,
}

/// What authentication checks requests against.
#[derive(Debug)]
pub(crate) struct AuthState {
    /// The one key requests must be signed with; `None`: authentication is off.
    pub credentials: Option<Credentials>,
    /// The region credentials must be scoped to.
    pub region: String,
    /// KiB of body that may be held at once for requests whose signature can only be
    /// checked at the end of their body (no `x-amz-content-sha256`, as botocore sends):
    /// their senders may not hold the secret, so what they can make the server hold is
    /// bounded node-wide.
    pub unverified: Arc<Semaphore>,
    /// The whole of `unverified`, KiB.
    pub unverified_kib: u32,
    /// How long a request waits for room in `unverified` before a 429.
    pub unverified_wait: Duration,
}

impl AuthState {
    /// Checks against `credentials` (none: authentication off) for `region`, holding at most
    /// `unverified_mb` of bodies not yet verified and waiting at most `wait` for room.
    pub(crate) fn new(
        credentials: Option<Credentials>,
        region: String,
        unverified_mb: u32,
        wait: Duration,
    ) -> Self {
        let unverified_kib = unverified_mb.saturating_mul(1024).max(1);
        AuthState {
            credentials,
            region,
            unverified: Arc::new(Semaphore::new(unverified_kib as usize)),
            unverified_kib,
            unverified_wait: wait,
        }
    }
}

/// The service credentials must be scoped to.
const SERVICE: &str = "lambda";

/// A request whose head passed; [`check_body`] finishes it.
#[derive(Debug, Clone)]
struct PendingSignature(PendingBody);

/// A header's values joined by `,` (as SigV4 canonicalises repeated headers).
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The first stage: refuses at once what the head shows cannot be authentic.
pub(crate) async fn check_head(
    State(state): State<Arc<AuthState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(credentials) = &state.credentials else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let public = path == "/metrics" || path.starts_with("/fn/");
    if public && !request.headers().contains_key("authorization") {
        // A public URL needs no signature; an AWS_IAM one is refused by the trigger.
        return next.run(request).await;
    }
    let verifier = Verifier {
        access_key_id: &credentials.access_key_id,
        secret_access_key: &credentials.secret_access_key,
        region: &state.region,
        service: SERVICE,
    };
    let checked = {
        let headers = request.headers();
        let lookup = |name: &str| header_value(headers, name);
        let head = RequestHead {
            method: request.method().as_str(),
            raw_path: request.uri().path(),
            raw_query: request.uri().query().unwrap_or(""),
            header: &lookup,
        };
        verifier.check_head(&head, Utc::now())
    };
    match checked {
        Ok(pending) => {
            request.extensions_mut().insert(PendingSignature(pending));
            next.run(request).await
        }
        Err(e) => ApiError(refusal(e)).into_response(),
    }
}

/// The second stage (inside intake's limits): hashes the body as it arrives and finishes
/// the check against what was received; the handler then gets the verified bytes.
pub(crate) async fn check_body(
    State(state): State<Arc<AuthState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(PendingSignature(pending)) = request.extensions_mut().remove::<PendingSignature>()
    else {
        return next.run(request).await;
    };
    let limit = intake::body_limit(request.method(), request.uri().path());
    // A claimed payload hash has already verified the signature: the sender holds the
    // secret. Otherwise the body is held on trust until its end, within the budget (a
    // request with neither Content-Length nor Transfer-Encoding has no body to hold).
    let declared = match intake::content_length(request.headers()) {
        Some(length) => length,
        None if request.headers().contains_key("transfer-encoding") => limit.bytes as u64,
        None => 0,
    };
    let room = if pending.claimed_hash().is_none() && declared > 0 {
        let kib = u32::try_from(declared.min(limit.bytes as u64).div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, state.unverified_kib);
        let room = state.unverified.clone().acquire_many_owned(kib);
        match tokio::time::timeout(state.unverified_wait, room).await {
            Ok(Ok(room)) => Some(room),
            _ => {
                return ApiError(Error::new(
                    ErrorKind::TooManyRequests,
                    format!(
                        "Too many request bodies are waiting for their signature to be checked (over {} MB); retry shortly. A request that signs x-amz-content-sha256 is verified before its body and does not wait.",
                        state.unverified_kib / 1024
                    ),
                ))
                .into_response()
            }
        }
    } else {
        None
    };
    let (parts, body) = request.into_parts();
    let mut hasher = PayloadHasher::new();
    let body = match intake::read_with(body, limit.bytes, limit.operation, |piece| {
        hasher.update(piece)
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return ApiError(e).into_response(),
    };
    if let Err(e) = pending.finish(&hasher.finish_hex()) {
        return ApiError(refusal(e)).into_response();
    }
    // Verified: the body is no longer held on trust (the handler may run for minutes).
    drop(room);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A refused signature in AWS's words, with what to do about it where AWS says nothing.
fn refusal(error: VerifyError) -> Error {
    let invalid = |message: String| Error::new(ErrorKind::InvalidSignature, message);
    match error {
        VerifyError::Missing => Error::new(
            ErrorKind::MissingAuthentication,
            "Missing Authentication Token",
        ),
        VerifyError::UnknownKey(_) => Error::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ),
        VerifyError::Malformed => invalid(
            "The Authorization header is not a valid AWS4-HMAC-SHA256 signature. Sign requests with SigV4 (boto3, the AWS CLI and the nimbus CLI do).".into(),
        ),
        VerifyError::WrongRegion { expected, got } => invalid(format!(
            "Credential should be scoped to a valid region. This server's region is '{expected}', not '{got}': sign for it (region_name, AWS_DEFAULT_REGION or NIMBUS_REGION)."
        )),
        VerifyError::WrongService { expected, .. } => invalid(format!(
            "Credential should be scoped to correct service: '{expected}'. "
        )),
        VerifyError::MissingDate => invalid(
            "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
        ),
        VerifyError::BadDate(value) => invalid(format!(
            "X-Amz-Date '{value}' is not a SigV4 date (YYYYMMDDTHHMMSSZ)."
        )),
        VerifyError::ScopeDate { scope, amz_date } => invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{}', from '{amz_date}'.",
            amz_date.get(..8).unwrap_or(&amz_date)
        )),
        VerifyError::Expired {
            signed,
            earliest,
            now,
        } => invalid(format!(
            "Signature expired: {signed} is now earlier than {earliest} ({now} - {MAX_SKEW_MINUTES} min.)"
        )),
        VerifyError::NotYetCurrent {
            signed,
            latest,
            now,
        } => invalid(format!(
            "Signature not yet current: {signed} is still later than {latest} ({now} + {MAX_SKEW_MINUTES} min.)"
        )),
        VerifyError::HostNotSigned => invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ),
        VerifyError::SignedHeaderMissing(name) => invalid(format!(
            "The signed header '{name}' is missing from the request."
        )),
        VerifyError::PayloadNotSigned(value) => invalid(format!(
            "x-amz-content-sha256 must be the hex SHA-256 of the body, not '{value}': this API does not accept unsigned or streaming payloads. Sign the payload (boto3, the AWS CLI and the nimbus CLI do)."
        )),
        VerifyError::PayloadMismatch => invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ),
        VerifyError::SignatureMismatch => invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
        ),
    }
}
