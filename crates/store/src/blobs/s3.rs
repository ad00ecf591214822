//! Code blobs in an S3 bucket (AWS or any S3-compatible server), so every node of a
//! cluster reads the packages any node stored: the shared backend of [`BlobStore`].
//!
//! Objects are named as the local directory names files, under an optional prefix:
//! `PREFIX/sha256/<first two hex>/<hex>`. The S3 client is `object_store`'s; none of its
//! types leave this module (its errors become [`RemoteError`]s that say what to check).

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::{is_sha256_hex, not_a_name, shard, BlobInfo, BlobStore};
use crate::remote::{RemoteError, RemoteProblem};
use crate::{Result, StoreError};

/// Blobs at least this large go up in parts, each its own request (and retry), so no
/// single request has to carry a whole 70 MB package within the request timeout.
const MULTIPART_FROM: usize = 32 * 1024 * 1024;

/// The size of each part of a multipart upload (S3 wants at least 5 MiB but the last).
const PART_SIZE: usize = 16 * 1024 * 1024;

/// How long one request may take, body included: a 32 MB part or a 70 MB download
/// needs well under 1 MB/s for this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting may take: an unreachable endpoint is told within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the blobs are and how to reach them. Fields left `None` are taken from the
/// usual AWS settings when [`S3Config::with_env`] is applied; what is still `None` then
/// has the defaults said on each field.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// The key prefix the blobs live under, without leading or trailing `/` (empty: the
    /// bucket's root). Several clusters can share a bucket under different prefixes.
    pub prefix: String,
    /// The service's URL, e.g. `http://127.0.0.1:9000` for an S3-compatible server
    /// (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`). `None`: AWS's own endpoint for
    /// the region. A plain `http://` endpoint is allowed only when set here.
    pub endpoint: Option<String>,
    /// The region requests are signed for (`AWS_REGION`, else `AWS_DEFAULT_REGION`);
    /// `None`: `us-east-1`.
    pub region: Option<String>,
    /// Whether the bucket is addressed in the path (`ENDPOINT/BUCKET/KEY`) rather than in
    /// the host name (`BUCKET.ENDPOINT/KEY`). `None`: path style with an explicit
    /// endpoint (what S3-compatible servers expect), virtual-hosted style on AWS.
    pub path_style: Option<bool>,
    /// Static credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`). `None`: the rest of AWS's chain, as the AWS environment
    /// provides it (web identity, container credentials, instance metadata).
    pub credentials: Option<S3Credentials>,
}

/// An access key and its secret, and a session token with temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// Its secret (never printed).
    pub secret_access_key: String,
    /// The session token of temporary credentials (never printed).
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl S3Config {
    /// Blobs at the root of `bucket`, everything else unset.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            ..S3Config::default()
        }
    }

    /// The bucket and prefix of an `s3://BUCKET[/PREFIX]` URL, everything else unset.
    pub fn from_url(url: &str) -> Result<Self> {
        let misconfigured = |why: &str| {
            StoreError::Remote(RemoteError {
                what: format!("reading the blob store URL {url:?}"),
                problem: RemoteProblem::Misconfigured,
                detail: why.to_owned(),
            })
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| misconfigured("an S3 blob store URL is s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(misconfigured("the URL names no bucket"));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            ..S3Config::default()
        })
    }

    /// Fills the fields still unset from the process's AWS environment variables (see
    /// each field). Fields already set win.
    pub fn with_env(self) -> Self {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`S3Config::with_env`] with the variables read through `var` (tests give their own).
    pub fn with_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        if self.endpoint.is_none() {
            self.endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        }
        if self.region.is_none() {
            self.region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        }
        if self.credentials.is_none() {
            if let (Some(access_key_id), Some(secret_access_key)) =
                (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
            {
                self.credentials = Some(S3Credentials {
                    access_key_id,
                    secret_access_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                });
            }
        }
        self
    }

    /// The prefix as object keys use it: no empty segments.
    fn clean_prefix(&self) -> String {
        self.prefix
            .split('/')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Where this configuration points, for messages (no credentials).
    fn describe(&self) -> String {
        let endpoint = self.endpoint.as_deref().unwrap_or("AWS");
        match self.clean_prefix().as_str() {
            "" => format!("s3://{} at {endpoint}", self.bucket),
            prefix => format!("s3://{}/{prefix} at {endpoint}", self.bucket),
        }
    }
}

