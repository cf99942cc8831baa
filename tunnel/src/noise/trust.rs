//! Which keys may connect to this node.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::identity::PublicKey;

/// The keys allowed to open links to this node: those of its configured peers, its `trust`
/// list and its `trust_file`. Replaced whole when the config or the file changes; links
/// already up stay up.
#[derive(Debug, Default)]
pub struct Trust {
    keys: RwLock<HashSet<PublicKey>>,
}

impl Trust {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Trust {
        Trust {
            keys: RwLock::new(keys.into_iter().collect()),
        }
    }

    pub fn allows(&self, key: &PublicKey) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys.into_iter().collect();
    }
}
