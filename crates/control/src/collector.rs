//! The code collector: removes the blobs and unpacked directories of code packages that
//! no function version references any more, once they have gone unused for a grace
//! period, and never one that a live instance, a deploy or a compile holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{store_error, Platform, Result};

impl Platform {
    /// Starts the collector: every `grace / 2` (between 1 s and a minute) it removes what
    /// [`Platform::collect_code`] finds.
    pub fn start_code_collector(self: &Arc<Self>, grace: Duration) {
        let interval = (grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let platform = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(platform) = platform.upgrade() else {
                    return;
                };
                if let Err(e) = platform.collect_code(grace).await {
                    tracing::warn!(error = %e, "code collection failed; retrying later");
                }
            }
        });
    }

    /// One collection: keeps what function versions reference and live instances run,
    /// and (in the code cache) what is pinned, compiling or used within `grace`.
    pub async fn collect_code(&self, grace: Duration) -> Result<nimbus_store::Collected> {
        let since = Instant::now();
        let mut keep = self.meta.referenced_code().await.map_err(store_error)?;
        keep.extend(self.scheduler.code_in_use());
        let collected = self
            .code
            .collect(&keep, grace, since)
            .await
            .map_err(store_error)?;
        if collected.packages > 0 {
            tracing::info!(
                packages = collected.packages,
                bytes = collected.bytes,
                "collected code no version references"
            );
        }
        Ok(collected)
    }
}
