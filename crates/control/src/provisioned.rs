//! Provisioned concurrency: instances of a version (or an alias's version) started ahead
//! of demand and kept warm.

use nimbus_core::model::{lambda_timestamp, LATEST};
use nimbus_core::{Error, ErrorKind, FunctionConfig, ProvisionedConfig};

use crate::{store_error, Platform, Result};

/// A configuration and how far its instances have got.
#[derive(Debug, Clone)]
pub struct ProvisionedStatus {
    /// The stored configuration.
    pub config: ProvisionedConfig,
    /// Instances initialised and ready.
    pub available: u32,
}

impl ProvisionedStatus {
    /// `READY` once every requested instance is, else `IN_PROGRESS`.
    pub fn status(&self) -> &'static str {
        if self.available >= self.config.requested {
            "READY"
        } else {
            "IN_PROGRESS"
        }
    }
}

impl Platform {
    /// The function, the qualifier, and the version config a provisioned-concurrency call
    /// is about; `$LATEST` and a missing qualifier are refused as Lambda refuses them.
    async fn provisioned_target(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String, FunctionConfig)> {
        let (name, qualifier) = self.resolve(function, qualifier)?;
        let qualifier = match qualifier {
            Some(q) if q != LATEST => q,
            _ => {
                return Err(Error::invalid(
                    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
                ))
            }
        };
        let version = self.get_function(&name, Some(&qualifier)).await?;
        Ok((name, qualifier, version))
    }

    /// PutProvisionedConcurrencyConfig: keeps `requested` instances warm.
    pub async fn put_provisioned(
        &self,
        function: &str,
        qualifier: Option<&str>,
        requested: i64,
    ) -> Result<ProvisionedStatus> {
        let (name, qualifier, version) = self.provisioned_target(function, qualifier).await?;
        let max = i64::from(self.scheduler.max_concurrency());
        let Some(requested) = u32::try_from(requested)
            .ok()
            .filter(|n| (1..=max).contains(&i64::from(*n)))
        else {
            return Err(Error::invalid(format!(
                "ProvisionedConcurrentExecutions must be between 1 and {max}, got {requested}"
            )));
        };
        let config = ProvisionedConfig {
            function: name,
            qualifier,
            requested,
            last_modified: lambda_timestamp(chrono::Utc::now()),
        };
        self.meta
            .put_provisioned(&config)
            .await
            .map_err(store_error)?;
        // The instances start on the function's home node: here, or there within a second.
        if self.home_elsewhere(&version.name).is_none() {
            self.scheduler.provision(&version, requested);
        }
        let available = self.provisioned_ready(&version).await;
        Ok(ProvisionedStatus { config, available })
    }

    /// GetProvisionedConcurrencyConfig.
    pub async fn get_provisioned(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<ProvisionedStatus> {
        let (name, qualifier, version) = self.provisioned_target(function, qualifier).await?;
        let config = self
            .meta
            .get_provisioned(&name, &qualifier)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ProvisionedConcurrencyConfigNotFound,
                    "No Provisioned Concurrency Config found for this function",
                )
            })?;
        let available = self.provisioned_ready(&version).await;
        Ok(ProvisionedStatus { config, available })
    }

    /// How many of `version`'s provisioned instances are ready, on the function's home node
    /// (asked of it when it is another node; 0 if it cannot be reached).
    pub async fn provisioned_ready(&self, version: &FunctionConfig) -> u32 {
        match (self.home_elsewhere(&version.name), self.routing.get()) {
            (Some((node, address)), Some(routing)) => routing
                .forwarder
                .provisioned_ready(&address, &version.name, &version.version)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(%node, error = %e, "could not ask the home node how many provisioned instances are ready");
                    0
                }),
            _ => self.scheduler.provisioned(&version.name, &version.version).1,
        }
    }

    /// Keeps this node's provisioned instances as the stored configurations and the
    /// cluster's membership say: a function's instances on its home node, none elsewhere
    /// (they move when the home does). Run at start and every second.
    pub(crate) async fn reconcile_provisioned(&self) -> Result<()> {
        let mut wanted = std::collections::HashSet::new();
        for config in self
            .meta
            .list_provisioned(None)
            .await
            .map_err(store_error)?
        {
            let version = match self
                .get_function(&config.function, Some(&config.qualifier))
                .await
            {
                Ok(version) => version,
                Err(e) => {
                    tracing::warn!(function = %config.function, qualifier = %config.qualifier, error = %e, "provisioned concurrency for a missing version");
                    continue;
                }
            };
            if self.home_elsewhere(&version.name).is_some() {
                continue;
            }
            wanted.insert((version.name.clone(), version.version.clone()));
            let (requested, _) = self.scheduler.provisioned(&version.name, &version.version);
            if requested != config.requested {
                self.scheduler.provision(&version, config.requested);
            }
        }
        for (name, version) in self.scheduler.provisioned_targets() {
            if !wanted.contains(&(name.clone(), version.clone())) {
                if let Ok(config) = self.get_function(&name, Some(&version)).await {
                    self.scheduler.provision(&config, 0);
                } else {
                    self.scheduler.retire(&name, Some(&version), None);
                }
            }
        }
        Ok(())
    }

    /// DeleteProvisionedConcurrencyConfig.
    pub async fn delete_provisioned(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let (name, qualifier, version) = self.provisioned_target(function, qualifier).await?;
        if !self
            .meta
            .delete_provisioned(&name, &qualifier)
            .await
            .map_err(store_error)?
        {
            return Err(Error::new(
                ErrorKind::ProvisionedConcurrencyConfigNotFound,
                "No Provisioned Concurrency Config found for this function",
            ));
        }
        self.scheduler.provision(&version, 0);
        Ok(())
    }

    /// ListProvisionedConcurrencyConfigs.
    pub async fn list_provisioned(&self, function: &str) -> Result<Vec<ProvisionedStatus>> {
        let owner = self.get_unqualified(function).await?;
        let configs = self
            .meta
            .list_provisioned(Some(&owner.name))
            .await
            .map_err(store_error)?;
        let mut out = Vec::new();
        for config in configs {
            let available = match self
                .get_function(&owner.name, Some(&config.qualifier))
                .await
            {
                Ok(version) => self.provisioned_ready(&version).await,
                Err(_) => 0,
            };
            out.push(ProvisionedStatus { config, available });
        }
        Ok(out)
    }
}
