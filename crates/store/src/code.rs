//! Code packages on this node: checked and unpacked once per SHA-256 into a read-only
//! directory, with the zip kept in the [`BlobStore`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::blobs::is_sha256_hex;
use crate::unpack::{self, Unpacked};
use crate::{BlobStore, Result, StoreError};

/// A code package that is stored and unpacked.
#[derive(Debug)]
pub struct Installed {
    /// Hex SHA-256 of the zip.
    pub sha256_hex: String,
    /// Base64 SHA-256 of the zip, as Lambda reports `CodeSha256`.
    pub sha256_base64: String,
    /// Size of the zip, bytes.
    pub size: u64,
    /// Size of the unpacked files, bytes.
    pub unzipped_size: u64,
    /// Keeps the package from the collector until the deploy has recorded it: hold it
    /// until the metadata that references the package is written.
    pub pin: CodePin,
}

/// Unpacked code packages under `DIR/<hex sha256>/`, one directory per package.
pub struct CodeCache {
    root: PathBuf,
    blobs: Arc<dyn BlobStore>,
    /// One lock per package being unpacked or collected, so each is unpacked once and
    /// never collected while it is being unpacked.
    unpacking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Packages whose Python sources are being compiled.
    compiling: Mutex<HashSet<String>>,
    /// One compile at a time: each is a process outside any instance's cgroup.
    compile_slot: Arc<tokio::sync::Semaphore>,
    /// Which packages deploys, starting instances and compiles hold, and when each was
    /// last used: what the collector must leave alone although no version references it.
    uses: Arc<Mutex<Uses>>,
}

/// Packages in use on this node, beyond what the metadata references.
#[derive(Debug, Default)]
struct Uses {
    /// Holders of a [`CodePin`], by package.
    pins: HashMap<String, usize>,
    /// When each package was last installed, opened or released.
    last: HashMap<String, Instant>,
}

/// Keeps one package from the collector while it lives (a deploy in progress, an instance
/// starting, a compile). Dropping it counts as a use, so the grace period runs from then.
pub struct CodePin {
    uses: Arc<Mutex<Uses>>,
    sha256_hex: String,
}

impl std::fmt::Debug for CodePin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CodePin").field(&self.sha256_hex).finish()
    }
}

impl Drop for CodePin {
    fn drop(&mut self) {
        let mut uses = lock(&self.uses);
        if let Some(count) = uses.pins.get_mut(&self.sha256_hex) {
            *count -= 1;
            if *count == 0 {
                uses.pins.remove(&self.sha256_hex);
            }
        }
        uses.last.insert(self.sha256_hex.clone(), Instant::now());
    }
}

/// What one collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Packages whose blob or unpacked directory was removed.
    pub packages: usize,
    /// Bytes of blobs and unpacked files freed.
    pub bytes: u64,
}

/// How long compiling one package's Python sources may take.
const COMPILE_LIMIT: Duration = Duration::from_secs(300);

/// The user (and group) the Python precompile runs as when the server is root: an id no
/// account and no instance has (instances lease ids from 2,000,000 up), so no other
/// process can touch a package while its directories are lent to the compile.
pub const COMPILE_UID: u32 = 1_999_999;

/// The precompile driver (see the file): never follows a link, drops root first.
const PRECOMPILE_PY: &str = include_str!("precompile.py");

