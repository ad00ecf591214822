//! Aliases: names pointing at a version, optionally with a weighted second version.

use std::collections::BTreeMap;

use nimbus_core::model::{new_revision_id, LATEST};
use nimbus_core::{validate, AliasConfig, Error, ErrorKind};

use crate::{store_error, Page, Platform, Result};

/// What an UpdateAlias request changes; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct AliasPatch {
    /// New primary version.
    pub function_version: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New routing (an empty map removes it).
    pub additional_version_weights: Option<BTreeMap<String, f64>>,
}

impl Platform {
    /// Checks that `version` of function `name` exists (`$LATEST` always does).
    async fn check_version_exists(&self, name: &str, version: &str) -> Result<()> {
        if version != LATEST && !validate::is_version_number(version) {
            return Err(Error::validation(
                version,
                "functionVersion",
                "Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)",
            ));
        }
        self.get_function(name, Some(version)).await.map(|_| ())
    }

    /// Checks an alias's primary version and routing.
    async fn check_alias(&self, alias: &AliasConfig) -> Result<()> {
        validate::routing(&alias.function_version, &alias.additional_version_weights)?;
        self.check_version_exists(&alias.function, &alias.function_version)
            .await?;
        for version in alias.additional_version_weights.keys() {
            self.check_version_exists(&alias.function, version).await?;
        }
        Ok(())
    }

    fn alias_arn(&self, alias: &AliasConfig) -> String {
        self.scope.qualified_arn(&alias.function, &alias.name)
    }

    /// CreateAlias.
    pub async fn create_alias(
        &self,
        function: &str,
        name: &str,
        function_version: &str,
        description: Option<String>,
        weights: Option<BTreeMap<String, f64>>,
    ) -> Result<AliasConfig> {
        let owner = self.get_unqualified(function).await?;
        validate::alias_name(name)?;
        let alias = AliasConfig {
            name: name.to_owned(),
            function: owner.name.clone(),
            function_version: function_version.to_owned(),
            description: description.unwrap_or_default(),
            additional_version_weights: weights.unwrap_or_default(),
            revision_id: new_revision_id(),
        };
        self.check_alias(&alias).await?;
        match self.meta.insert_alias(&alias).await {
            Ok(()) => {
                self.changed(&owner.name).await;
                Ok(alias)
            }
            Err(nimbus_store::StoreError::Conflict) => Err(Error::new(
                ErrorKind::ResourceConflict,
                format!("Alias already exists: {}", self.alias_arn(&alias)),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// GetAlias.
    pub async fn get_alias(&self, function: &str, name: &str) -> Result<AliasConfig> {
        let owner = self.get_unqualified(function).await?;
        self.meta
            .get_alias(&owner.name, name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ResourceNotFound,
                    format!(
                        "Alias not found: {}",
                        self.scope.qualified_arn(&owner.name, name)
                    ),
                )
            })
    }

    /// UpdateAlias, with an optional RevisionId precondition.
    pub async fn update_alias(
        &self,
        function: &str,
        name: &str,
        patch: AliasPatch,
        revision_id: Option<&str>,
    ) -> Result<AliasConfig> {
        let current = self.get_alias(function, name).await?;
        if revision_id.is_some_and(|r| r != current.revision_id) {
            return Err(Error::new(
                ErrorKind::PreconditionFailed,
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            ));
        }
        let next = AliasConfig {
            function_version: patch
                .function_version
                .unwrap_or_else(|| current.function_version.clone()),
            description: patch
                .description
                .unwrap_or_else(|| current.description.clone()),
            additional_version_weights: patch
                .additional_version_weights
                .unwrap_or_else(|| current.additional_version_weights.clone()),
            revision_id: new_revision_id(),
            ..current.clone()
        };
        self.check_alias(&next).await?;
        match self.meta.replace_alias(&next, &current.revision_id).await {
            Ok(()) => {
                self.changed(&next.function).await;
                Ok(next)
            }
            Err(nimbus_store::StoreError::Stale) => Err(Error::new(
                ErrorKind::ResourceConflict,
                format!(
                    "The operation cannot be performed at this time. An update is in progress for resource: {}",
                    self.alias_arn(&current)
                ),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// DeleteAlias.
    pub async fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        let alias = self.get_alias(function, name).await?;
        self.meta
            .delete_alias(&alias.function, &alias.name)
            .await
            .map_err(store_error)?;
        self.changed(&alias.function).await;
        Ok(())
    }

    /// ListAliases, optionally only those routing to `function_version`.
    pub async fn list_aliases(
        &self,
        function: &str,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<Page<AliasConfig>> {
        let owner = self.get_unqualified(function).await?;
        let page = crate::page_size(max_items)?;
        let mut items: Vec<AliasConfig> = self
            .meta
            .list_aliases(
                &owner.name,
                marker.filter(|m| !m.is_empty()),
                usize::MAX >> 1,
            )
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|a| function_version.is_none_or(|v| a.references(v)))
            .collect();
        let more = items.len() > page;
        items.truncate(page);
        let next_marker = more.then(|| items.last().map(|a| a.name.clone())).flatten();
        Ok(Page { items, next_marker })
    }
}
