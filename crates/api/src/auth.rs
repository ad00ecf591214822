//! Request authentication: when the server has credentials, every request must carry a
//! valid SigV4 signature for service `lambda` (the HTTP trigger of a public URL and
//! `/metrics` excepted).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, Utc};
use nimbus_core::sigv4::{self, SignedRequest};
use nimbus_core::{Error, ErrorKind};

use crate::ApiError;

/// The server's API credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// The secret they sign with.
    pub secret_access_key: String,
}

/// Largest signed body read for verification (a 50 MB zip, base64, plus fields).
const BODY_MAX: usize = 70_167_211 + 1024;
/// Largest clock difference accepted, as AWS allows.
const SKEW_MINUTES: i64 = 15;

fn denied(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message)
}

/// The middleware: verifies the signature of every request that needs one.
pub(crate) async fn authenticate(
    State(credentials): State<Arc<Option<Credentials>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(credentials) = credentials.as_ref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let public = path == "/metrics" || path.starts_with("/fn/");
    if public && !request.headers().contains_key("authorization") {
        // A public URL needs no signature; an AWS_IAM one is refused by the trigger.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_MAX).await else {
        return ApiError(Error::new(
            ErrorKind::RequestTooLarge,
            "Request is too large to verify",
        ))
        .into_response();
    };
    if let Err(e) = verify(&parts, &body, credentials) {
        return ApiError(e).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Checks one request's SigV4 signature against `credentials`.
fn verify(parts: &Parts, body: &[u8], credentials: &Credentials) -> Result<(), Error> {
    let header = |name: &str| -> Option<String> {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let Some(authorization) = header("authorization") else {
        return Err(denied(
            ErrorKind::MissingAuthentication,
            "Missing Authentication Token",
        ));
    };
    let auth = sigv4::parse_authorization(&authorization).ok_or_else(|| {
        denied(
            ErrorKind::InvalidSignature,
            "The Authorization header is not a valid AWS4-HMAC-SHA256 signature.",
        )
    })?;
    if auth.access_key_id != credentials.access_key_id {
        return Err(denied(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    }
    if auth.service != "lambda" {
        return Err(denied(
            ErrorKind::InvalidSignature,
            "Credential should be scoped to correct service: 'lambda'.",
        ));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        denied(
            ErrorKind::InvalidSignature,
            "The request has no X-Amz-Date header.",
        )
    })?;
    let signed_at = NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            denied(
                ErrorKind::InvalidSignature,
                format!("X-Amz-Date '{amz_date}' is not a SigV4 date."),
            )
        })?
        .and_utc();
    if !amz_date.starts_with(&auth.date) {
        return Err(denied(
            ErrorKind::InvalidSignature,
            "The credential scope's date does not match X-Amz-Date.",
        ));
    }
    let now = Utc::now();
    if (now - signed_at).num_minutes().abs() > SKEW_MINUTES {
        return Err(denied(
            ErrorKind::InvalidSignature,
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
                (now - chrono::Duration::minutes(SKEW_MINUTES)).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ")
            ),
        ));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(denied(
            ErrorKind::InvalidSignature,
            "The host header must be signed.",
        ));
    }
    let mut headers = Vec::new();
    for name in &auth.signed_headers {
        let value = header(name).ok_or_else(|| {
            denied(
                ErrorKind::InvalidSignature,
                format!("The signed header '{name}' is missing."),
            )
        })?;
        headers.push((name.clone(), value));
    }
    let payload_hash = header("x-amz-content-sha256").unwrap_or_else(|| sigv4::sha256_hex(body));
    let expected = SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers,
        payload_hash: &payload_hash,
        amz_date: &amz_date,
    }
    .signature(
        &credentials.secret_access_key,
        &auth.date,
        &auth.region,
        &auth.service,
    );
    if sigv4::constant_time_eq(&expected, &auth.signature) {
        Ok(())
    } else {
        Err(denied(
            ErrorKind::InvalidSignature,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ))
    }
}