/// Blobs as objects in an S3 bucket: `PREFIX/sha256/<first two hex>/<hex>`.
pub struct S3Blobs {
    store: AmazonS3,
    /// The key prefix, cleaned (see [`S3Config::prefix`]).
    prefix: String,
    /// Where the blobs are, for messages.
    describe: String,
}

impl fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("S3Blobs").field(&self.describe).finish()
    }
}

impl S3Blobs {
    /// Blobs in the bucket `config` names, once a listing has shown that the bucket is
    /// there and these credentials may read it. A failure says what to check: the
    /// endpoint, the credentials, the bucket or the permissions.
    pub async fn open(config: S3Config) -> Result<Self> {
        let describe = config.describe();
        let misconfigured = |detail: String| {
            StoreError::Remote(RemoteError {
                what: format!("opening blob store {describe}"),
                problem: RemoteProblem::Misconfigured,
                detail,
            })
        };
        if config.bucket.is_empty() {
            return Err(misconfigured("no bucket given".to_owned()));
        }
        let store = build(&config).map_err(|e| misconfigured(chain(&e)))?;
        let blobs = S3Blobs {
            store,
            prefix: config.clean_prefix(),
            describe,
        };
        // One listing: reaches the endpoint, checks the credentials, the bucket and the
        // right to list it.
        let probe = blobs.key_path("sha256");
        let mut listing = blobs.store.list(Some(&probe));
        if let Some(Err(e)) = listing.next().await {
            return Err(remote(format!("opening blob store {}", blobs.describe), e));
        }
        Ok(blobs)
    }

    /// The object path of `relative` under the prefix.
    fn key_path(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// The object path of blob `hex`.
    fn blob_path(&self, hex: &str) -> ObjectPath {
        self.key_path(&format!("sha256/{}/{hex}", shard(hex)))
    }

    /// Whether blob `hex` is stored.
    async fn exists(&self, hex: &str, path: &ObjectPath) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote(format!("looking for blob {hex}"), e)),
        }
    }

    /// Uploads `data` to `path` in parts, aborting the upload if any part fails.
    async fn put_in_parts(&self, path: &ObjectPath, data: Bytes) -> object_store::Result<()> {
        let mut upload = self.store.put_multipart(path).await?;
        let parts: Vec<_> = (0..data.len())
            .step_by(PART_SIZE)
            .map(|start| {
                let part = data.slice(start..data.len().min(start + PART_SIZE));
                upload.put_part(PutPayload::from(part))
            })
            .collect();
        let uploaded = match futures_util::future::try_join_all(parts).await {
            Ok(_) => upload.complete().await.map(drop),
            Err(e) => Err(e),
        };
        if uploaded.is_err() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(path = %path, error = %chain(&e), "could not abort a failed multipart upload");
            }
        }
        uploaded
    }
}