/// Locks `mutex`, even if a panic poisoned it (the data is plain bookkeeping).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl CodeCache {
    /// A cache under `root` backed by `blobs`; leftovers of interrupted unpacks and
    /// collections are removed.
    pub fn open(root: &Path, blobs: Arc<dyn BlobStore>) -> Result<Self> {
        for leftovers in [root.join(".staging"), root.join(".trash")] {
            if leftovers.exists() {
                remove_tree(&leftovers)?;
            }
            std::fs::create_dir_all(&leftovers)
                .map_err(StoreError::io(format!("creating {}", leftovers.display())))?;
        }
        Ok(CodeCache {
            root: root.to_owned(),
            blobs,
            unpacking: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashSet::new()),
            compile_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            uses: Arc::new(Mutex::new(Uses::default())),
        })
    }

    /// Keeps package `sha256_hex` from the collector until the pin is dropped.
    pub fn pin(&self, sha256_hex: &str) -> CodePin {
        let mut uses = lock(&self.uses);
        *uses.pins.entry(sha256_hex.to_owned()).or_default() += 1;
        uses.last.insert(sha256_hex.to_owned(), Instant::now());
        CodePin {
            uses: self.uses.clone(),
            sha256_hex: sha256_hex.to_owned(),
        }
    }

    /// Checks and stores a new code zip: unpacks it (refusing unsafe archives, storing
    /// nothing then), keeps the zip as a blob, and publishes the unpacked directory. On
    /// any failure (or if the caller goes away) nothing is left in staging.
    pub async fn install(self: &Arc<Self>, zip: Bytes) -> Result<Installed> {
        // Run to the end even if the caller goes away: a deploy either publishes its
        // package or removes what it staged.
        let cache = self.clone();
        tokio::spawn(async move { cache.install_now(zip).await })
            .await
            .map_err(|e| StoreError::Io {
                what: "installing code".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    async fn install_now(&self, zip: Bytes) -> Result<Installed> {
        let digest = Sha256::digest(&zip);
        let sha256_hex = hex::encode(digest);
        use base64::Engine as _;
        let sha256_base64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let size = zip.len() as u64;
        let pin = self.pin(&sha256_hex);
        let lock = self.lock_for(&sha256_hex);
        let _guard = lock.lock().await;
        let dir = self.dir(&sha256_hex);
        let unzipped_size = if dir.exists() {
            // Unpacked already, perhaps by an older Nimbus with laxer checks: the same
            // zip must pass today's.
            let checked = zip.clone();
            off_thread("checking code", move || Ok(unpack::check(&checked)?)).await?;
            // A package collected meanwhile must have its blob again.
            self.blobs.put(&sha256_hex, zip).await?;
            let measured = dir.clone();
            off_thread("measuring code", move || dir_size(&measured)).await?
        } else {
            self.unpack_and_publish(&sha256_hex, zip, true).await?
        };
        Ok(Installed {
            sha256_hex,
            sha256_base64,
            size,
            unzipped_size,
            pin,
        })
    }

    /// The read-only directory holding package `sha256_hex`, unpacking it from its blob
    /// if this node has not yet. Hold a [`CodePin`] from before this call until what uses
    /// the directory is known to the collector (a live instance).
    pub async fn path(self: &Arc<Self>, sha256_hex: &str) -> Result<PathBuf> {
        lock(&self.uses)
            .last
            .insert(sha256_hex.to_owned(), Instant::now());
        let dir = self.dir(sha256_hex);
        if dir.exists() {
            return Ok(dir);
        }
        // As for install: an unpack runs to its end even if the invoke goes away.
        let (cache, sha) = (self.clone(), sha256_hex.to_owned());
        tokio::spawn(async move { cache.unpack_from_blob(&sha).await })
            .await
            .map_err(|e| StoreError::Io {
                what: "unpacking code".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Unpacks package `sha256_hex` from its blob unless it is there already.
    async fn unpack_from_blob(&self, sha256_hex: &str) -> Result<PathBuf> {
        let dir = self.dir(sha256_hex);
        let lock = self.lock_for(sha256_hex);
        let _guard = lock.lock().await;
        if !dir.exists() {
            let zip = self.blobs.get(sha256_hex).await?;
            self.unpack_and_publish(sha256_hex, zip, false).await?;
        }
        Ok(dir)
    }

    /// Compiles the Python sources of the unpacked package `sha256_hex` into `__pycache__`
    /// with `python`, once per node, in the background. Instances see their code read-only
    /// and so compile every module they import at every cold start (seconds for a vendored
    /// SDK); with the bytecode beside the sources they load it instead. The package stays
    /// sealed to instances; what fails to compile is simply compiled at import, as before.
    ///
    /// The compile processes user content, so it never runs as root: as root, the server
    /// lends the package's directories to [`COMPILE_UID`] for the compile and then takes
    /// them back (ownership changed with `lchown`, links never followed), and the driver
    /// drops root before it reads anything of the package. It follows no link either.
    /// Without root it runs as the server's user, on a tree whose links the unpacker
    /// resolved inside the package.
    pub fn precompile_python(self: &Arc<Self>, sha256_hex: &str, python: &Path) {
        let done = self.marker(sha256_hex);
        let dir = self.dir(sha256_hex);
        if done.exists() || !dir.is_dir() {
            return;
        }
        if !lock(&self.compiling).insert(sha256_hex.to_owned()) {
            return;
        }
        let pin = self.pin(sha256_hex);
        let (cache, sha, python) = (self.clone(), sha256_hex.to_owned(), python.to_owned());
        let slot = self.compile_slot.clone();
        tokio::spawn(async move {
            let _slot = slot.acquire_owned().await;
            match compile_python(&python, &dir).await {
                Ok(()) => {
                    if let Err(e) = std::fs::write(&done, "") {
                        tracing::warn!(package = %sha, error = %e, "could not mark Python sources compiled");
                    }
                }
                Err(e) => {
                    tracing::warn!(package = %sha, error = %e, "could not precompile Python sources")
                }
            }
            lock(&cache.compiling).remove(&sha);
            drop(pin);
        });
    }

    /// Removes the blobs and unpacked directories of packages that are not in `keep` (what
    /// versions reference and live instances use), not pinned, not compiling, and unused
    /// for `grace` (by this node's record and by the files' times). `since` is when `keep`
    /// began to be computed: a package used after it is kept, however short `grace` is.
    pub async fn collect(
        &self,
        keep: &HashSet<String>,
        grace: Duration,
        since: Instant,
    ) -> Result<Collected> {
        // Each package's newest file time, and its blob's size.
        let mut candidates: HashMap<String, (SystemTime, u64)> = HashMap::new();
        for blob in self.blobs.list().await? {
            candidates.insert(blob.sha256_hex, (blob.modified, blob.size));
        }
        let root = self.root.clone();
        let unpacked = off_thread("listing code", move || {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&root)
                .map_err(StoreError::io(format!("listing {}", root.display())))?
            {
                let entry = entry.map_err(StoreError::io(format!("listing {}", root.display())))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let sha = name.strip_suffix(".compiled").unwrap_or(&name).to_owned();
                if !is_sha256_hex(&sha) {
                    continue;
                }
                // Gone meanwhile (a deploy's failure, say): nothing to collect.
                if let Ok(modified) =
                    std::fs::symlink_metadata(entry.path()).and_then(|m| m.modified())
                {
                    found.push((sha, modified));
                }
            }
            Ok(found)
        })
        .await?;
        for (sha, modified) in unpacked {
            let newest = candidates.entry(sha).or_insert((modified, 0));
            newest.0 = newest.0.max(modified);
        }
        let mut collected = Collected::default();
        for (sha, (modified, blob_size)) in candidates {
            if keep.contains(&sha) {
                continue;
            }
            let lock = self.lock_for(&sha);
            let _guard = lock.lock().await;
            if self.in_use(&sha, grace, since) {
                continue;
            }
            if modified.elapsed().map_or(true, |age| age < grace) {
                continue;
            }
            collected.bytes += self.remove_package(&sha, blob_size).await?;
            collected.packages += 1;
        }
        Ok(collected)
    }

    /// Whether this node holds or used `sha256_hex` lately (see [`CodeCache::collect`]).
    fn in_use(&self, sha256_hex: &str, grace: Duration, since: Instant) -> bool {
        if lock(&self.compiling).contains(sha256_hex) {
            return true;
        }
        let uses = lock(&self.uses);
        if uses.pins.contains_key(sha256_hex) {
            return true;
        }
        uses.last
            .get(sha256_hex)
            .is_some_and(|last| *last >= since || last.elapsed() < grace)
    }

    /// Removes package `sha256_hex`: its unpacked directory (moved aside first, so no
    /// one ever sees it half-removed), its compiled marker and its blob. Returns the bytes
    /// freed.
    async fn remove_package(&self, sha256_hex: &str, blob_size: u64) -> Result<u64> {
        let dir = self.dir(sha256_hex);
        let marker = self.marker(sha256_hex);
        let trash = self
            .root
            .join(".trash")
            .join(format!("{sha256_hex}.{}", uuid::Uuid::new_v4()));
        let mut freed = off_thread("removing code", move || {
            let mut freed = 0;
            if dir.exists() {
                freed += dir_size(&dir)?;
                std::fs::rename(&dir, &trash)
                    .map_err(StoreError::io(format!("moving {} aside", dir.display())))?;
                remove_tree(&trash)?;
            }
            match std::fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("removing {}", marker.display()))(e)),
            }
            Ok(freed)
        })
        .await?;
        if self.blobs.delete(sha256_hex).await? {
            freed += blob_size;
        }
        lock(&self.uses).last.remove(sha256_hex);
        tracing::info!(package = %sha256_hex, bytes = freed, "collected unreferenced code");
        Ok(freed)
    }

    fn dir(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(sha256_hex)
    }

    fn marker(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(format!("{sha256_hex}.compiled"))
    }

    fn staging(&self, sha256_hex: &str) -> PathBuf {
        self.root.join(".staging").join(sha256_hex)
    }

    fn lock_for(&self, sha256_hex: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.unpacking);
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(sha256_hex.to_owned()).or_default().clone()
    }

    /// Unpacks `zip` aside, stores it as a blob if `store_blob`, and publishes it as
    /// package `sha256_hex`; on failure the staging directory is removed before this
    /// returns. Returns the bytes unpacked.
    async fn unpack_and_publish(
        &self,
        sha256_hex: &str,
        zip: Bytes,
        store_blob: bool,
    ) -> Result<u64> {
        let staged = Staged::new(self.staging(sha256_hex));
        let outcome = async {
            let unpacked = self.unpack_to_staging(zip.clone(), &staged).await?;
            if store_blob {
                self.blobs.put(sha256_hex, zip).await?;
            }
            self.publish(sha256_hex, &staged).await?;
            Ok(unpacked.bytes)
        }
        .await;
        if outcome.is_err() {
            staged.discard().await;
        }
        outcome
    }

    async fn unpack_to_staging(&self, zip: Bytes, staged: &Staged) -> Result<Unpacked> {
        let staging = staged.path.clone();
        off_thread("unpacking code", move || {
            if staging.exists() {
                remove_tree(&staging)?;
            }
            std::fs::create_dir_all(&staging)
                .map_err(StoreError::io(format!("creating {}", staging.display())))?;
            let unpacked = unpack::unpack(&zip, &staging)?;
            // The top directory stays writable until it is published: moving a
            // directory needs write access to it (for its "..").
            for entry in std::fs::read_dir(&staging)
                .map_err(StoreError::io(format!("reading {}", staging.display())))?
            {
                let entry =
                    entry.map_err(StoreError::io(format!("reading {}", staging.display())))?;
                seal(&entry.path())?;
            }
            Ok(unpacked)
        })
        .await
    }

    async fn publish(&self, sha256_hex: &str, staged: &Staged) -> Result<()> {
        let to = self.dir(sha256_hex);
        tokio::fs::rename(&staged.path, &to)
            .await
            .map_err(StoreError::io(format!("publishing {}", to.display())))?;
        staged.published();
        off_thread("sealing code", move || seal_one(&to)).await
    }
}

