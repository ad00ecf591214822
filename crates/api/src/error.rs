//! Service errors on the wire: status, `x-amzn-ErrorType` and Lambda's JSON body.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nimbus_core::{Error, ErrorKind};

/// A platform error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::ResourceNotFound | ErrorKind::ProvisionedConcurrencyConfigNotFound => {
            StatusCode::NOT_FOUND
        }
        ErrorKind::ResourceConflict => StatusCode::CONFLICT,
        ErrorKind::InvalidParameterValue
        | ErrorKind::Validation
        | ErrorKind::InvalidRequestContent => StatusCode::BAD_REQUEST,
        ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::MissingAuthentication
        | ErrorKind::UnrecognizedClient
        | ErrorKind::InvalidSignature => StatusCode::FORBIDDEN,
        ErrorKind::Service => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Error {
            kind,
            message,
            reason,
        } = self.0;
        // Lambda's shapes spell the message key differently per error.
        let key = match kind {
            ErrorKind::ResourceNotFound | ErrorKind::Service => "Message",
            _ => "message",
        };
        let mut body = serde_json::Map::new();
        body.insert(
            "Type".into(),
            (if kind == ErrorKind::Service {
                "Service"
            } else {
                "User"
            })
            .into(),
        );
        body.insert(key.into(), message.into());
        if let Some(reason) = reason {
            body.insert("Reason".into(), reason.into());
        }
        let mut response = (
            status(kind),
            [
                ("x-amzn-errortype", kind.code()),
                ("content-type", "application/json"),
            ],
            serde_json::Value::Object(body).to_string(),
        )
            .into_response();
        if kind == ErrorKind::TooManyRequests {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The answer to a path no operation has.
pub(crate) async fn unknown_operation(uri: Uri) -> Response {
    let body =
        serde_json::json!({"Type": "User", "message": format!("no operation at {}", uri.path())});
    (
        StatusCode::NOT_FOUND,
        [
            ("x-amzn-errortype", "UnknownOperationException"),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
        .into_response()
}
