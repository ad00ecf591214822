//! Code packages on this node: checked and unpacked once per SHA-256 into a read-only
//! directory, with the zip kept in the [`BlobStore`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::unpack::{self, Unpacked};
use crate::{BlobStore, Result, StoreError};

/// A code package that is stored and unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Hex SHA-256 of the zip.
    pub sha256_hex: String,
    /// Base64 SHA-256 of the zip, as Lambda reports `CodeSha256`.
    pub sha256_base64: String,
    /// Size of the zip, bytes.
    pub size: u64,
    /// Size of the unpacked files, bytes.
    pub unzipped_size: u64,
}

/// Unpacked code packages under `DIR/<hex sha256>/`, one directory per package.
pub struct CodeCache {
    root: PathBuf,
    blobs: Arc<dyn BlobStore>,
    /// One lock per package being unpacked, so each is unpacked once.
    unpacking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Packages whose Python sources are being compiled.
    compiling: Mutex<std::collections::HashSet<String>>,
}

/// How long compiling one package's Python sources may take.
const COMPILE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

impl CodeCache {
    /// A cache under `root` backed by `blobs`; leftovers of interrupted unpacks are removed.
    pub fn open(root: &Path, blobs: Arc<dyn BlobStore>) -> Result<Self> {
        let staging = root.join(".staging");
        if staging.exists() {
            remove_tree(&staging)?;
        }
        std::fs::create_dir_all(&staging)
            .map_err(StoreError::io(format!("creating {}", staging.display())))?;
        Ok(CodeCache {
            root: root.to_owned(),
            blobs,
            unpacking: Mutex::new(HashMap::new()),
            compiling: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Checks and stores a new code zip: unpacks it (refusing unsafe archives, storing
    /// nothing then), keeps the zip as a blob, and publishes the unpacked directory.
    pub async fn install(&self, zip: Bytes) -> Result<Installed> {
        let digest = Sha256::digest(&zip);
        let sha256_hex = hex::encode(digest);
        use base64::Engine as _;
        let sha256_base64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let size = zip.len() as u64;
        let lock = self.lock_for(&sha256_hex);
        let _guard = lock.lock().await;
        let dir = self.dir(&sha256_hex);
        let unzipped_size = if dir.exists() {
            dir_size(&dir)?
        } else {
            let unpacked = self.unpack_to_staging(zip.clone(), &sha256_hex).await?;
            self.blobs.put(&sha256_hex, zip).await?;
            self.publish(&sha256_hex).await?;
            unpacked.bytes
        };
        Ok(Installed {
            sha256_hex,
            sha256_base64,
            size,
            unzipped_size,
        })
    }

    /// The read-only directory holding package `sha256_hex`, unpacking it from its blob
    /// if this node has not yet.
    pub async fn path(&self, sha256_hex: &str) -> Result<PathBuf> {
        let dir = self.dir(sha256_hex);
        if dir.exists() {
            return Ok(dir);
        }
        let lock = self.lock_for(sha256_hex);
        let _guard = lock.lock().await;
        if !dir.exists() {
            let zip = self.blobs.get(sha256_hex).await?;
            self.unpack_to_staging(zip, sha256_hex).await?;
            self.publish(sha256_hex).await?;
        }
        Ok(dir)
    }

    /// Compiles the Python sources of the unpacked package `sha256_hex` into `__pycache__`
    /// with `python`, once per node, in the background. Instances see their code read-only
    /// and so compile every module they import at every cold start (seconds for a vendored
    /// SDK); with the bytecode beside the sources they load it instead. The package stays
    /// sealed to instances; what fails to compile is simply compiled at import, as before.
    pub fn precompile_python(self: &Arc<Self>, sha256_hex: &str, python: &Path) {
        let done = self.root.join(format!("{sha256_hex}.compiled"));
        let dir = self.dir(sha256_hex);
        if done.exists() || !dir.is_dir() {
            return;
        }
        {
            let mut compiling = match self.compiling.lock() {
                Ok(set) => set,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !compiling.insert(sha256_hex.to_owned()) {
                return;
            }
        }
        let (cache, sha, python) = (self.clone(), sha256_hex.to_owned(), python.to_owned());
        tokio::spawn(async move {
            match compile_python(&python, &dir).await {
                Ok(()) => {
                    let _ = std::fs::write(&done, "");
                }
                Err(e) => {
                    tracing::warn!(package = %sha, error = %e, "could not precompile Python sources")
                }
            }
            if let Ok(mut compiling) = cache.compiling.lock() {
                compiling.remove(&sha);
            }
        });
    }

    fn dir(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(sha256_hex)
    }

    fn staging(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(".staging").join(sha256_hex)
    }

    fn lock_for(&self, sha256_hex: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = match self.unpacking.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(sha256_hex.to_owned()).or_default().clone()
    }

    async fn unpack_to_staging(&self, zip: Bytes, sha256_hex: &str) -> Result<Unpacked> {
        let staging = self.staging(sha256_hex);
        off_thread("unpacking code", move || {
            if staging.exists() {
                remove_tree(&staging)?;
            }
            std::fs::create_dir_all(&staging)
                .map_err(StoreError::io(format!("creating {}", staging.display())))?;
            match unpack::unpack(&zip, &staging) {
                Ok(unpacked) => {
                    // The top directory stays writable until it is published: moving a
                    // directory needs write access to it (for its "..").
                    for entry in std::fs::read_dir(&staging)
                        .map_err(StoreError::io(format!("reading {}", staging.display())))?
                    {
                        let entry = entry
                            .map_err(StoreError::io(format!("reading {}", staging.display())))?;
                        seal(&entry.path())?;
                    }
                    Ok(unpacked)
                }
                Err(e) => {
                    let _ = remove_tree(&staging);
                    Err(StoreError::Unpack(e))
                }
            }
        })
        .await
    }

    async fn publish(&self, sha256_hex: &str) -> Result<()> {
        let (from, to) = (self.staging(sha256_hex), self.dir(sha256_hex));
        tokio::fs::rename(&from, &to)
            .await
            .map_err(StoreError::io(format!("publishing {}", to.display())))?;
        off_thread("sealing code", move || seal_one(&to)).await
    }
}

/// Runs the blocking file work `f` off the async threads; `what` names it if the task dies.
async fn off_thread<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            what: what.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Runs `python -m compileall` over the sealed tree `dir` (unsealed meanwhile for the
/// server's user; instances only ever see it read-only). Files that do not compile are
/// not an error: compileall reports them and the rest is compiled.
async fn compile_python(python: &Path, dir: &Path) -> Result<()> {
    let target = dir.to_owned();
    off_thread("unsealing code", move || unseal_dirs(&target)).await?;
    let compiled = tokio::time::timeout(
        COMPILE_LIMIT,
        tokio::process::Command::new(python)
            .args(["-m", "compileall", "-q"])
            .arg(dir)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    let target = dir.to_owned();
    off_thread("sealing code", move || seal(&target)).await?;
    match compiled {
        Ok(status) => status
            .map(drop)
            .map_err(StoreError::io(format!("compiling {}", dir.display()))),
        Err(_) => Err(StoreError::Io {
            what: format!("compiling {}", dir.display()),
            source: std::io::Error::other("took too long"),
        }),
    }
}

/// Gives the owner write access to every directory of a sealed tree, so new files
/// (`__pycache__`) can be made in it.
fn unseal_dirs(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(StoreError::io(format!("reading {}", dir.display())))?;
    if !meta.is_dir() {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(StoreError::io(format!("unsealing {}", dir.display())))?;
    for entry in
        std::fs::read_dir(dir).map_err(StoreError::io(format!("reading {}", dir.display())))?
    {
        let entry = entry.map_err(StoreError::io(format!("reading {}", dir.display())))?;
        unseal_dirs(&entry.path())?;
    }
    Ok(())
}

/// Makes an unpacked tree read-only to everyone and readable by anyone: instances run as
/// users of their own, and Lambda too needs code to be world-readable.
fn seal(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(StoreError::io(format!("reading {}", dir.display())))?;
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(dir).map_err(StoreError::io(format!("reading {}", dir.display())))?
        {
            let entry = entry.map_err(StoreError::io(format!("reading {}", dir.display())))?;
            seal(&entry.path())?;
        }
    }
    seal_one(dir)
}

/// Seals `path` alone (see [`seal`]); symlinks have no mode of their own.
fn seal_one(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)
        .map_err(StoreError::io(format!("reading {}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let readable = if meta.is_dir() { 0o555 } else { 0o444 };
    let mode = (meta.permissions().mode() & 0o777 & !0o222) | readable;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(StoreError::io(format!("sealing {}", path.display())))
}

/// Removes a tree that may have been sealed read-only.
fn remove_tree(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn unseal(path: &Path) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.is_dir() {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
                if let Ok(entries) = std::fs::read_dir(path) {
                    for entry in entries.flatten() {
                        unseal(&entry.path());
                    }
                }
            }
        }
    }
    unseal(dir);
    std::fs::remove_dir_all(dir).map_err(StoreError::io(format!("removing {}", dir.display())))
}

/// Total bytes of the regular files under `dir`.
fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in
        std::fs::read_dir(dir).map_err(StoreError::io(format!("reading {}", dir.display())))?
    {
        let entry = entry.map_err(StoreError::io(format!("reading {}", dir.display())))?;
        let meta = entry.metadata().map_err(StoreError::io(format!(
            "reading {}",
            entry.path().display()
        )))?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

impl CodeCache {
    /// The zip of package `sha256_hex`.
    pub async fn zip(&self, sha256_hex: &str) -> Result<Bytes> {
        self.blobs.get(sha256_hex).await
    }
}
