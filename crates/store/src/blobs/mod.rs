//! Code blobs, content-addressed by SHA-256: the [`BlobStore`] interface and its backends,
//! a local directory ([`LocalBlobs`], one node) and an S3 bucket ([`S3Blobs`], shared by a
//! cluster's nodes). Both lay blobs out alike, `sha256/<first two hex>/<hex>`, and pass
//! one conformance suite (`conformance.rs`).

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Result, StoreError};

mod local;
mod s3;

#[cfg(test)]
mod conformance;

pub use local::LocalBlobs;
pub use s3::{S3Blobs, S3Config, S3Credentials};

/// Stores immutable blobs by their hex SHA-256. Every backend (local dir, S3)
/// implements this, with the same results and the same errors.
///
/// Names that are not a lowercase hex SHA-256 are never stored: `put` refuses them, `get`
/// answers [`StoreError::MissingBlob`] and `delete` `false`.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `sha256_hex`; storing the same blob twice is a no-op.
    async fn put(&self, sha256_hex: &str, data: Bytes) -> Result<()>;
    /// The blob stored under `sha256_hex`; [`StoreError::MissingBlob`] if there is none.
    async fn get(&self, sha256_hex: &str) -> Result<Bytes>;
    /// Every stored blob (for the collector).
    async fn list(&self) -> Result<Vec<BlobInfo>>;
    /// Removes the blob stored under `sha256_hex`; whether there was one.
    async fn delete(&self, sha256_hex: &str) -> Result<bool>;
}

/// One stored blob, as [`BlobStore::list`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its hex SHA-256.
    pub sha256_hex: String,
    /// Its size, bytes.
    pub size: u64,
    /// When it was stored (for the collector's grace period).
    pub modified: SystemTime,
}

/// Whether `name` is a hex SHA-256 as blobs and code directories are named.
pub(crate) fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The shard directory of blob `hex`: its first two hex digits.
pub(crate) fn shard(hex: &str) -> &str {
    hex.get(..2).unwrap_or("00")
}

/// The error `put` answers for a name that is not a hex SHA-256 (a caller's bug).
pub(crate) fn not_a_name(name: &str) -> StoreError {
    StoreError::Io {
        what: format!("storing blob {name:?}"),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a blob's name must be its lowercase hex SHA-256",
        ),
    }
}
