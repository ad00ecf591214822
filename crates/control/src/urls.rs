//! Function URLs: whether (and how) a function answers HTTP at `/fn/{name}[:{alias}]/…`.

use nimbus_core::model::{lambda_timestamp, LATEST};
use nimbus_core::{validate, Error, ErrorKind, UrlConfig};
use serde_json::Value;

use crate::{store_error, Platform, Result};

/// What a create or update request sets; `None` keeps a field (or takes its default).
#[derive(Debug, Clone, Default)]
pub struct UrlPatch {
    /// `NONE` or `AWS_IAM`.
    pub auth_type: Option<String>,
    /// Lambda's `Cors` object.
    pub cors: Option<Value>,
    /// `BUFFERED` (response streaming is not offered).
    pub invoke_mode: Option<String>,
}

fn url_not_found() -> Error {
    Error::new(
        ErrorKind::ResourceNotFound,
        "The resource you requested does not exist.",
    )
}

/// Checks a `Cors` object's members and their types.
fn check_cors(cors: &Value) -> Result<()> {
    let Some(members) = cors.as_object() else {
        return Err(Error::invalid("Cors must be an object"));
    };
    for (key, value) in members {
        let ok = match key.as_str() {
            "AllowOrigins" | "AllowMethods" | "AllowHeaders" | "ExposeHeaders" => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            "AllowCredentials" => value.is_boolean(),
            "MaxAge" => value.as_u64().is_some_and(|age| age <= 86_400),
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(format!(
                "Cors member {key} is unknown or has the wrong type"
            )));
        }
    }
    Ok(())
}

impl UrlPatch {
    fn check(&self) -> Result<()> {
        if let Some(auth) = &self.auth_type {
            if auth != "NONE" && auth != "AWS_IAM" {
                return Err(Error::validation(
                    auth,
                    "authType",
                    "Member must satisfy enum value set: [NONE, AWS_IAM]",
                ));
            }
        }
        match self.invoke_mode.as_deref() {
            None | Some("BUFFERED") => {}
            Some("RESPONSE_STREAM") => {
                return Err(Error::invalid(
                    "InvokeMode RESPONSE_STREAM is not supported by this server; use BUFFERED",
                ))
            }
            Some(other) => {
                return Err(Error::validation(
                    other,
                    "invokeMode",
                    "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]",
                ))
            }
        }
        if let Some(cors) = &self.cors {
            check_cors(cors)?;
        }
        Ok(())
    }
}

impl Platform {
    /// The function and alias a URL call is about; versions are refused, as on Lambda.
    async fn url_target(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, Option<String>)> {
        let (name, qualifier) = self.resolve(function, qualifier)?;
        self.get_function(&name, None).await?;
        match qualifier.as_deref() {
            None | Some(LATEST) => Ok((name, None)),
            Some(q) if validate::is_version_number(q) => Err(Error::validation(
                q,
                "qualifier",
                "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)",
            )),
            Some(alias) => {
                self.load_alias(&name, alias).await?;
                Ok((name, Some(alias.to_owned())))
            }
        }
    }

    /// CreateFunctionUrlConfig.
    pub async fn create_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        patch: UrlPatch,
    ) -> Result<UrlConfig> {
        let (name, qualifier) = self.url_target(function, qualifier).await?;
        if patch.auth_type.is_none() {
            return Err(Error::new(
                ErrorKind::Validation,
                "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
            ));
        }
        patch.check()?;
        let now = lambda_timestamp(chrono::Utc::now());
        let url = UrlConfig {
            function: name.clone(),
            qualifier: qualifier.clone(),
            auth_type: patch.auth_type.unwrap_or_default(),
            cors: patch.cors,
            invoke_mode: "BUFFERED".to_owned(),
            creation_time: now.clone(),
            last_modified_time: now,
        };
        match self.meta.put_url(&url, true).await {
            Ok(()) => Ok(url),
            Err(nimbus_store::StoreError::Conflict) => {
                let arn = match &qualifier {
                    Some(q) => self.scope.qualified_arn(&name, q),
                    None => self.scope.function_arn(&name),
                };
                Err(Error::new(
                    ErrorKind::ResourceConflict,
                    format!("Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"),
                ))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// GetFunctionUrlConfig.
    pub async fn get_url(&self, function: &str, qualifier: Option<&str>) -> Result<UrlConfig> {
        let (name, qualifier) = self.url_target(function, qualifier).await?;
        self.meta
            .get_url(&name, qualifier.as_deref())
            .await
            .map_err(store_error)?
            .ok_or_else(url_not_found)
    }

    /// UpdateFunctionUrlConfig.
    pub async fn update_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        patch: UrlPatch,
    ) -> Result<UrlConfig> {
        let current = self.get_url(function, qualifier).await?;
        patch.check()?;
        let url = UrlConfig {
            auth_type: patch.auth_type.unwrap_or_else(|| current.auth_type.clone()),
            cors: patch.cors.or_else(|| current.cors.clone()),
            last_modified_time: lambda_timestamp(chrono::Utc::now()),
            ..current
        };
        self.meta.put_url(&url, false).await.map_err(store_error)?;
        Ok(url)
    }

    /// DeleteFunctionUrlConfig.
    pub async fn delete_url(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let (name, qualifier) = self.url_target(function, qualifier).await?;
        if self
            .meta
            .delete_url(&name, qualifier.as_deref())
            .await
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(url_not_found())
        }
    }

    /// ListFunctionUrlConfigs.
    pub async fn list_urls(&self, function: &str) -> Result<Vec<UrlConfig>> {
        let owner = self.get_unqualified(function).await?;
        self.meta.list_urls(&owner.name).await.map_err(store_error)
    }

    /// The URL configuration an HTTP trigger call at `target` (`name` or `name:alias`)
    /// goes through; `None` when there is none (the trigger answers 404).
    pub async fn url_for_trigger(&self, target: &str) -> Result<Option<UrlConfig>> {
        let Ok(reference) = nimbus_core::arn::parse_function_ref(target) else {
            return Ok(None);
        };
        let qualifier = reference.qualifier.filter(|q| q != LATEST);
        self.meta
            .get_url(&reference.name, qualifier.as_deref())
            .await
            .map_err(store_error)
    }
}
