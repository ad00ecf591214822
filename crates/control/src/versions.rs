//! Published versions: immutable snapshots of `$LATEST`'s code and configuration.

use base64::Engine as _;
use nimbus_core::model::{lambda_timestamp, new_revision_id, LATEST};
use nimbus_core::{limits, validate, Error, ErrorKind, FunctionConfig, FunctionSpec};

use crate::{store_error, Page, Platform, Result};

/// The CodeSha256 Lambda reports: base64 of the digest.
pub(crate) fn code_sha256_base64(config: &FunctionConfig) -> String {
    let digest: Vec<u8> = (0..config.code_sha256_hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(config.code_sha256_hex.get(i..i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Whether two specs differ only in their descriptions (which a publish may set).
fn same_apart_from_description(a: &FunctionSpec, b: &FunctionSpec) -> bool {
    FunctionSpec {
        description: String::new(),
        ..a.clone()
    } == FunctionSpec {
        description: String::new(),
        ..b.clone()
    }
}

impl Platform {
    /// PublishVersion: snapshots `$LATEST`, or returns the last version if nothing changed.
    pub async fn publish_version(
        &self,
        function: &str,
        code_sha256: Option<&str>,
        description: Option<String>,
        revision_id: Option<&str>,
    ) -> Result<FunctionConfig> {
        let current = self.get_unqualified(function).await?;
        Self::check_revision(&current, revision_id)?;
        let current_sha = code_sha256_base64(&current);
        if let Some(expected) = code_sha256.filter(|s| !s.is_empty()) {
            if expected != current_sha {
                return Err(Error::invalid(format!(
                    "CodeSHA256 ({expected}) is different from current CodeSHA256 in $LATEST ({current_sha}). Please try again with the current CodeSHA256."
                )));
            }
        }
        let last = self
            .meta
            .last_published(&current.name)
            .await
            .map_err(store_error)?;
        if let Some(last) = last {
            if last.code_sha256_hex == current.code_sha256_hex
                && same_apart_from_description(&last.spec, &current.spec)
            {
                return Ok(last);
            }
        }
        let mut snapshot = current.clone();
        snapshot.revision_id = new_revision_id();
        snapshot.last_modified = lambda_timestamp(chrono::Utc::now());
        if let Some(description) = description {
            snapshot.spec.description = description;
        }
        let published = self
            .meta
            .publish_version(&snapshot)
            .await
            .map_err(|e| match e {
                nimbus_store::StoreError::Stale => {
                    Error::function_not_found(&self.scope.function_arn(&current.name))
                }
                other => store_error(other),
            })?;
        self.changed(&current.name).await;
        Ok(published)
    }

    /// ListVersionsByFunction: `$LATEST`, then the published versions in order.
    pub async fn list_versions(
        &self,
        function: &str,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<Page<FunctionConfig>> {
        let latest = self.get_unqualified(function).await?;
        let page = crate::page_size(max_items)?;
        let mut items = Vec::new();
        let after = match marker.filter(|m| !m.is_empty()) {
            None => {
                items.push(latest.clone());
                0
            }
            Some(LATEST) => 0,
            Some(m) => m.parse::<u64>().map_err(|_| {
                Error::invalid(format!("Marker '{m}' is not one this server gave out"))
            })?,
        };
        let room = page - items.len();
        let mut versions = self
            .meta
            .list_versions(&latest.name, after, room + 1)
            .await
            .map_err(store_error)?;
        let more = versions.len() > room;
        versions.truncate(room);
        items.extend(versions);
        let next_marker = more
            .then(|| items.last().map(|f| f.version.clone()))
            .flatten();
        Ok(Page { items, next_marker })
    }

    /// DeleteFunction with a qualifier: removes one published version, unless an alias
    /// still routes to it.
    pub(crate) async fn delete_version(&self, name: &str, qualifier: &str) -> Result<()> {
        if qualifier == LATEST {
            self.get_function(name, None).await?;
            return Err(Error::invalid(
                "$LATEST version cannot be deleted without deleting the function.",
            ));
        }
        if !validate::is_version_number(qualifier) {
            self.get_function(name, Some(qualifier)).await?;
            return Err(Error::invalid(
                "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias",
            ));
        }
        let version = self.get_function(name, Some(qualifier)).await?;
        let aliases = self
            .meta
            .list_aliases(name, None, limits::LIST_PAGE_MAX * 200)
            .await
            .map_err(store_error)?;
        let referencing: Vec<String> = aliases
            .iter()
            .filter(|a| a.references(&version.version))
            .map(|a| a.name.clone())
            .collect();
        if !referencing.is_empty() {
            return Err(Error::new(
                ErrorKind::ResourceConflict,
                format!(
                    "Unable to delete version because the following aliases reference it: [{}]",
                    referencing.join(", ")
                ),
            ));
        }
        let number = version.version.parse::<u64>().unwrap_or_default();
        self.meta
            .delete_version(name, number)
            .await
            .map_err(store_error)?;
        self.meta
            .delete_provisioned(name, &version.version)
            .await
            .map_err(store_error)?;
        self.scheduler.provision(&version, 0);
        self.changed(name).await;
        self.scheduler.retire(name, Some(&version.version), None);
        Ok(())
    }
}
