//! Opening the metadata and blob stores the configuration names: the one place that turns a
//! [`MetadataBackend`] or [`BlobBackend`] into a store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use nimbus_config::{BlobBackend, MetadataBackend, ServerConfig};
use nimbus_store::{
    BlobStore, ChangeFeed, LocalBlobs, MetadataStore, NodeStore, PostgresMetadata, S3Blobs,
    S3Config, S3Credentials, SqliteMetadata,
};

/// The stores, open.
pub struct Stores {
    /// Functions, versions, aliases, the event queue and schedules.
    pub meta: Arc<dyn MetadataStore>,
    /// Code packages, by SHA-256.
    pub blobs: Arc<dyn BlobStore>,
    /// The cluster's nodes.
    pub nodes: Arc<dyn NodeStore>,
    /// Which functions changed, for every node's cache.
    pub feed: Arc<dyn ChangeFeed>,
}

/// Refuses, before anything is written, backends this build cannot open.
pub fn check_available(config: &ServerConfig) -> anyhow::Result<()> {
    config
        .blob_backend(|name| std::env::var(name).ok())
        .context("configuring the blob store")?;
    Ok(())
}

/// The backends `config` names (`data` is the data dir, absolute), refusing those this
/// build cannot open, and a database missing or empty beside stored code, before anything
/// is written.
pub fn backends(
    config: &ServerConfig,
    data: &Path,
) -> anyhow::Result<(MetadataBackend, BlobBackend)> {
    let mut config = config.clone();
    // The defaults live in the data dir, which is absolute by now; relative paths given
    // explicitly are taken from the working directory.
    config.data_dir = data.to_owned();
    let metadata = match config.metadata_backend() {
        MetadataBackend::Sqlite { path } => MetadataBackend::Sqlite {
            path: absolute(&path)?,
        },
        postgres @ MetadataBackend::Postgres { .. } => postgres,
    };
    let blobs = match config
        .blob_backend(|name| std::env::var(name).ok())
        .context("configuring the blob store")?
    {
        BlobBackend::Local { dir } => BlobBackend::Local {
            dir: absolute(&dir)?,
        },
        s3 @ BlobBackend::S3 { .. } => s3,
    };
    if let (MetadataBackend::Sqlite { path }, BlobBackend::Local { dir }) = (&metadata, &blobs) {
        crate::datadir::check_catalogue(path, dir)?;
    }
    Ok((metadata, blobs))
}

/// Opens the stores [`backends`] gave, saying how to recover a damaged database.
pub async fn open(metadata: &MetadataBackend, blobs: &BlobBackend) -> anyhow::Result<Stores> {
    let blobs: Arc<dyn BlobStore> = match blobs {
        BlobBackend::Local { dir } => Arc::new(LocalBlobs::open(dir)?),
        s3 @ BlobBackend::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            credentials,
        } => Arc::new(
            S3Blobs::open(S3Config {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: Some(region.clone()),
                path_style: Some(*path_style),
                credentials: credentials.as_ref().map(|c| S3Credentials {
                    access_key_id: c.access_key_id.clone(),
                    secret_access_key: c.secret_access_key.clone(),
                    session_token: c.session_token.clone(),
                }),
            })
            .await
            .with_context(|| format!("opening the blob store {s3}"))?,
        ),
    };
    match metadata {
        MetadataBackend::Sqlite { path: db } => {
            let sqlite = Arc::new(
                SqliteMetadata::open(db)
                    .await
                    .map_err(|e| crate::datadir::explain_damage(e, db))
                    .with_context(|| format!("opening metadata in {}", db.display()))?,
            );
            Ok(Stores {
                meta: sqlite.clone(),
                blobs,
                nodes: sqlite.clone(),
                feed: sqlite,
            })
        }
        postgres @ MetadataBackend::Postgres { url } => {
            let pg = Arc::new(PostgresMetadata::open(url).await.with_context(|| {
                format!(
                    "opening metadata in {} (is PostgreSQL running there, and may this user create tables?)",
                    postgres.redacted()
                )
            })?);
            Ok(Stores {
                meta: pg.clone(),
                blobs,
                nodes: pg.clone(),
                feed: pg,
            })
        }
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
