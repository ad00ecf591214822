//! Failures of the remote services a store can sit on (an S3 bucket), told in the store's
//! own terms: what was being done, what kind of problem it is (and so what to check), and
//! the backend's own words. No backend library's types appear here.

use std::fmt;

/// What kind of problem a remote store has: each says what the operator should check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteProblem {
    /// The settings cannot work (a malformed URL or endpoint, an empty bucket name).
    Misconfigured,
    /// No connection could be made, or none in time.
    Unreachable,
    /// The service does not accept the credentials (unknown key, wrong secret, expired
    /// token, or a request signed for another region).
    BadCredentials,
    /// The credentials are known but may not do this.
    AccessDenied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// Anything else: the service failed or answered something unexpected.
    Failed,
}

impl fmt::Display for RemoteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteProblem::Misconfigured => "the S3 settings are invalid: check the bucket URL, endpoint and region",
            RemoteProblem::Unreachable => "the S3 endpoint cannot be reached: check the endpoint URL (AWS_ENDPOINT_URL), the network, and that the S3 server is running",
            RemoteProblem::BadCredentials => "the S3 service refused the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and the region requests are signed for (AWS_REGION)",
            RemoteProblem::AccessDenied => "access to the bucket was denied: check the credentials, and that they may list, read, write and delete objects under the prefix",
            RemoteProblem::NoSuchBucket => "the bucket does not exist: create it, or check its name, the region and the path-style setting",
            RemoteProblem::Failed => "the S3 request failed: retry; if it keeps failing, check the S3 service's health",
        })
    }
}

/// A remote store's failure (see [`RemoteProblem`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {problem} ({detail})")]
pub struct RemoteError {
    /// What was being done, naming the object or bucket.
    pub what: String,
    /// The kind of problem, which says what to check.
    pub problem: RemoteProblem,
    /// The backend's own account of it, for the operator's log.
    pub detail: String,
}
