//! The blob conformance suite: every case is written once against a [`BlobStore`] and
//! runs on each backend — `local::*` always, `s3::*` on the S3 server that
//! `NIMBUS_TEST_S3_ENDPOINT` names (scripts/test starts one; without it the S3 cases say
//! they are skipped and pass). Each S3 case works under a prefix of its own, so cases run
//! in parallel on one bucket.
//!
//! Variables: `NIMBUS_TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:9000`),
//! `NIMBUS_TEST_S3_BUCKET` (default `nimbus-test`), `NIMBUS_TEST_S3_ACCESS_KEY_ID`,
//! `NIMBUS_TEST_S3_SECRET_ACCESS_KEY`, `NIMBUS_TEST_S3_REGION` (default `us-east-1`).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{BlobInfo, BlobStore, LocalBlobs, S3Blobs, S3Config, S3Credentials};
use crate::{CodeCache, StoreError};

/// A backend under test, and what must live as long as it.
pub(super) struct Backend {
    /// The store the cases use.
    pub(super) blobs: Arc<dyn BlobStore>,
    /// The backend's directory (local), and a scratch directory for code caches.
    pub(super) dir: tempfile::TempDir,
}

/// A fresh local directory.
pub(super) async fn local() -> Backend {
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = LocalBlobs::open(&dir.path().join("blobs")).expect("open");
    Backend {
        blobs: Arc::new(blobs),
        dir,
    }
}

/// The test server's settings from `NIMBUS_TEST_S3_*`, under `prefix`; `None` when no
/// server is given.
pub(super) fn s3_config(prefix: &str) -> Option<S3Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = var("NIMBUS_TEST_S3_ENDPOINT")?;
    let credentials = match (
        var("NIMBUS_TEST_S3_ACCESS_KEY_ID"),
        var("NIMBUS_TEST_S3_SECRET_ACCESS_KEY"),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
            access_key_id,
            secret_access_key,
            session_token: None,
        }),
        _ => None,
    };
    Some(S3Config {
        bucket: var("NIMBUS_TEST_S3_BUCKET").unwrap_or_else(|| "nimbus-test".to_owned()),
        prefix: prefix.to_owned(),
        endpoint: Some(endpoint),
        region: Some(var("NIMBUS_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned())),
        path_style: Some(true),
        credentials,
    })
}

/// A fresh prefix in the test bucket, or `None` (the case is skipped) without a server.
pub(super) async fn s3() -> Option<Backend> {
    let Some(config) = s3_config(&format!("conformance/{}", uuid::Uuid::new_v4())) else {
        eprintln!("skipped: NIMBUS_TEST_S3_ENDPOINT is not set (scripts/test starts a server)");
        return None;
    };
    let blobs = S3Blobs::open(config).await.expect("open the test bucket");
    Some(Backend {
        blobs: Arc::new(blobs),
        dir: tempfile::tempdir().expect("tmp"),
    })
}

/// Runs each case on each backend, as `local::<case>` and `s3::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::local().await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::s3().await {
                        super::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    a_stored_blob_comes_back_whole,
    storing_a_blob_again_changes_nothing,
    a_missing_blob_is_reported_as_missing,
    names_that_are_not_sha256_are_never_stored,
    the_list_tells_every_blob_with_its_size_and_time,
    delete_removes_that_blob_only,
    a_60_mb_blob_round_trips,
    concurrent_puts_of_one_blob_store_it_once,
    a_code_cache_on_a_fresh_node_unpacks_from_the_blob,
);

/// `data`'s hex SHA-256, the blob's name.
fn name_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Stores `data` under its name, and returns the name.
async fn put(blobs: &dyn BlobStore, data: &[u8]) -> String {
    let name = name_of(data);
    blobs
        .put(&name, Bytes::copy_from_slice(data))
        .await
        .expect("put");
    name
}

/// The list, sorted by name.
async fn listed(blobs: &dyn BlobStore) -> Vec<BlobInfo> {
    let mut listed = blobs.list().await.expect("list");
    listed.sort_by(|a, b| a.sha256_hex.cmp(&b.sha256_hex));
    listed
}

async fn a_stored_blob_comes_back_whole(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    let name = put(blobs, b"PK\x03\x04 a zip, say").await;
    assert_eq!(
        blobs.get(&name).await.expect("get"),
        &b"PK\x03\x04 a zip, say"[..]
    );
    let empty = put(blobs, b"").await;
    assert!(blobs.get(&empty).await.expect("get empty").is_empty());
}

async fn storing_a_blob_again_changes_nothing(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    let name = put(blobs, b"once").await;
    let first = listed(blobs).await;
    // S3 times have whole seconds: wait past one, so a rewrite would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(blobs, b"once").await;
    assert_eq!(listed(blobs).await, first, "not written again");
    assert_eq!(first.len(), 1);
    assert_eq!(blobs.get(&name).await.expect("get"), &b"once"[..]);
}

async fn a_missing_blob_is_reported_as_missing(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    let name = name_of(b"never stored");
    let err = blobs.get(&name).await.expect_err("missing");
    assert!(
        matches!(&err, StoreError::MissingBlob(missing) if *missing == name),
        "{err}"
    );
    assert!(!blobs.delete(&name).await.expect("delete"));
    // Gone after a delete, too.
    let stored = put(blobs, b"soon gone").await;
    assert!(blobs.delete(&stored).await.expect("delete"));
    let err = blobs.get(&stored).await.expect_err("deleted");
    assert!(matches!(err, StoreError::MissingBlob(_)), "{err}");
}