/// A staging directory, removed when dropped unless it was published or discarded:
/// every failure path of a deploy (a refused zip, a full disk, a failed blob write, a
/// caller that went away mid-deploy) cleans up after itself.
struct Staged {
    path: PathBuf,
    /// Whether dropping it must still remove the directory.
    armed: std::sync::atomic::AtomicBool,
}

impl Staged {
    fn new(path: PathBuf) -> Self {
        Staged {
            path,
            armed: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The directory was moved to its place: nothing to remove.
    fn published(&self) {
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Removes the directory now (a failed deploy answers only once it is gone).
    async fn discard(self) {
        self.published();
        let path = self.path.clone();
        if let Err(e) = off_thread("removing staged code", move || {
            if path.exists() {
                remove_tree(&path)?;
            }
            Ok(())
        })
        .await
        {
            tracing::warn!(error = %e, "could not remove a staging directory");
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if path.exists() {
                if let Err(e) = remove_tree(&path) {
                    tracing::warn!(error = %e, "could not remove a staging directory");
                }
            }
        };
        // Removing a large tree blocks: off the async threads when there are some.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
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

/// Runs the precompile driver over the sealed tree `dir`: its directories are lent to
/// [`COMPILE_UID`] (or, without root, opened to the server's user) meanwhile, then given
/// back to root and sealed again. Files that do not compile are not an error.
async fn compile_python(python: &Path, dir: &Path) -> Result<()> {
    let as_root = nix::unistd::geteuid().is_root();
    let owner = as_root.then_some(COMPILE_UID);
    let target = dir.to_owned();
    let lent = off_thread("lending code to the compile", move || {
        lend_dirs(&target, owner)
    })
    .await;
    if let Err(e) = lent {
        // Part of the tree may be lent already: it is given back and sealed all the same.
        let _ = reseal(dir, as_root).await;
        return Err(e);
    }
    let compiled = tokio::time::timeout(
        COMPILE_LIMIT,
        tokio::process::Command::new(python)
            // Isolated (no environment, no user site, no working directory on the path),
            // no site packages, no bytecode of its own written.
            .args(["-I", "-S", "-B", "-c", PRECOMPILE_PY])
            .arg(COMPILE_UID.to_string())
            .arg(COMPILE_UID.to_string())
            .current_dir(dir)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    reseal(dir, as_root).await?;
    match compiled {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(StoreError::Io {
            what: format!("compiling {}", dir.display()),
            source: std::io::Error::other(format!("the compile ended with {status}")),
        }),
        Ok(Err(e)) => Err(StoreError::io(format!("compiling {}", dir.display()))(e)),
        Err(_) => Err(StoreError::Io {
            what: format!("compiling {}", dir.display()),
            source: std::io::Error::other("took too long"),
        }),
    }
}

/// Gives a tree lent to the compile back to root (when the server is root) and seals it.
async fn reseal(dir: &Path, as_root: bool) -> Result<()> {
    let target = dir.to_owned();
    off_thread("sealing code", move || {
        if as_root {
            give_back(&target)?;
        }
        seal(&target)
    })
    .await
}

/// Makes every directory of a sealed tree writable by its owner, so `__pycache__` can be
/// made in it, and with `owner` given, makes that user the owner (`lchown`: a link is
/// never followed, and only real directories are changed).
fn lend_dirs(dir: &Path, owner: Option<u32>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(StoreError::io(format!("reading {}", dir.display())))?;
    if !meta.is_dir() {
        return Ok(());
    }
    if let Some(uid) = owner {
        std::os::unix::fs::lchown(dir, Some(uid), Some(uid))
            .map_err(StoreError::io(format!("lending {}", dir.display())))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(StoreError::io(format!("unsealing {}", dir.display())))?;
    for entry in
        std::fs::read_dir(dir).map_err(StoreError::io(format!("reading {}", dir.display())))?
    {
        let entry = entry.map_err(StoreError::io(format!("reading {}", dir.display())))?;
        lend_dirs(&entry.path(), owner)?;
    }
    Ok(())
}

/// Makes root the owner of everything in a tree again (what the compile made included),
/// never following a link.
fn give_back(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(StoreError::io(format!("reading {}", path.display())))?;
    std::os::unix::fs::lchown(path, Some(0), Some(0))
        .map_err(StoreError::io(format!("taking back {}", path.display())))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)
            .map_err(StoreError::io(format!("reading {}", path.display())))?
        {
            let entry = entry.map_err(StoreError::io(format!("reading {}", path.display())))?;
            give_back(&entry.path())?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::BlobInfo;
    use crate::LocalBlobs;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn zip_of(files: &[(&str, &str)]) -> Bytes {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, text) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("start");
            w.write_all(text.as_bytes()).expect("write");
        }
        Bytes::from(w.finish().expect("finish").into_inner())
    }

    fn cache(dir: &Path) -> Arc<CodeCache> {
        let blobs: Arc<dyn BlobStore> =
            Arc::new(LocalBlobs::open(&dir.join("blobs")).expect("blobs"));
        Arc::new(CodeCache::open(&dir.join("code"), blobs).expect("cache"))
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A blob store on a full disk.
    struct FullDisk;

    #[async_trait::async_trait]
    impl BlobStore for FullDisk {
        async fn put(&self, _: &str, _: Bytes) -> Result<()> {
            Err(StoreError::Io {
                what: "writing blob /somewhere/secret".into(),
                source: std::io::Error::from_raw_os_error(28),
            })
        }
        async fn get(&self, sha256_hex: &str) -> Result<Bytes> {
            Err(StoreError::MissingBlob(sha256_hex.into()))
        }
        async fn list(&self) -> Result<Vec<BlobInfo>> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> Result<bool> {
            Ok(false)
        }
    }

    #[tokio::test]
    async fn issue_11_a_deploy_that_fails_after_unpacking_leaves_no_staging() {
        let dir = tempfile::tempdir().expect("tmp");
        let code = Arc::new(CodeCache::open(dir.path(), Arc::new(FullDisk)).expect("cache"));
        let err = code
            .install(zip_of(&[("app.py", "x = 1\n")]))
            .await
            .expect_err("full");
        assert!(err.is_disk_full(), "{err}");
        assert!(entries(&dir.path().join(".staging")).is_empty());
        assert_eq!(entries(dir.path()), [".staging", ".trash"]);
        // A refused zip leaves nothing either.
        let bad = {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default();
            w.start_file("x", options).expect("start");
            w.add_directory("x/", options).expect("dir");
            Bytes::from(w.finish().expect("finish").into_inner())
        };
        let err = code.install(bad).await.expect_err("clash");
        assert!(
            matches!(err, StoreError::Unpack(ref e) if e.is_user_error()),
            "{err}"
        );
        assert!(entries(&dir.path().join(".staging")).is_empty());
    }

    #[tokio::test]
    async fn a_package_an_older_nimbus_unpacked_passes_todays_checks_when_deployed_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let code = cache(dir.path());
        let zip = {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            w.add_symlink("l", "../x", zip::write::SimpleFileOptions::default())
                .expect("link");
            Bytes::from(w.finish().expect("finish").into_inner())
        };
        let sha = hex::encode(Sha256::digest(&zip));
        std::fs::create_dir(dir.path().join("code").join(&sha)).expect("old unpack");
        let err = code.install(zip).await.expect_err("escaping link");
        assert!(
            matches!(
                err,
                StoreError::Unpack(unpack::UnpackError::EscapingLink(_))
            ),
            "{err}"
        );
        assert!(code.zip(&sha).await.is_err(), "no blob stored");
    }

    #[tokio::test]
    async fn unreferenced_code_is_collected_after_the_grace_period_but_never_while_pinned() {
        let dir = tempfile::tempdir().expect("tmp");
        let code = cache(dir.path());
        let kept = code
            .install(zip_of(&[("app.py", "kept = 1\n")]))
            .await
            .expect("install");
        let dropped = code
            .install(zip_of(&[("app.py", "dropped = 1\n")]))
            .await
            .expect("install");
        let (kept_sha, dropped_sha) = (kept.sha256_hex.clone(), dropped.sha256_hex.clone());
        std::fs::write(dir.path().join(format!("code/{dropped_sha}.compiled")), "").expect("mark");
        let keep: HashSet<String> = [kept_sha.clone()].into();
        let grace = Duration::from_millis(300);
        // Pinned (the deploy has not recorded it yet): kept.
        let collected = code
            .collect(&keep, grace, Instant::now())
            .await
            .expect("collect");
        assert_eq!(collected, Collected::default());
        drop((kept, dropped));
        // Released just now: within the grace period.
        let collected = code
            .collect(&keep, grace, Instant::now())
            .await
            .expect("collect");
        assert_eq!(collected.packages, 0);
        tokio::time::sleep(grace * 2).await;
        let collected = code
            .collect(&keep, grace, Instant::now())
            .await
            .expect("collect");
        assert_eq!(collected.packages, 1);
        assert!(collected.bytes > 0);
        let left = entries(&dir.path().join("code"));
        assert_eq!(left, [".staging", ".trash", kept_sha.as_str()]);
        assert!(code.zip(&dropped_sha).await.is_err());
        assert!(code.zip(&kept_sha).await.is_ok());
        // Used after the collection began (an instance starting): kept, whatever the grace.
        let since = Instant::now();
        code.path(&kept_sha).await.expect("path");
        let collected = code
            .collect(&HashSet::new(), Duration::ZERO, since)
            .await
            .expect("collect");
        assert_eq!(collected.packages, 0);
        // Deploying collected code again brings it back.
        let again = code
            .install(zip_of(&[("app.py", "dropped = 1\n")]))
            .await
            .expect("install");
        assert_eq!(again.sha256_hex, dropped_sha);
        assert!(code
            .path(&dropped_sha)
            .await
            .expect("path")
            .join("app.py")
            .exists());
    }

    /// Issue 11, item 1 (b): even with a link that slipped through (made here by hand,
    /// after the unpacker), the precompile writes nothing outside the package, leaves
    /// nothing owned by anyone but root, and seals what it made. The positive control
    /// shows the same tree did make `compileall` (as root, as before) write outside.
    #[tokio::test]
    async fn issue_11_the_precompile_follows_no_link_and_does_not_run_as_root() {
        let python = Path::new("/usr/bin/python3");
        if !nix::unistd::geteuid().is_root() || !python.exists() {
            eprintln!("skipped: needs root and /usr/bin/python3");
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let code = cache(dir.path());
        let installed = code
            .install(zip_of(&[
                ("app.py", "x = 1\n"),
                ("pkg/mod.py", "y = 2\n"),
                ("pkg/__init__.py", ""),
            ]))
            .await
            .expect("install");
        let package = code.path(&installed.sha256_hex).await.expect("path");
        // Plant what the unpacker would refuse: a __pycache__ leading outside.
        std::fs::set_permissions(&package, std::fs::Permissions::from_mode(0o755)).expect("open");
        std::os::unix::fs::symlink(&outside, package.join("__pycache__")).expect("link");
        std::os::unix::fs::symlink(outside.join("x.py"), package.join("linked.py")).expect("link");
        seal_one(&package).expect("seal");

        // Positive control: compileall as root writes through the link.
        let control = dir.path().join("control");
        std::process::Command::new("cp")
            .args(["-a"])
            .arg(&package)
            .arg(&control)
            .status()
            .expect("cp");
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o755)).expect("open");
        std::process::Command::new(python)
            .args(["-m", "compileall", "-q"])
            .arg(&control)
            .status()
            .expect("compileall");
        assert!(
            !entries(&outside).is_empty(),
            "control: compileall wrote outside"
        );
        for name in entries(&outside) {
            std::fs::remove_file(outside.join(name)).expect("clean");
        }

        code.precompile_python(&installed.sha256_hex, python);
        let marker = dir
            .path()
            .join(format!("code/{}.compiled", installed.sha256_hex));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !marker.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(marker.exists(), "precompile finished");
        assert!(entries(&outside).is_empty(), "nothing written outside");
        let cache_dir = package.join("pkg/__pycache__");
        let compiled = entries(&cache_dir);
        assert_eq!(compiled.len(), 2, "{compiled:?}");
        for path in std::iter::once(cache_dir.clone())
            .chain(compiled.iter().map(|n| cache_dir.join(n)))
            .chain([package.clone(), package.join("pkg")])
        {
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", path.display());
            assert_eq!(meta.mode() & 0o222, 0, "{} sealed", path.display());
            assert_eq!(meta.mode() & 0o444, 0o444, "{} readable", path.display());
        }
    }
}
