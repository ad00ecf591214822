//! Who an instance runs as: an unprivileged user and group of its own, leased from a range
//! no account on the host uses, with every capability dropped. Two live instances never
//! share a user, so neither can signal or read the other's processes even without the PID
//! namespace.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex};

/// The first user id handed out: far above any account a host creates.
pub const FIRST_UID: u32 = 2_000_000;

/// How many user ids the pool spans: more than the live instances a node can hold.
pub const UIDS: u32 = 65_536;

/// Unprivileged user ids, one per live instance.
#[derive(Debug, Default)]
pub struct UidPool {
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Where the next search starts, so a released id is not reused at once.
    cursor: u32,
    in_use: BTreeSet<u32>,
}

/// A user id held by one instance; released when dropped (after its processes are gone).
#[derive(Debug)]
pub struct UidLease {
    pool: Arc<UidPool>,
    uid: u32,
}

impl UidLease {
    /// The user (and group) id.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pool.state.lock() {
            state.in_use.remove(&self.uid);
        }
    }
}

impl UidPool {
    /// An empty pool.
    pub fn new() -> Arc<UidPool> {
        Arc::new(UidPool::default())
    }

    /// A user id no live instance holds, or `None` if all are taken.
    pub fn lease(self: &Arc<Self>) -> Option<UidLease> {
        let mut state = self.state.lock().ok()?;
        for step in 0..UIDS {
            let offset = (state.cursor + step) % UIDS;
            let uid = FIRST_UID + offset;
            if state.in_use.insert(uid) {
                state.cursor = (offset + 1) % UIDS;
                return Some(UidLease {
                    pool: self.clone(),
                    uid,
                });
            }
        }
        None
    }
}

/// In the jailer: drops every capability from the bounding set (so nothing exec'd can
/// regain one), leaves all supplementary groups and becomes `uid`:`uid`, which clears the
/// permitted, effective and ambient sets.
///
/// # Safety
/// Only in a single-threaded process: the credentials of other threads would not change.
pub(crate) unsafe fn become_user(uid: u32) -> io::Result<()> {
    use nix::libc::{prctl, setgroups, setresgid, setresuid, PR_CAPBSET_DROP};
    // Capabilities this kernel does not know fail with EINVAL: nothing to drop there.
    for cap in 0..64 {
        prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    let check = |rc: i32| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    check(setgroups(0, std::ptr::null()))?;
    check(setresgid(uid, uid, uid))?;
    check(setresuid(uid, uid, uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_and_released_ids_come_back_last() {
        let pool = UidPool::new();
        let a = pool.lease().expect("a");
        let b = pool.lease().expect("b");
        assert_ne!(a.uid(), b.uid());
        assert!(a.uid() >= FIRST_UID && a.uid() < FIRST_UID + UIDS);
        let released = a.uid();
        drop(a);
        let c = pool.lease().expect("c");
        assert_ne!(
            c.uid(),
            released,
            "a released id is not handed out again at once"
        );
        assert_eq!(pool.state.lock().expect("lock").in_use.len(), 2);
    }
}
