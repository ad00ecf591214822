//! Lambda's request and response shapes, with botocore's member names.

use std::collections::BTreeMap;

use base64::Engine as _;
use nimbus_core::arn::ArnScope;
use nimbus_core::validate::SpecPatch;
use nimbus_core::FunctionConfig;
use serde::Deserialize;
use serde_json::{json, Value};

/// `Environment` in requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentIn {
    #[serde(default)]
    pub variables: Option<BTreeMap<String, String>>,
}

/// `EphemeralStorage` in requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EphemeralStorageIn {
    pub size: i64,
}

/// `Code` of CreateFunction.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CodeIn {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
}

/// The configuration members shared by CreateFunction and UpdateFunctionConfiguration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigIn {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub memory_size: Option<i64>,
    pub timeout: Option<i64>,
    pub description: Option<String>,
    pub environment: Option<EnvironmentIn>,
    pub architectures: Option<Vec<String>>,
    pub ephemeral_storage: Option<EphemeralStorageIn>,
    pub package_type: Option<String>,
    pub layers: Option<Vec<String>>,
}

impl ConfigIn {
    pub(crate) fn into_patch(self) -> SpecPatch {
        SpecPatch {
            runtime: self.runtime,
            handler: self.handler,
            role: self.role,
            memory_mb: self.memory_size,
            timeout_s: self.timeout,
            description: self.description,
            environment: self.environment.map(|e| e.variables.unwrap_or_default()),
            architectures: self.architectures,
            ephemeral_storage_mb: self.ephemeral_storage.map(|e| e.size),
        }
    }
}

/// CreateFunction's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateFunctionIn {
    pub function_name: Option<String>,
    pub code: Option<CodeIn>,
    #[serde(default)]
    pub publish: bool,
    #[serde(flatten)]
    pub config: ConfigIn,
}

/// UpdateFunctionConfiguration's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateConfigurationIn {
    pub revision_id: Option<String>,
    #[serde(flatten)]
    pub config: ConfigIn,
}

/// UpdateFunctionCode's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateCodeIn {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
    pub revision_id: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub publish: bool,
}

/// `FunctionConfiguration`; list entries leave out the state fields, as Lambda does.
pub(crate) fn function_configuration(
    scope: &ArnScope,
    f: &FunctionConfig,
    with_state: bool,
) -> Value {
    let digest = hex::decode(&f.code_sha256_hex).unwrap_or_default();
    let spec = &f.spec;
    let arn = if f.version == nimbus_core::model::LATEST {
        scope.function_arn(&f.name)
    } else {
        scope.qualified_arn(&f.name, &f.version)
    };
    let mut out = json!({
        "FunctionName": f.name,
        "FunctionArn": arn,
        "Runtime": spec.runtime.as_str(),
        "Role": spec.role,
        "Handler": spec.handler,
        "CodeSize": f.code_size,
        "Description": spec.description,
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "LastModified": f.last_modified,
        "CodeSha256": base64::engine::general_purpose::STANDARD.encode(digest),
        "Version": f.version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": f.revision_id,
        "PackageType": "Zip",
        "Architectures": [spec.architecture],
        "EphemeralStorage": {"Size": spec.ephemeral_storage_mb},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", f.name)},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
    });
    if let Some(vars) = &spec.environment {
        out["Environment"] = json!({ "Variables": vars });
    }
    if with_state {
        out["State"] = json!("Active");
        out["LastUpdateStatus"] = json!("Successful");
    }
    out
}

/// Decodes a base64 zip member.
pub(crate) fn decode_zip(b64: &str) -> Result<bytes::Bytes, nimbus_core::Error> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map(bytes::Bytes::from)
        .map_err(|_| {
            nimbus_core::Error::invalid(
                "Could not unzip uploaded file. Please check your file, then try to upload again. (ZipFile is not valid base64)",
            )
        })
}
