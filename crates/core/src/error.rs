//! The platform's error type: a kind that says how a client should read it, and a message.

/// What kind of failure an [`Error`] is; each kind maps to one Lambda error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The function (or other resource) does not exist.
    ResourceNotFound,
    /// The resource exists already, or is busy.
    ResourceConflict,
    /// A parameter has a bad value.
    InvalidParameterValue,
    /// A field failed a model constraint (Lambda answers these as `ValidationException`).
    Validation,
    /// The request body could not be read as what the operation expects.
    InvalidRequestContent,
    /// The request is larger than the operation allows.
    RequestTooLarge,
    /// The client stopped sending the request body; it may retry.
    RequestTimeout,
    /// A `RevisionId` precondition did not hold.
    PreconditionFailed,
    /// A limit was hit; retry later.
    TooManyRequests,
    /// No provisioned-concurrency configuration exists for the qualifier.
    ProvisionedConcurrencyConfigNotFound,
    /// The request carried no credentials where they are required.
    MissingAuthentication,
    /// The request's access key is not known.
    UnrecognizedClient,
    /// The request's signature is malformed, wrong or expired.
    InvalidSignature,
    /// Nimbus failed on its side.
    Service,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::ResourceNotFound,
        ErrorKind::ResourceConflict,
        ErrorKind::InvalidParameterValue,
        ErrorKind::Validation,
        ErrorKind::InvalidRequestContent,
        ErrorKind::RequestTooLarge,
        ErrorKind::RequestTimeout,
        ErrorKind::PreconditionFailed,
        ErrorKind::TooManyRequests,
        ErrorKind::ProvisionedConcurrencyConfigNotFound,
        ErrorKind::MissingAuthentication,
        ErrorKind::UnrecognizedClient,
        ErrorKind::InvalidSignature,
        ErrorKind::Service,
    ];

    /// The kind whose Lambda error code is `code`, if any.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The Lambda error code, as sent in `x-amzn-ErrorType`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceConflict => "ResourceConflictException",
            ErrorKind::InvalidParameterValue => "InvalidParameterValueException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::InvalidRequestContent => "InvalidRequestContentException",
            ErrorKind::RequestTooLarge => "RequestEntityTooLargeException",
            ErrorKind::RequestTimeout => "RequestTimeoutException",
            ErrorKind::PreconditionFailed => "PreconditionFailedException",
            ErrorKind::TooManyRequests => "TooManyRequestsException",
            ErrorKind::ProvisionedConcurrencyConfigNotFound => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
            ErrorKind::MissingAuthentication => "MissingAuthenticationTokenException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::Service => "ServiceException",
        }
    }
}

/// A platform error: what went wrong, phrased for the API caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// How the caller should read the failure.
    pub kind: ErrorKind,
    /// The message, in Lambda's words where Lambda has words for it.
    pub message: String,
    /// Why a request was throttled (`TooManyRequests` only), e.g. `ConcurrentInvocationLimitExceeded`.
    pub reason: Option<String>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            reason: None,
        }
    }

    /// A throttle: Lambda's 429 with its `Reason`.
    pub fn throttled(reason: &str) -> Self {
        Error {
            reason: Some(reason.to_owned()),
            ..Self::new(ErrorKind::TooManyRequests, "Rate Exceeded.")
        }
    }

    /// A bad parameter value.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }

    /// A model constraint violation, phrased as Lambda phrases them.
    pub fn validation(value: &str, field: &str, constraint: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    /// A missing function, named by its ARN.
    pub fn function_not_found(arn: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Function not found: {arn}"),
        )
    }

    /// A failure on Nimbus's side; `what` says what was being done.
    pub fn service(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Service, format!("internal error: {what}"))
    }
}

/// A `Result` whose error is the platform [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_found_by_its_code() {
        for kind in ErrorKind::ALL {
            // A new kind fails to compile here until it is listed in ALL too.
            match kind {
                ErrorKind::ResourceNotFound
                | ErrorKind::ResourceConflict
                | ErrorKind::InvalidParameterValue
                | ErrorKind::Validation
                | ErrorKind::InvalidRequestContent
                | ErrorKind::RequestTooLarge
                | ErrorKind::RequestTimeout
                | ErrorKind::PreconditionFailed
                | ErrorKind::TooManyRequests
                | ErrorKind::ProvisionedConcurrencyConfigNotFound
                | ErrorKind::MissingAuthentication
                | ErrorKind::UnrecognizedClient
                | ErrorKind::InvalidSignature
                | ErrorKind::Service => {}
            }
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        let mut codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::from_code("NoSuchException"), None);
    }
}
