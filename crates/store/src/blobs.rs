//! Code blobs, content-addressed by SHA-256: the [`BlobStore`] interface and a local directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Result, StoreError};

/// Stores immutable blobs by their hex SHA-256. Every backend (local dir, later S3) implements this.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `sha256_hex`; storing the same blob twice is a no-op.
    async fn put(&self, sha256_hex: &str, data: Bytes) -> Result<()>;
    /// The blob stored under `sha256_hex`; [`StoreError::MissingBlob`] if there is none.
    async fn get(&self, sha256_hex: &str) -> Result<Bytes>;
}

/// Blobs as files under a directory: `DIR/sha256/<first two hex>/<hex>`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs kept under `root`, which is created if missing.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))
            .map_err(StoreError::io(format!("creating {}", root.display())))?;
        Ok(LocalBlobs {
            root: root.to_owned(),
        })
    }

    fn path(&self, hex: &str) -> PathBuf {
        let shard = hex.get(..2).unwrap_or("00");
        self.root.join("sha256").join(shard).join(hex)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, sha256_hex: &str, data: Bytes) -> Result<()> {
        let path = self.path(sha256_hex);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(StoreError::io(format!("creating {}", dir.display())))?;
        }
        // Write aside, flush, then rename: a crash never leaves a partial blob under its name.
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{sha256_hex}.{}", uuid::Uuid::new_v4()));
        let write = async {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(&data).await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::Io {
                what: format!("writing blob {}", path.display()),
                source: e,
            });
        }
        Ok(())
    }

    async fn get(&self, sha256_hex: &str) -> Result<Bytes> {
        match tokio::fs::read(self.path(sha256_hex)).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(sha256_hex.to_owned()))
            }
            Err(e) => Err(StoreError::Io {
                what: format!("reading blob {sha256_hex}"),
                source: e,
            }),
        }
    }
}
