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
    /// The invocation's log: START, the function's output, END and REPORT lines.
    pub log: Bytes,
    /// Whether it ran out of time.
    pub timed_out: bool,
}

/// The facts an invocation's log reports.
pub(crate) struct LogFacts<'a> {
    pub request_id: &'a str,
    pub version: &'a str,
    pub output: &'a [u8],
    pub timed_out_after_s: Option<u32>,
    /// Lambda's platform lines for a crash (`RequestId: … Error: Runtime exited …`): the
    /// exit status and the error type.
    pub exit: Option<(&'a str, &'static str)>,
    pub duration_ms: f64,
    pub init_ms: Option<f64>,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
}

/// The invocation log as Lambda writes it (tab-separated REPORT fields, 1 ms billing).
pub(crate) fn invocation_log(facts: &LogFacts<'_>) -> Bytes {
    let id = facts.request_id;
    let mut log = format!("START RequestId: {id} Version: {}\n", facts.version).into_bytes();
    log.extend_from_slice(facts.output);
    if let Some(seconds) = facts.timed_out_after_s {
        log.extend_from_slice(
            format!("RequestId: {id} Error: Task timed out after {seconds}.00 seconds\n")
                .as_bytes(),
        );
    }
    if let Some((status, error_type)) = facts.exit {
        log.extend_from_slice(
            format!("RequestId: {id} Error: Runtime exited with error: {status}\n{error_type}\n")
                .as_bytes(),
        );
    }
    let mut report = format!(
        "END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
        facts.duration_ms,
        // Lambda bills init too, in 1 ms units.
        (facts.duration_ms + facts.init_ms.unwrap_or(0.0)).ceil() as u64,
        facts.memory_mb,
        facts.max_memory_used_mb,
    );
    if let Some(init) = facts.init_ms {
        report.push_str(&format!("Init Duration: {init:.2} ms\t"));
    }
    report.push('\n');
    log.extend_from_slice(report.as_bytes());
    Bytes::from(log)
}

fn error_json(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string())
}

/// The payload and error flag Lambda sends for `outcome`.
pub(crate) fn payload_of(outcome: Outcome, request_id: &str, timeout_s: u32) -> (Bytes, bool) {
    match outcome {
        Outcome::Success(body) => (body, false),
        Outcome::FunctionError(body) | Outcome::InitError(body) => (body, true),
        Outcome::TimedOut | Outcome::InitTimedOut => (
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
        Outcome::OutOfMemory(status) => (
            error_json(
                "Runtime.OutOfMemory",
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
    fn log_has_start_output_end_and_report_lines() {
        let log = invocation_log(&LogFacts {
            request_id: "r1",
            version: "$LATEST",
            output: b"hello\n",
            timed_out_after_s: None,
            exit: None,
            duration_ms: 15.74,
            init_ms: Some(130.49),
            memory_mb: 128,
            max_memory_used_mb: 56,
        });
        let text = String::from_utf8(log.to_vec()).expect("utf-8");
        assert_eq!(
            text,
            "START RequestId: r1 Version: $LATEST\nhello\nEND RequestId: r1\nREPORT RequestId: r1\tDuration: 15.74 ms\tBilled Duration: 147 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms\t\n"
        );
    }

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
