//! Where a function's invocations run in a cluster: rendezvous (highest-random-weight)
//! hashing of the function over the live nodes. Every node computes the same order from the
//! same membership, so a function has one *home* node (where its warm instances gather) and
//! a fixed order of fallbacks when the home is saturated. When a node joins or leaves, only
//! the functions whose home it is or becomes move. Pure computation, no I/O.

use sha2::{Digest, Sha256};

/// The weight of `node` for `key`: the first 8 bytes of SHA-256(key, NUL, node).
fn weight(key: &str, node: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0u8]);
    hasher.update(node.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `nodes` (ids) in the order `key`'s invocations should try them: its home first. Ties
/// (never in practice) are broken by id, so the order is the same on every node.
pub fn rendezvous<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut weighted: Vec<(u64, &str)> = nodes.into_iter().map(|n| (weight(key, n), n)).collect();
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted.into_iter().map(|(_, n)| n).collect()
}

/// The node `key`'s invocations go to first, if there is any node.
pub fn home<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .map(|n| (weight(key, n), n))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn homes_spread_evenly_over_nodes() {
        let nodes = ids(3);
        let mut counts = [0usize; 3];
        for f in 0..3000 {
            let home = home(&format!("fn-{f}:$LATEST"), nodes.iter().map(String::as_str));
            let index = nodes.iter().position(|n| Some(n.as_str()) == home);
            counts[index.expect("a home")] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    proptest! {
        #[test]
        fn every_node_agrees_and_the_order_starts_at_the_home(
            key in "[a-z0-9:$-]{1,40}",
            count in 1usize..8,
            rotation in 0usize..8,
        ) {
            let nodes = ids(count);
            let mut shuffled = nodes.clone();
            shuffled.rotate_left(rotation % count);
            let a = rendezvous(&key, nodes.iter().map(String::as_str));
            let b = rendezvous(&key, shuffled.iter().map(String::as_str));
            prop_assert_eq!(&a, &b, "the order does not depend on how membership was listed");
            prop_assert_eq!(a.len(), count);
            prop_assert_eq!(Some(a[0]), home(&key, nodes.iter().map(String::as_str)));
        }

        #[test]
        fn a_node_leaving_moves_only_the_keys_it_was_home_to(
            keys in prop::collection::vec("[a-z0-9-]{1,20}", 1..50),
            count in 2usize..8,
            gone in 0usize..8,
        ) {
            let nodes = ids(count);
            let gone = &nodes[gone % count];
            let rest: Vec<&str> = nodes.iter().map(String::as_str).filter(|n| n != gone).collect();
            for key in &keys {
                let before = home(key, nodes.iter().map(String::as_str));
                let after = home(key, rest.iter().copied());
                if before != Some(gone.as_str()) {
                    prop_assert_eq!(before, after, "{} moved though its home stayed", key);
                } else {
                    // Its new home is the next in its old order.
                    let order = rendezvous(key, nodes.iter().map(String::as_str));
                    prop_assert_eq!(after, Some(order[1]));
                }
            }
        }
    }
}
