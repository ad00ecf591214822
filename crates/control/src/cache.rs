//! A node-local cache of what invokes read on every call: a function version's
//! configuration with the function's scaling settings, and aliases. Every mutation of a
//! function through this node invalidates all of its entries.
//! Changes made on other nodes invalidate it too (`routing.rs`: told at once, and the
//! change feed read every second).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use nimbus_core::{AliasConfig, FunctionConfig, Scaling};

/// A cached function version and its function's scaling.
pub(crate) type Entry = Arc<(FunctionConfig, Scaling)>;

/// What a qualifier of a function resolves to.
#[derive(Clone)]
pub(crate) enum Cached {
    /// `$LATEST` or a published version.
    Version(Entry),
    /// An alias, to be routed.
    Alias(Arc<AliasConfig>),
}

#[derive(Default)]
struct Inner {
    /// By function name, then qualifier (`$LATEST`, a version number or an alias).
    entries: HashMap<String, HashMap<String, Cached>>,
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

    /// The cached entry for `name` at `qualifier`, or the generation to pass to
    /// [`FunctionCache::store`] after loading it.
    pub(crate) fn get(&self, name: &str, qualifier: &str) -> Result<Cached, u64> {
        let inner = self.read();
        inner
            .entries
            .get(name)
            .and_then(|by_qualifier| by_qualifier.get(qualifier))
            .cloned()
            .ok_or(inner.generation)
    }

    /// Stores a loaded entry unless something was invalidated since `generation`.
    pub(crate) fn store(&self, name: &str, qualifier: &str, entry: Cached, generation: u64) {
        let mut inner = self.write();
        if inner.generation == generation {
            inner
                .entries
                .entry(name.to_owned())
                .or_default()
                .insert(qualifier.to_owned(), entry);
        }
    }

    /// Forgets everything (this node fell too far behind the change feed).
    pub(crate) fn clear(&self) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// Forgets `name`: it changed.
    pub(crate) fn invalidate(&self, name: &str) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.remove(name);
    }
}
