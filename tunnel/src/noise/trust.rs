//! Which keys may connect to this node.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::identity::PublicKey;

/// The keys allowed to open links to this node: those of its configured peers, its `trust`
/// list and its `trust_file` (replaced whole when the config or the file changes; links
/// already up stay up), and the nodes the mesh vouches for. A node is vouched for while the
/// route table holds it: a sidecar can only announce itself, so only a gateway, or the node
/// itself over a trusted link, can bring a key into the table (see `table/rules.rs`).
#[derive(Debug, Default)]
pub struct Trust {
    keys: RwLock<HashSet<PublicKey>>,
    vouched: RwLock<HashSet<PublicKey>>,
}

impl Trust {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Trust {
        Trust {
            keys: RwLock::new(keys.into_iter().collect()),
            vouched: RwLock::default(),
        }
    }

    pub fn allows(&self, key: &PublicKey) -> bool {
        let read = |set: &RwLock<HashSet<PublicKey>>| {
            set.read().unwrap_or_else(|e| e.into_inner()).contains(key)
        };
        read(&self.keys) || read(&self.vouched)
    }

    /// Records that the mesh vouches for `key` (`true`) or no longer does.
    pub(crate) fn vouch(&self, key: PublicKey, vouched: bool) {
        let mut set = self.vouched.write().unwrap_or_else(|e| e.into_inner());
        if vouched {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys.into_iter().collect();
    }
}
