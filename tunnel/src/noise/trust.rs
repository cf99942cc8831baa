//! Which keys may connect to this node.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::identity::PublicKey;

/// The keys allowed to open links to this node:
/// - those of its configured peers, its `trust` list and its `trust_file`, replaced whole when
///   the config or the file changes;
/// - the nodes the mesh vouches for. A node is vouched for while the route table holds it: a
///   sidecar can only announce itself, so only a gateway, or the node itself over a trusted
///   link, can bring a key into the table (see `table/rules.rs`);
/// - the peers a registry discovered, added and removed one by one and left alone by a
///   replace: a config reload must not forget what the registry found.
///
/// Links already up stay up when a key leaves.
#[derive(Debug, Default)]
pub struct Trust {
    keys: RwLock<HashSet<PublicKey>>,
    vouched: RwLock<HashSet<PublicKey>>,
    discovered: RwLock<HashSet<PublicKey>>,
}

impl Trust {
    /// Trusts `keys`, from the config; the mesh and registries add others as they go.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Trust {
        Trust {
            keys: RwLock::new(keys.into_iter().collect()),
            ..Trust::default()
        }
    }

    /// Whether a node holding `key` may open a link to this one.
    pub fn allows(&self, key: &PublicKey) -> bool {
        let read = |set: &RwLock<HashSet<PublicKey>>| {
            set.read().unwrap_or_else(|e| e.into_inner()).contains(key)
        };
        read(&self.keys) || read(&self.vouched) || read(&self.discovered)
    }

    /// Records that the mesh vouches for `key` (`true`) or no longer does.
    pub(crate) fn vouch(&self, key: PublicKey, vouched: bool) {
        toggle(&self.vouched, key, vouched);
    }

    /// Replaces the configured keys; vouched and discovered ones stay.
    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys.into_iter().collect();
    }

    /// Trusts a key a registry discovered.
    pub fn add_discovered(&self, key: PublicKey) {
        toggle(&self.discovered, key, true);
    }

    /// Stops trusting a discovered key (a configured or vouched one stays trusted).
    pub fn remove_discovered(&self, key: &PublicKey) {
        toggle(&self.discovered, *key, false);
    }
}

fn toggle(set: &RwLock<HashSet<PublicKey>>, key: PublicKey, present: bool) {
    let mut set = set.write().unwrap_or_else(|e| e.into_inner());
    if present {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn discovered_keys_survive_a_replace_and_leave_on_removal() {
        let configured = Identity::generate().expect("a key").public();
        let discovered = Identity::generate().expect("a key").public();
        let trust = Trust::new([configured]);
        trust.add_discovered(discovered);
        trust.replace([]);
        assert!(!trust.allows(&configured));
        assert!(trust.allows(&discovered));
        trust.remove_discovered(&discovered);
        assert!(!trust.allows(&discovered));
    }
}
