//! A node-local cache of what invokes read on every call: a function's `$LATEST`
//! configuration and scaling settings. Every mutation through this node invalidates it.
//! (With several nodes sharing a database, other nodes' writes must invalidate it too.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use nimbus_core::{FunctionConfig, Scaling};

/// A cached function.
pub(crate) type Entry = Arc<(FunctionConfig, Scaling)>;

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every invalidation, so a load that raced one is not stored.
    generation: u64,
}

/// Functions by name.
#[derive(Default)]
pub(crate) struct FunctionCache {
    inner: RwLock<Inner>,
    /// Held while loading a missing entry, so a burst of misses loads it once.
    pub(crate) loading: tokio::sync::Mutex<()>,
}

impl FunctionCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        match self.inner.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cached entry for `name`, or the generation to pass to [`FunctionCache::store`]
    /// after loading it.
    pub(crate) fn get(&self, name: &str) -> Result<Entry, u64> {
        let inner = self.read();
        inner.entries.get(name).cloned().ok_or(inner.generation)
    }

    /// Stores a loaded entry unless something was invalidated since `generation`.
    pub(crate) fn store(&self, name: &str, entry: Entry, generation: u64) {
        let mut inner = self.write();
        if inner.generation == generation {
            inner.entries.insert(name.to_owned(), entry);
        }
    }

    /// Forgets `name`: it changed.
    pub(crate) fn invalidate(&self, name: &str) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.remove(name);
    }
}