/// The S3 client for `config`.
fn build(config: &S3Config) -> object_store::Result<AmazonS3> {
    // Without static keys, AWS's usual environment provides the credentials (web
    // identity, container, instance metadata), as object_store reads it.
    let mut builder = match &config.credentials {
        Some(_) => AmazonS3Builder::new(),
        None => AmazonS3Builder::from_env(),
    };
    builder = builder
        .with_bucket_name(&config.bucket)
        .with_region(config.region.as_deref().unwrap_or("us-east-1"))
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
        });
    let mut options = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
        options = options.with_allow_http(endpoint.starts_with("http://"));
    }
    let path_style = config.path_style.unwrap_or(config.endpoint.is_some());
    builder = builder.with_virtual_hosted_style_request(!path_style);
    if let Some(credentials) = &config.credentials {
        builder = builder
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key);
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token);
        }
    }
    builder.with_client_options(options).build()
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, sha256_hex: &str, data: Bytes) -> Result<()> {
        if !is_sha256_hex(sha256_hex) {
            return Err(not_a_name(sha256_hex));
        }
        let path = self.blob_path(sha256_hex);
        // Content-addressed: what is there is this blob already. Two nodes storing it at
        // once both write the same bytes, and each PUT replaces the object whole.
        if self.exists(sha256_hex, &path).await? {
            return Ok(());
        }
        let stored = if data.len() >= MULTIPART_FROM {
            self.put_in_parts(&path, data).await
        } else {
            self.store
                .put(&path, PutPayload::from(data))
                .await
                .map(drop)
        };
        stored.map_err(|e| remote(format!("storing blob {sha256_hex}"), e))
    }

    async fn get(&self, sha256_hex: &str) -> Result<Bytes> {
        if !is_sha256_hex(sha256_hex) {
            return Err(StoreError::MissingBlob(sha256_hex.to_owned()));
        }
        let what = || format!("reading blob {sha256_hex}");
        let found = match self.store.get(&self.blob_path(sha256_hex)).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::MissingBlob(sha256_hex.to_owned()))
            }
            Err(e) => return Err(remote(what(), e)),
        };
        found.bytes().await.map_err(|e| remote(what(), e))
    }

    async fn list(&self) -> Result<Vec<BlobInfo>> {
        let mut listing = self.store.list(Some(&self.key_path("sha256")));
        let mut found = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object.map_err(|e| remote(format!("listing {}", self.describe), e))?;
            let mut parts = object.location.parts();
            let (Some(name), Some(dir)) = (parts.next_back(), parts.next_back()) else {
                continue;
            };
            // Only blobs, in their shard: not what else someone left under the prefix.
            let name = name.as_ref();
            if !is_sha256_hex(name) || dir.as_ref() != shard(name) {
                continue;
            }
            found.push(BlobInfo {
                sha256_hex: name.to_owned(),
                size: object.size,
                modified: SystemTime::from(object.last_modified),
            });
        }
        Ok(found)
    }

    async fn delete(&self, sha256_hex: &str) -> Result<bool> {
        if !is_sha256_hex(sha256_hex) {
            return Ok(false);
        }
        let path = self.blob_path(sha256_hex);
        // S3 deletes answer the same whether or not there was an object: ask first.
        if !self.exists(sha256_hex, &path).await? {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(remote(format!("removing blob {sha256_hex}"), e)),
        }
    }
}

/// An S3 failure as a [`StoreError`]: what was being done, and what kind of problem it
/// is, from S3's error code where the answer has one.
fn remote(what: String, e: object_store::Error) -> StoreError {
    let detail = chain(&e);
    let problem = match s3_code(&detail) {
        Some("NoSuchBucket") => RemoteProblem::NoSuchBucket,
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AuthorizationHeaderMalformed"
            | "InvalidSecurity"
            // An access key no account has (s3s answers this where AWS says
            // InvalidAccessKeyId), or an account without S3.
            | "NotSignedUp",
        ) => RemoteProblem::BadCredentials,
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => {
            RemoteProblem::AccessDenied
        }
        _ => match &e {
            object_store::Error::Unauthenticated { .. } => RemoteProblem::BadCredentials,
            object_store::Error::PermissionDenied { .. } => RemoteProblem::AccessDenied,
            object_store::Error::InvalidPath { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
            | object_store::Error::NotSupported { .. } => RemoteProblem::Misconfigured,
            _ if unreachable(&e) => RemoteProblem::Unreachable,
            _ => RemoteProblem::Failed,
        },
    };
    StoreError::Remote(RemoteError {
        what,
        problem,
        detail,
    })
}

/// Whether the failure was not getting a connection (or an answer) at all.
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout);
        }
        next = e.source();
    }
    false
}

