//! Where Nimbus keeps things: function metadata (SQLite, or PostgreSQL shared by several
//! nodes), code blobs (a local directory, or an S3 bucket a cluster shares), and code
//! unpacked once per node.

pub mod blobs;
pub mod code;
pub mod meta;
pub mod nodes;
pub mod remote;
pub mod unpack;

pub use blobs::{BlobInfo, BlobStore, LocalBlobs, S3Blobs, S3Config, S3Credentials};
pub use code::{CodeCache, CodePin, Collected};
pub use meta::{open_postgres, open_sqlite, MetadataStore, PostgresMetadata, SqliteMetadata};
pub use nodes::{ChangeFeed, NodeBeat, NodeRecord, NodeStore, CHANGES_KEPT};
pub use remote::{RemoteError, RemoteProblem};
pub use unpack::UnpackError;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The database file is not a database, or fails its integrity check.
    #[error("the database is damaged: {0}")]
    Damaged(String),
    /// The record exists already.
    #[error("already exists")]
    Conflict,
    /// The record changed since it was read.
    #[error("changed concurrently")]
    Stale,
    /// A blob that metadata refers to is missing.
    #[error("blob {0} is missing")]
    MissingBlob(String),
    /// A remote store (an S3 bucket) failed; the message says what to check.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A code package could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

impl StoreError {
    /// Whether the failure is the server's disk (or quota) being full: the server's
    /// fault, which its operator can fix, not the request's.
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let full = |e: &std::io::Error| matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT));
        match self {
            StoreError::Io { source, .. } => full(source),
            StoreError::Unpack(UnpackError::Io(source)) => full(source),
            // SQLITE_FULL: "database or disk is full"; PostgreSQL's disk_full (53100).
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("13" | "53100"))
            }
            StoreError::Database(sqlx::Error::Io(source)) => full(source),
            _ => false,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let what = what.into();
        move |source| StoreError::Io { what, source }
    }
}

/// A `Result` with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
