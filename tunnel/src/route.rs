//! A route — one way to reach a service — and the index that finds a service's routes fast.

use std::borrow::Cow;
// Looked up on every call: foldhash, not SipHash.
use foldhash::HashMap;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogSubscription};
use crate::header::Protocol;
use crate::identity::PublicKey;

/// One way to reach a service: a node that fronts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The service, as the node that fronts it names it.
    pub service: String,
    /// The datacenter of the node.
    pub datacenter: String,
    /// The node's name.
    pub node: String,
    /// The node's key: calls are carried to it by key.
    pub key: PublicKey,
    /// What the service speaks.
    pub protocol: Protocol,
    /// Whether the service's health check passes on that node.
    pub healthy: bool,
    /// The cost of reaching the node: round-trip times summed along the path.
    pub metric: Duration,
    /// The neighbor the route was learned through, when it is not the node itself.
    pub via: Option<PublicKey>,
}

/// A subscription somewhere in the mesh, with what a publisher needs to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRoute {
    /// What the node announced.
    pub subscription: CatalogSubscription,
    /// The datacenter of the node.
    pub datacenter: String,
    /// The node's name.
    pub node: String,
    /// The node's key: messages are carried to it by key.
    pub key: PublicKey,
    /// Whether the subscribing service's health check passes on that node.
    pub healthy: bool,
    /// The cost of reaching the node.
    pub metric: Duration,
}

/// A service name as indexes keep it: lowercased, allocating only when it has capitals, since
/// every call looks one up and names are almost always lowercase already.
pub fn service_key(service: &str) -> Cow<'_, str> {
    if service.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(service.to_ascii_lowercase())
    } else {
        Cow::Borrowed(service)
    }
}

/// Which nodes front each service, by lowercased name: a lookup on every request must not
/// scan every catalog (it took 29 µs with 10,000 services), and service names match without
/// regard to case, as Host headers do.
#[derive(Default, Debug)]
pub(crate) struct ServiceIndex {
    nodes: HashMap<String, Vec<PublicKey>>,
}

impl ServiceIndex {
    pub(crate) fn insert(&mut self, catalog: &Catalog) {
        for entry in &catalog.services {
            let nodes = self
                .nodes
                .entry(entry.service.to_ascii_lowercase())
                .or_default();
            if !nodes.contains(&catalog.key) {
                nodes.push(catalog.key);
            }
        }
    }

    pub(crate) fn remove(&mut self, catalog: &Catalog) {
        for entry in &catalog.services {
            let name = entry.service.to_ascii_lowercase();
            if let Some(nodes) = self.nodes.get_mut(&name) {
                nodes.retain(|k| *k != catalog.key);
                if nodes.is_empty() {
                    self.nodes.remove(&name);
                }
            }
        }
    }

    /// The nodes that front `service`.
    pub(crate) fn nodes(&self, service: &str) -> impl Iterator<Item = &PublicKey> {
        self.nodes
            .get(service_key(service).as_ref())
            .into_iter()
            .flatten()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
