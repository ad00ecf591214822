//! The caller's view of an invocation's outcome, in Lambda's wire terms.

use bytes::Bytes;
use nimbus_runtime::Outcome;

/// What an invoke answers: the payload, and whether it is a function error.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeResult {
    /// The function's result, or the error JSON.
    pub payload: Bytes,
    /// Whether `payload` is an error (`X-Amz-Function-Error: Unhandled`).
    pub function_error: bool,
    /// The version that ran.
    pub executed_version: String,
    /// Wall time of the invocation on the instance, milliseconds.
    pub duration_ms: f64,
    /// Init time of a cold start, milliseconds; `None` when warm.
    pub init_ms: Option<f64>,
}

fn error_json(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string())
}

/// The payload and error flag Lambda sends for `outcome`.
pub(crate) fn payload_of(outcome: Outcome, request_id: &str, timeout_s: u32) -> (Bytes, bool) {
    match outcome {
        Outcome::Success(body) => (body, false),
        Outcome::FunctionError(body) | Outcome::InitError(body) => (body, true),
        Outcome::TimedOut => (
            error_json(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {request_id} Error: Task timed out after {timeout_s}.00 seconds"
                ),
            ),
            true,
        ),
        Outcome::Exited(status) => (
            error_json(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
            ),
            true,
        ),
        Outcome::ResponseTooLarge => (
            error_json(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    nimbus_core::limits::RUNTIME_RESPONSE_MAX_BYTES
                ),
            ),
            true,
        ),
    }
}

/// The payload Lambda sends when a function has no entry point.
pub(crate) fn missing_entrypoint(request_id: &str, why: &str) -> Bytes {
    error_json(
        "Runtime.InvalidEntrypoint",
        format!("RequestId: {request_id} Error: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_crashes_read_as_lambda_words_them() {
        let (body, err) = payload_of(Outcome::TimedOut, "r1", 1);
        assert!(err);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["errorType"], "Sandbox.Timedout");
        assert_eq!(
            v["errorMessage"],
            "RequestId: r1 Error: Task timed out after 1.00 seconds"
        );
        let (body, _) = payload_of(Outcome::Exited("exit status 1".into()), "r2", 3);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["errorType"], "Runtime.ExitError");
        assert_eq!(
            v["errorMessage"],
            "RequestId: r2 Error: Runtime exited with error: exit status 1"
        );
    }
}
