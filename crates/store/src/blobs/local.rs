//! Code blobs as files in a local directory: the single-node backend of [`BlobStore`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{is_sha256_hex, not_a_name, shard, BlobInfo, BlobStore};
use crate::{Result, StoreError};

/// Blobs as files under a directory: `DIR/sha256/<first two hex>/<hex>`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs kept under `root`, which is created if missing; writes a crash interrupted
    /// are removed.
    pub fn open(root: &Path) -> Result<Self> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(StoreError::io(format!("clearing {}", tmp.display())))?;
        }
        std::fs::create_dir_all(&tmp)
            .map_err(StoreError::io(format!("creating {}", root.display())))?;
        Ok(LocalBlobs {
            root: root.to_owned(),
        })
    }

    /// Where blob `hex` is kept. Names that are not hex SHA-256s never reach the disk.
    fn path(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(shard(hex)).join(hex)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, sha256_hex: &str, data: Bytes) -> Result<()> {
        if !is_sha256_hex(sha256_hex) {
            return Err(not_a_name(sha256_hex));
        }
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
        if !is_sha256_hex(sha256_hex) {
            return Err(StoreError::MissingBlob(sha256_hex.to_owned()));
        }
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

    async fn list(&self) -> Result<Vec<BlobInfo>> {
        let root = self.root.join("sha256");
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let shards = match std::fs::read_dir(&root) {
                Ok(shards) => shards,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
                Err(e) => return Err(StoreError::io(format!("listing {}", root.display()))(e)),
            };
            for shard in shards {
                let shard = shard.map_err(StoreError::io(format!("listing {}", root.display())))?;
                let dir = shard.path();
                if !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                for blob in std::fs::read_dir(&dir)
                    .map_err(StoreError::io(format!("listing {}", dir.display())))?
                {
                    let blob =
                        blob.map_err(StoreError::io(format!("listing {}", dir.display())))?;
                    // Only blobs: not what else someone left there.
                    let Some(name) = blob
                        .file_name()
                        .to_str()
                        .filter(|name| is_sha256_hex(name))
                        .map(str::to_owned)
                    else {
                        continue;
                    };
                    // Gone meanwhile: not listed.
                    let Ok((meta, modified)) = blob
                        .metadata()
                        .and_then(|meta| meta.modified().map(|modified| (meta, modified)))
                    else {
                        continue;
                    };
                    found.push(BlobInfo {
                        sha256_hex: name,
                        size: meta.len(),
                        modified,
                    });
                }
            }
            Ok(found)
        })
        .await
        .map_err(|e| StoreError::Io {
            what: "listing blobs".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    async fn delete(&self, sha256_hex: &str) -> Result<bool> {
        if !is_sha256_hex(sha256_hex) {
            return Ok(false);
        }
        let path = self.path(sha256_hex);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::Io {
                what: format!("removing blob {}", path.display()),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_listed_and_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = LocalBlobs::open(dir.path()).expect("open");
        let sha = "ab".repeat(32);
        blobs
            .put(&sha, Bytes::from_static(b"zip"))
            .await
            .expect("put");
        let listed = blobs.list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sha256_hex, sha);
        assert_eq!(listed[0].size, 3);
        assert!(blobs.delete(&sha).await.expect("delete"));
        assert!(!blobs.delete(&sha).await.expect("again"));
        assert!(!blobs.delete("../../etc").await.expect("not a name"));
        assert!(blobs.list().await.expect("list").is_empty());
    }
}
