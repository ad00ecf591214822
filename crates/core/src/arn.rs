//! Function ARNs and the forms a `FunctionName` parameter may take.

use crate::error::{Error, Result};
use crate::validate;

/// The account id Nimbus reports in ARNs.
pub const ACCOUNT_ID: &str = "000000000000";

/// Where ARNs say a function lives.
#[derive(Debug, Clone)]
pub struct ArnScope {
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

impl ArnScope {
    /// The unqualified ARN of function `name`.
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{name}",
            self.region
        )
    }

    /// The ARN of function `name` at `qualifier` (a version or alias).
    pub fn qualified_arn(&self, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(name))
    }
}

/// A function named by the caller: its name and the qualifier written into the name, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    /// The bare function name.
    pub name: String,
    /// A version or alias given as part of the name (`name:qualifier`).
    pub qualifier: Option<String>,
    /// The account id, when the name was an ARN.
    pub account: Option<String>,
    /// The region, when the name was a full ARN.
    pub region: Option<String>,
}

/// Parses a `FunctionName` parameter: `name`, `name:qualifier`, the partial ARN
/// `123456789012:function:name[:qualifier]`, or a full function ARN.
pub fn parse_function_ref(input: &str) -> Result<FunctionRef> {
    let bad = || {
        Error::validation(
            input,
            "functionName",
            "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?",
        )
    };
    if input.is_empty() || input.len() > 170 {
        return Err(bad());
    }
    let parts: Vec<&str> = input.split(':').collect();
    let full_arn = |arn: &str, partition: &str, region: &str, account: &str| {
        arn == "arn" && is_partition(partition) && is_region(region) && is_account(account)
    };
    let (name, qualifier, account, region) = match parts.as_slice() {
        [name] => (*name, None, None, None),
        [name, qual] => (*name, Some(*qual), None, None),
        [account, "function", name] if is_account(account) => (*name, None, Some(*account), None),
        [account, "function", name, qual] if is_account(account) => {
            (*name, Some(*qual), Some(*account), None)
        }
        [arn, partition, "lambda", region, account, "function", name]
            if full_arn(arn, partition, region, account) =>
        {
            (*name, None, Some(*account), Some(*region))
        }
        [arn, partition, "lambda", region, account, "function", name, qual]
            if full_arn(arn, partition, region, account) =>
        {
            (*name, Some(*qual), Some(*account), Some(*region))
        }
        _ => return Err(bad()),
    };
    if !validate::is_function_name(name) {
        return Err(bad());
    }
    if let Some(q) = qualifier {
        if !validate::is_qualifier(q) {
            return Err(bad());
        }
    }
    Ok(FunctionRef {
        name: name.to_owned(),
        qualifier: qualifier.map(str::to_owned),
        account: account.map(str::to_owned),
        region: region.map(str::to_owned),
    })
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_partition(s: &str) -> bool {
    s.strip_prefix("aws")
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form_of_function_name() {
        let plain = parse_function_ref("f1").expect("plain");
        assert_eq!((plain.name.as_str(), plain.qualifier), ("f1", None));
        let qual = parse_function_ref("f1:$LATEST").expect("qualified");
        assert_eq!(qual.qualifier.as_deref(), Some("$LATEST"));
        let partial = parse_function_ref("123456789012:function:f1:prod").expect("partial");
        assert_eq!(partial.name, "f1");
        assert_eq!(partial.qualifier.as_deref(), Some("prod"));
        let full =
            parse_function_ref("arn:aws:lambda:us-east-1:000000000000:function:f1").expect("full");
        assert_eq!((full.name.as_str(), full.qualifier), ("f1", None));
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "a b",
            "f1:",
            "a:b:c",
            "arn:aws:s3:us-east-1:000000000000:function:f1",
            "12:function:f1",
            &"x".repeat(65),
        ] {
            assert!(parse_function_ref(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
