//! Validation of what users send: names, qualifiers, and function configuration.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::limits;
use crate::model::{FunctionSpec, Runtime, RuntimeFamily};

/// Environment variable names a user may not set: the runtime owns them.
pub const RESERVED_ENV_KEYS: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Whether `name` is a valid function name: `[A-Za-z0-9_-]{1,64}`.
pub fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `q` is a valid qualifier: `$LATEST`, a version number or an alias name.
pub fn is_qualifier(q: &str) -> bool {
    q == "$LATEST"
        || ((1..=128).contains(&q.len())
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Checks a name given where only a bare function name is allowed (CreateFunction).
pub fn function_name(name: &str) -> Result<()> {
    if is_function_name(name) {
        Ok(())
    } else {
        Err(Error::validation(
            name,
            "functionName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length between 1 and 64",
        ))
    }
}

/// Configuration fields of a create or update request, as sent: `None` leaves a field as it
/// was (on update) or takes its default (on create).
#[derive(Debug, Clone, Default)]
pub struct SpecPatch {
    /// Runtime identifier.
    pub runtime: Option<String>,
    /// Handler string.
    pub handler: Option<String>,
    /// Execution role ARN.
    pub role: Option<String>,
    /// Memory, MB.
    pub memory_mb: Option<i64>,
    /// Timeout, seconds.
    pub timeout_s: Option<i64>,
    /// Description.
    pub description: Option<String>,
    /// Environment variables; `Some(empty)` clears them.
    pub environment: Option<BTreeMap<String, String>>,
    /// Instruction set architectures (exactly one).
    pub architectures: Option<Vec<String>>,
    /// `/tmp` size, MB.
    pub ephemeral_storage_mb: Option<i64>,
}

impl SpecPatch {
    /// Validates a create request into a full spec, filling Lambda's defaults.
    pub fn into_new_spec(self) -> Result<FunctionSpec> {
        let role = match &self.role {
            Some(r) => r.clone(),
            None => {
                return Err(Error::new(
                    crate::ErrorKind::Validation,
                    "1 validation error detected: Value null at 'role' failed to satisfy constraint: Member must not be null",
                ))
            }
        };
        let runtime = match &self.runtime {
            Some(r) => Runtime::parse(r)?,
            None => {
                return Err(Error::invalid(
                    "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
                ))
            }
        };
        let base = FunctionSpec {
            handler: String::new(),
            runtime,
            role,
            memory_mb: limits::MEMORY_DEFAULT_MB,
            timeout_s: limits::TIMEOUT_DEFAULT_S,
            description: String::new(),
            environment: None,
            architecture: "x86_64".to_owned(),
            ephemeral_storage_mb: 512,
        };
        self.apply_to(&base)
    }

    /// Validates an update request against the current spec, giving the new spec.
    pub fn apply_to(self, base: &FunctionSpec) -> Result<FunctionSpec> {
        let mut spec = base.clone();
        if let Some(r) = self.runtime {
            spec.runtime = Runtime::parse(&r)?;
        }
        if let Some(h) = self.handler {
            spec.handler = h;
        }
        if let Some(role) = self.role {
            spec.role = role;
        }
        if let Some(m) = self.memory_mb {
            spec.memory_mb = ranged(
                m,
                "memorySize",
                limits::MEMORY_MIN_MB,
                limits::MEMORY_MAX_MB,
            )?;
        }
        if let Some(t) = self.timeout_s {
            spec.timeout_s = ranged(t, "timeout", limits::TIMEOUT_MIN_S, limits::TIMEOUT_MAX_S)?;
        }
        if let Some(d) = self.description {
            spec.description = d;
        }
        if let Some(env) = self.environment {
            spec.environment = Some(env);
        }
        if let Some(archs) = self.architectures {
            spec.architecture = architecture(&archs)?;
        }
        if let Some(size) = self.ephemeral_storage_mb {
            spec.ephemeral_storage_mb = ranged(size, "ephemeralStorage.size", 512, 10_240)?;
        }
        role(&spec.role)?;
        handler(&spec.handler, spec.runtime.family())?;
        if spec.description.chars().count() > limits::DESCRIPTION_MAX_CHARS {
            return Err(Error::validation(
                &spec.description,
                "description",
                "Member must have length less than or equal to 256",
            ));
        }
        if let Some(env) = &spec.environment {
            environment(env)?;
        }
        Ok(spec)
    }
}

fn ranged(value: i64, field: &str, min: u32, max: u32) -> Result<u32> {
    if value < i64::from(min) {
        return Err(Error::validation(
            &value.to_string(),
            field,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > i64::from(max) {
        return Err(Error::validation(
            &value.to_string(),
            field,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    u32::try_from(value).map_err(|_| Error::invalid(format!("{field} is out of range")))
}

fn architecture(archs: &[String]) -> Result<String> {
    match archs {
        [one] if one == "x86_64" || one == "arm64" => Ok(one.clone()),
        _ => Err(Error::validation(
            &format!("[{}]", archs.join(", ")),
            "architectures",
            "Member must have length less than or equal to 1 and each member must satisfy enum value set: [x86_64, arm64]",
        )),
    }
}

/// Checks a role ARN: `arn:aws:iam::<12 digits>:role/<name>`.
pub fn role(role: &str) -> Result<()> {
    let ok = (|| {
        let rest = role.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        let rest = rest.strip_prefix("iam::")?;
        let (account, name) = rest.split_once(":role/")?;
        let partition_ok = partition
            .strip_prefix("aws")
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'));
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&b));
        Some(partition_ok && account_ok && name_ok)
    })()
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            role,
            "role",
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ))
    }
}

fn handler(handler: &str, family: RuntimeFamily) -> Result<()> {
    if handler.is_empty() {
        if family == RuntimeFamily::Provided {
            return Ok(());
        }
        return Err(Error::invalid(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    }
    if handler.chars().count() > crate::limits::HANDLER_MAX_CHARS
        || handler.chars().any(char::is_whitespace)
    {
        return Err(Error::validation(
            handler,
            "handler",
            "Member must satisfy regular expression pattern: [^\\s]+ and have length less than or equal to 128",
        ));
    }
    Ok(())
}

/// Checks environment variables: key pattern, no reserved keys, at most 4 KB as JSON.
pub fn environment(env: &BTreeMap<String, String>) -> Result<()> {
    let reserved: Vec<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV_KEYS.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(Error::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    for key in env.keys() {
        let mut chars = key.chars();
        // Lambda's pattern, [a-zA-Z]([a-zA-Z0-9_])+, wants at least two characters.
        let ok = key.len() >= 2
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Error::validation(
                key,
                "environment.variables",
                "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
    }
    let measured = serde_json::to_string(env).map_err(Error::service)?;
    if measured.len() > limits::ENVIRONMENT_MAX_BYTES {
        return Err(Error::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn patch() -> SpecPatch {
        SpecPatch {
            runtime: Some("python3.12".into()),
            handler: Some("app.handler".into()),
            role: Some("arn:aws:iam::123456789012:role/lambda".into()),
            ..SpecPatch::default()
        }
    }

    #[test]
    fn create_fills_lambda_defaults() {
        let spec = patch().into_new_spec().expect("valid");
        assert_eq!((spec.memory_mb, spec.timeout_s), (128, 3));
        assert_eq!(spec.environment, None);
        assert_eq!(spec.architecture, "x86_64");
    }

    #[test]
    fn limits_are_enforced_with_the_right_kind() {
        let cases: Vec<(SpecPatch, ErrorKind)> = vec![
            (
                SpecPatch {
                    memory_mb: Some(64),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    memory_mb: Some(10_241),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    timeout_s: Some(0),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    timeout_s: Some(901),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    runtime: Some("java21".into()),
                    ..patch()
                },
                ErrorKind::InvalidParameterValue,
            ),
            (
                SpecPatch {
                    role: Some("r1".into()),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    role: None,
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    handler: Some("a b".into()),
                    ..patch()
                },
                ErrorKind::Validation,
            ),
            (
                SpecPatch {
                    handler: None,
                    ..patch()
                },
                ErrorKind::InvalidParameterValue,
            ),
        ];
        for (p, kind) in cases {
            let err = p.clone().into_new_spec().expect_err("must be rejected");
            assert_eq!(err.kind, kind, "{p:?}: {err}");
        }
    }

    #[test]
    fn environment_rules() {
        let mut env = BTreeMap::new();
        env.insert("AWS_REGION".to_owned(), "x".to_owned());
        let err = environment(&env).expect_err("reserved");
        assert!(err.message.contains("AWS_REGION"));
        let mut big = BTreeMap::new();
        big.insert("BIG".to_owned(), "x".repeat(4100));
        let err = environment(&big).expect_err("too big");
        assert!(err.message.contains("exceeded the 4KB limit"));
        let mut ok = BTreeMap::new();
        ok.insert("GREETING".to_owned(), "hi".to_owned());
        environment(&ok).expect("fine");
    }

    #[test]
    fn provided_runtime_needs_no_handler() {
        let p = SpecPatch {
            runtime: Some("provided.al2023".into()),
            handler: None,
            ..patch()
        };
        p.into_new_spec().expect("provided without handler");
    }
}

/// Checks an alias name: 1–128 of `[a-zA-Z0-9-_]`, not all digits (those are versions).
pub fn alias_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            name,
            "name",
            "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
        ))
    }
}

/// Whether `q` names a published version (a number).
pub fn is_version_number(q: &str) -> bool {
    !q.is_empty() && q.len() <= 10 && q.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an alias's routing against Lambda's rules, except that versions exist:
/// at most one extra version, weights 0.0–1.0, keys are numbers other than the primary,
/// and the primary is not `$LATEST` when there is routing.
pub fn routing(primary: &str, weights: &BTreeMap<String, f64>) -> Result<()> {
    if weights.len() > 1 {
        return Err(Error::validation(
            &format!("{weights:?}"),
            "routingConfig.additionalVersionWeights",
            "Member must have length less than or equal to 1",
        ));
    }
    for (version, weight) in weights {
        if !is_version_number(version) {
            return Err(Error::validation(
                version,
                "routingConfig.additionalVersionWeights",
                "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]+]",
            ));
        }
        if !(0.0..=1.0).contains(weight) || weight.is_nan() {
            return Err(Error::validation(
                &weight.to_string(),
                "routingConfig.additionalVersionWeights",
                "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]",
            ));
        }
        if version == primary {
            return Err(Error::invalid(format!(
                "Invalid function version {version}. Function version {version} is already included in routing configuration."
            )));
        }
    }
    if !weights.is_empty() && primary == "$LATEST" {
        return Err(Error::invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn alias_names_and_routing_rules() {
        alias_name("prod").expect("prod");
        alias_name("v2-canary_1").expect("mixed");
        assert!(alias_name("123").is_err());
        assert!(alias_name("").is_err());
        assert!(alias_name("a b").is_err());
        let w = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        routing("1", &w(&[("2", 0.1)])).expect("canary");
        routing("$LATEST", &w(&[])).expect("plain latest");
        assert!(routing("1", &w(&[("2", 0.1), ("3", 0.1)])).is_err());
        assert!(routing("1", &w(&[("1", 0.1)])).is_err());
        assert!(routing("1", &w(&[("2", 1.5)])).is_err());
        assert!(routing("$LATEST", &w(&[("2", 0.5)])).is_err());
        assert!(routing("1", &w(&[("$LATEST", 0.5)])).is_err());
    }
}
