//! The function model: a function's runtime, its configuration, and its stored record.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which kind of process runs a function's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeFamily {
    /// Nimbus's built-in Python runtime client on a Python interpreter.
    Python,
    /// Nimbus's built-in Node.js runtime client on Node.js.
    Node,
    /// The package's own `bootstrap` executable, speaking the Runtime API.
    Provided,
}

/// Runtime identifiers Nimbus runs, as Lambda spells them.
pub const KNOWN_RUNTIMES: &[&str] = &[
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "provided",
    "provided.al2",
    "provided.al2023",
];

/// A runtime identifier such as `python3.12`, known to be one Nimbus runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Runtime(String);

impl Runtime {
    /// Parses a runtime identifier; unknown identifiers are an `InvalidParameterValue` error.
    pub fn parse(id: &str) -> Result<Self> {
        if KNOWN_RUNTIMES.contains(&id) {
            Ok(Runtime(id.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "Value {id} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
                KNOWN_RUNTIMES.join(", ")
            )))
        }
    }

    /// The identifier, e.g. `nodejs20.x`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which kind of process runs this runtime.
    pub fn family(&self) -> RuntimeFamily {
        if self.0.starts_with("python") {
            RuntimeFamily::Python
        } else if self.0.starts_with("nodejs") {
            RuntimeFamily::Node
        } else {
            RuntimeFamily::Provided
        }
    }
}

impl TryFrom<String> for Runtime {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Runtime::parse(&value)
    }
}

impl From<Runtime> for String {
    fn from(value: Runtime) -> Self {
        value.0
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user sets about a function, validated: everything but its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// The runtime that runs the code.
    pub runtime: Runtime,
    /// `module.function` for built-in runtimes; passed as `_HANDLER` to `bootstrap`.
    pub handler: String,
    /// The execution role's ARN (kept for compatibility; Nimbus grants no AWS access).
    pub role: String,
    /// Memory limit, MB.
    pub memory_mb: u32,
    /// Timeout of one invocation, seconds.
    pub timeout_s: u32,
    /// Free text.
    pub description: String,
    /// The user's environment variables; `None` when never set (Lambda then omits the field).
    pub environment: Option<BTreeMap<String, String>>,
    /// The instruction set, `x86_64` or `arm64`.
    pub architecture: String,
    /// Size of `/tmp`, MB.
    pub ephemeral_storage_mb: u32,
}

/// A function version as stored: its name, spec, code identity and revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// The function's name.
    pub name: String,
    /// `$LATEST`, or a published version number.
    pub version: String,
    /// Everything the user configured.
    pub spec: FunctionSpec,
    /// Hex SHA-256 of the code zip; names the blob and the unpacked directory.
    pub code_sha256_hex: String,
    /// Size of the code zip, bytes.
    pub code_size: u64,
    /// Size of the unpacked code, bytes.
    pub code_unzipped_size: u64,
    /// Changes on every mutation of the function.
    pub revision_id: String,
    /// When the function last changed, as Lambda formats it.
    pub last_modified: String,
}

/// Scheduling settings kept beside a function's configuration (changing them does not
/// change its revision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    /// Reserved concurrency: the most instances the function may run at once, held for it.
    pub reserved_concurrency: Option<u32>,
    /// How long its idle instances stay warm, seconds; `None` takes the server's default.
    pub keep_alive_s: Option<u32>,
}

/// The `$LATEST` version's name.
pub const LATEST: &str = "$LATEST";

/// Lambda's timestamp format, e.g. `2019-09-24T18:37:26.181+0000`.
pub fn lambda_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A new revision id.
pub fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An alias: a name pointing at a version, optionally with a weighted second version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasConfig {
    /// The alias name.
    pub name: String,
    /// The function it belongs to.
    pub function: String,
    /// The primary version (`$LATEST` or a number).
    pub function_version: String,
    /// Free text.
    pub description: String,
    /// At most one other version and the share (0.0–1.0) of invocations it gets.
    pub additional_version_weights: std::collections::BTreeMap<String, f64>,
    /// Changes on every update of the alias.
    pub revision_id: String,
}

impl AliasConfig {
    /// Picks the version an invocation runs, given a uniform `draw` in [0, 1).
    pub fn route(&self, draw: f64) -> &str {
        let mut threshold = 0.0;
        for (version, weight) in &self.additional_version_weights {
            threshold += weight;
            if draw < threshold {
                return version;
            }
        }
        &self.function_version
    }

    /// Whether the alias sends any invocation to `version`.
    pub fn references(&self, version: &str) -> bool {
        self.function_version == version || self.additional_version_weights.contains_key(version)
    }
}

/// A provisioned-concurrency configuration: instances kept warm for a version or alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    /// The function.
    pub function: String,
    /// The version number or alias it applies to.
    pub qualifier: String,
    /// How many instances to keep warm.
    pub requested: u32,
    /// When it was last set, as Lambda formats it.
    pub last_modified: String,
}

/// A function URL: the HTTP trigger of a function (or of one of its aliases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlConfig {
    /// The function.
    pub function: String,
    /// The alias it invokes; `None` for `$LATEST`.
    pub qualifier: Option<String>,
    /// `NONE` (public) or `AWS_IAM` (signed requests only).
    pub auth_type: String,
    /// Lambda's `Cors` object as given (AllowOrigins, AllowMethods, AllowHeaders,
    /// ExposeHeaders, AllowCredentials, MaxAge), if any.
    pub cors: Option<serde_json::Value>,
    /// `BUFFERED`.
    pub invoke_mode: String,
    /// When it was created, as Lambda formats it.
    pub creation_time: String,
    /// When it last changed.
    pub last_modified_time: String,
}

/// An accepted async (Event) invocation, waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Its request id.
    pub id: String,
    /// The function.
    pub function: String,
    /// The version or alias invoked, if any.
    pub qualifier: Option<String>,
    /// The event.
    pub payload: Vec<u8>,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// When it was accepted, epoch ms.
    pub enqueued_at: i64,
    /// The last delivery's error, if any.
    pub last_error: Option<String>,
}

/// An async event that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event.
    pub event: AsyncEvent,
    /// `RetriesExhausted` or `EventAgeExceeded`.
    pub condition: String,
    /// When it was given up, epoch ms.
    pub failed_at: i64,
}

/// Retry and destination settings for async invocations of a function (or qualifier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    /// The function.
    pub function: String,
    /// The qualifier, if any.
    pub qualifier: Option<String>,
    /// Retries after a function error, 0–2.
    pub maximum_retry_attempts: u32,
    /// Oldest an event may get before it is given up, seconds (60–21600).
    pub maximum_event_age_s: u32,
    /// Function ARN that receives a record of each success.
    pub on_success: Option<String>,
    /// Function ARN that receives a record of each failure.
    pub on_failure: Option<String>,
    /// When it last changed, epoch seconds.
    pub last_modified: f64,
}