/// S3's error code in an error answer's XML body (`<Code>NoSuchBucket</Code>`).
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// An error and its causes, each told once, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let told = cause.to_string();
        if !text.contains(&told) {
            text.push_str(": ");
            text.push_str(&told);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_store_url_names_the_bucket_and_prefix() {
        let config = S3Config::from_url("s3://code/nimbus/prod/").expect("url");
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("code", "nimbus/prod")
        );
        let config = S3Config::from_url("s3://code").expect("url");
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("code", "")
        );
        for bad in ["file:///x", "s3://", "s3:///prefix", "code"] {
            let err = S3Config::from_url(bad).expect_err(bad);
            assert!(
                matches!(&err, StoreError::Remote(e) if e.problem == RemoteProblem::Misconfigured),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_aws_environment_fills_only_what_is_unset() {
        let env = |name: &str| {
            Some(
                match name {
                    "AWS_ENDPOINT_URL" => "http://generic:9000",
                    "AWS_ENDPOINT_URL_S3" => "http://s3-only:9000",
                    "AWS_DEFAULT_REGION" => "eu-west-1",
                    "AWS_ACCESS_KEY_ID" => "AKID",
                    "AWS_SECRET_ACCESS_KEY" => "hunter2",
                    "AWS_SESSION_TOKEN" => "",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let config = S3Config::new("b").with_env_from(env);
        assert_eq!(config.endpoint.as_deref(), Some("http://s3-only:9000"));
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        let credentials = config.credentials.clone().expect("keys");
        assert_eq!(credentials.access_key_id, "AKID");
        assert_eq!(credentials.session_token, None, "empty means unset");
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");

        let explicit = S3Config {
            region: Some("us-west-2".into()),
            endpoint: Some("http://mine:1".into()),
            ..S3Config::new("b")
        }
        .with_env_from(env);
        assert_eq!(explicit.region.as_deref(), Some("us-west-2"));
        assert_eq!(explicit.endpoint.as_deref(), Some("http://mine:1"));
        // Only a key without its secret: no static credentials.
        let half = S3Config::new("b")
            .with_env_from(|name| (name == "AWS_ACCESS_KEY_ID").then(|| "AKID".to_owned()));
        assert_eq!(half.credentials, None);
    }

    #[test]
    fn s3_error_codes_are_read_from_the_answer() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(s3_code(body), Some("NoSuchBucket"));
        assert_eq!(s3_code("no xml"), None);
    }

    /// The problem `S3Blobs::open` reports for `config`.
    async fn open_problem(config: S3Config) -> RemoteProblem {
        match S3Blobs::open(config).await {
            Err(StoreError::Remote(e)) => {
                eprintln!("{e}");
                e.problem
            }
            Err(other) => panic!("not a remote error: {other}"),
            Ok(blobs) => panic!("opened {blobs:?}"),
        }
    }

    #[tokio::test]
    async fn an_endpoint_nobody_listens_on_is_reported_unreachable_within_seconds() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let config = S3Config {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            credentials: Some(S3Credentials {
                access_key_id: "k".into(),
                secret_access_key: "s".into(),
                session_token: None,
            }),
            ..S3Config::new("b")
        };
        let started = std::time::Instant::now();
        assert_eq!(open_problem(config).await, RemoteProblem::Unreachable);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            open_problem(S3Config::new("")).await,
            RemoteProblem::Misconfigured
        );
    }

    /// The test server's settings, or `None` (skipped) without one.
    fn test_server() -> Option<S3Config> {
        super::super::conformance::s3_config(&format!("s3-tests/{}", uuid::Uuid::new_v4()))
    }

    #[tokio::test]
    async fn wrong_credentials_and_a_missing_bucket_are_told_apart() {
        let Some(config) = test_server() else {
            eprintln!("skipped: NIMBUS_TEST_S3_ENDPOINT is not set");
            return;
        };
        let mut wrong_secret = config.clone();
        if let Some(credentials) = &mut wrong_secret.credentials {
            credentials.secret_access_key.push_str("-wrong");
        }
        assert_eq!(
            open_problem(wrong_secret).await,
            RemoteProblem::BadCredentials
        );
        let mut unknown_key = config.clone();
        if let Some(credentials) = &mut unknown_key.credentials {
            credentials.access_key_id.push_str("-unknown");
        }
        assert_eq!(
            open_problem(unknown_key).await,
            RemoteProblem::BadCredentials
        );
        let missing_bucket = S3Config {
            bucket: format!("nimbus-missing-{}", uuid::Uuid::new_v4().simple()),
            ..config
        };
        assert_eq!(
            open_problem(missing_bucket).await,
            RemoteProblem::NoSuchBucket
        );
    }

    #[tokio::test]
    async fn prefixes_keep_clusters_sharing_a_bucket_apart() {
        let (Some(a), Some(b)) = (test_server(), test_server()) else {
            eprintln!("skipped: NIMBUS_TEST_S3_ENDPOINT is not set");
            return;
        };
        let a = S3Blobs::open(a).await.expect("a");
        let b = S3Blobs::open(b).await.expect("b");
        let name = "ab".repeat(32);
        a.put(&name, Bytes::from_static(b"a's")).await.expect("put");
        assert_eq!(a.list().await.expect("list").len(), 1);
        assert!(b.list().await.expect("list").is_empty());
        assert!(matches!(
            b.get(&name).await,
            Err(StoreError::MissingBlob(_))
        ));
        assert!(!b.delete(&name).await.expect("delete"));
        assert_eq!(a.get(&name).await.expect("still there"), &b"a's"[..]);
    }
}
