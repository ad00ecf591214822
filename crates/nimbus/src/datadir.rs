//! The data directory's integrity at start: one server at a time on it, and never a fresh
//! catalogue started over code that a lost one referred to.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context};

/// The exclusive hold of one server on its data directory, released when dropped (or when
/// the process dies, however it dies: the kernel drops the lock with the file).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory `data` for this process, or says which server holds it.
pub fn lock(data: &Path) -> anyhow::Result<DataDirLock> {
    let path = data.join("nimbus.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("another nimbus server ({holder})")
            };
            bail!(
                "the data dir {} is in use by {holder}: stop that server first, or give this one another --data-dir",
                data.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "pid {}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(DataDirLock { _file: file })
}

/// This node's id: made at its first start and kept in `DATA/node-id`, so a node that
/// restarts is the same node to the cluster (it finds its own async-event leases again).
pub fn node_id(data: &Path) -> anyhow::Result<String> {
    let path = data.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Refuses to start when the metadata database `db` is missing or empty while code
/// packages are stored in `blobs`: the functions they belong to would silently be gone.
pub fn check_catalogue(db: &Path, blobs: &Path) -> anyhow::Result<()> {
    let state = match std::fs::metadata(db) {
        Ok(meta) if meta.len() > 0 => return Ok(()),
        Ok(_) => "empty",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        Err(e) => return Err(e).with_context(|| format!("reading {}", db.display())),
    };
    let packages = stored_blobs(&blobs.join("sha256"));
    if packages > 0 {
        bail!(
            "{} is {state}, but {} holds {packages} code package(s): the function catalogue was lost, and starting would serve an empty one over them. Restore nimbus.db (with its nimbus.db-wal file) from a backup, or move the data dir aside to start afresh",
            db.display(),
            blobs.display()
        );
    }
    Ok(())
}

/// A store's failure to open, with what to do about it when the database is damaged.
pub fn explain_damage(error: nimbus_store::StoreError, db: &Path) -> anyhow::Error {
    match error {
        nimbus_store::StoreError::Damaged(why) => anyhow::anyhow!(
            "{} is damaged or not a Nimbus database ({why}): restore it from a backup, or move it (and the data dir, for nimbus.db) aside to start afresh; Nimbus does not start over it",
            db.display()
        ),
        other => other.into(),
    }
}

/// How many blobs are stored under `DIR/<shard>/<hex>`.
fn stored_blobs(dir: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(dir) else {
        return 0;
    };
    shards
        .flatten()
        .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
        .map(|blobs| blobs.flatten().count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_data_dir_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("tmp");
        let held = lock(dir.path()).expect("first");
        let err = lock(dir.path()).expect_err("second").to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        lock(dir.path()).expect("free again");
    }

    #[test]
    fn an_empty_catalogue_over_stored_code_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let (db, blobs) = (dir.path().join("nimbus.db"), dir.path().join("blobs"));
        let check = || check_catalogue(&db, &blobs);
        check().expect("a new data dir");
        let shard = dir.path().join("blobs/sha256/ab");
        std::fs::create_dir_all(&shard).expect("dir");
        std::fs::write(shard.join("abcd"), b"zip").expect("blob");
        let err = check().expect_err("missing db");
        assert!(err.to_string().contains("is missing"), "{err}");
        std::fs::write(dir.path().join("nimbus.db"), b"").expect("db");
        let err = check().expect_err("empty db");
        assert!(err.to_string().contains("1 code package"), "{err}");
        std::fs::write(dir.path().join("nimbus.db"), b"SQLite format 3\0").expect("db");
        check().expect("a database is there");
    }
}