async fn names_that_are_not_sha256_are_never_stored(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    let upper = name_of(b"x").to_uppercase();
    for name in ["../../etc/passwd", "", "ab", upper.as_str(), "sha256/ab/cd"] {
        let err = blobs
            .put(name, Bytes::from_static(b"x"))
            .await
            .expect_err(name);
        assert!(matches!(err, StoreError::Io { .. }), "{name}: {err}");
        let err = blobs.get(name).await.expect_err(name);
        assert!(matches!(err, StoreError::MissingBlob(_)), "{name}: {err}");
        assert!(!blobs.delete(name).await.expect(name), "{name}");
    }
    assert!(listed(blobs).await.is_empty());
}

async fn the_list_tells_every_blob_with_its_size_and_time(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    assert!(listed(blobs).await.is_empty(), "a new store is empty");
    // S3 and some file systems keep whole seconds: allow for the rounding.
    let before = SystemTime::now() - Duration::from_secs(2);
    let contents: [&[u8]; 3] = [b"", b"1", &[7; 1000]];
    let mut expected = Vec::new();
    for data in contents {
        expected.push((put(blobs, data).await, data.len() as u64));
    }
    let after = SystemTime::now() + Duration::from_secs(2);
    expected.sort();
    let found = listed(blobs).await;
    let names: Vec<_> = found
        .iter()
        .map(|b| (b.sha256_hex.clone(), b.size))
        .collect();
    assert_eq!(names, expected);
    for blob in &found {
        assert!(
            blob.modified >= before && blob.modified <= after,
            "{blob:?} stored between {before:?} and {after:?}"
        );
    }
}

async fn delete_removes_that_blob_only(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    let kept = put(blobs, b"kept").await;
    let dropped = put(blobs, b"dropped").await;
    assert!(blobs.delete(&dropped).await.expect("delete"));
    assert!(!blobs.delete(&dropped).await.expect("again"));
    let names: Vec<_> = listed(blobs)
        .await
        .into_iter()
        .map(|b| b.sha256_hex)
        .collect();
    assert_eq!(names, std::slice::from_ref(&kept));
    assert_eq!(blobs.get(&kept).await.expect("get"), &b"kept"[..]);
    // A deleted blob can be stored again.
    put(blobs, b"dropped").await;
    assert_eq!(blobs.get(&dropped).await.expect("get"), &b"dropped"[..]);
}

async fn a_60_mb_blob_round_trips(backend: &Backend) {
    let blobs = backend.blobs.as_ref();
    // Not one repeated byte: a part stored twice or out of order would show.
    let data: Vec<u8> = (0..60 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let name = put(blobs, &data).await;
    let back = blobs.get(&name).await.expect("get");
    assert_eq!(back.len(), data.len());
    assert_eq!(name_of(&back), name, "the same bytes");
    let found = listed(blobs).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].size, data.len() as u64);
}

async fn concurrent_puts_of_one_blob_store_it_once(backend: &Backend) {
    let data = Bytes::from(vec![42u8; 3 * 1024 * 1024]);
    let name = name_of(&data);
    let puts: Vec<_> = (0..8)
        .map(|_| {
            let (blobs, name, data) = (backend.blobs.clone(), name.clone(), data.clone());
            tokio::spawn(async move { blobs.put(&name, data).await })
        })
        .collect();
    for put in puts {
        put.await.expect("task").expect("put");
    }
    let blobs = backend.blobs.as_ref();
    assert_eq!(blobs.get(&name).await.expect("get"), data);
    let found = listed(blobs).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].size, data.len() as u64);
}

async fn a_code_cache_on_a_fresh_node_unpacks_from_the_blob(backend: &Backend) {
    let zip = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        w.start_file("app.py", options).expect("start");
        w.write_all(b"def handler(e, c):\n    return 1\n")
            .expect("write");
        w.start_file("lib/data.txt", options).expect("start");
        w.write_all(b"data").expect("write");
        Bytes::from(w.finish().expect("finish").into_inner())
    };
    // The node that deploys it.
    let deploying =
        Arc::new(CodeCache::open(&backend.dir.path().join("a"), backend.blobs.clone()).expect("a"));
    let installed = deploying.install(zip.clone()).await.expect("install");
    assert_eq!(installed.sha256_hex, name_of(&zip));
    drop(installed.pin);
    assert_eq!(
        backend
            .blobs
            .get(&installed.sha256_hex)
            .await
            .expect("blob"),
        zip
    );
    // Another node, with an empty cache of its own, sharing the blobs.
    let fresh =
        Arc::new(CodeCache::open(&backend.dir.path().join("b"), backend.blobs.clone()).expect("b"));
    let dir = fresh.path(&installed.sha256_hex).await.expect("path");
    assert!(dir.starts_with(backend.dir.path().join("b")));
    assert_eq!(
        std::fs::read_to_string(dir.join("lib/data.txt")).expect("unpacked"),
        "data"
    );
    assert!(dir.join("app.py").is_file());
    // A package no node stored is a missing blob there too.
    let err = fresh
        .path(&name_of(b"no such package"))
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::MissingBlob(_)), "{err}");
}
