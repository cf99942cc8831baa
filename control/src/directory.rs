//! The node's answer to "where is service X?", composed of three sources:
//!
//! 1. the local services this node fronts;
//! 2. the plain addresses its registry plugin holds (`static`, `dns`): dialed directly, in
//!    this datacenter, healthy unless the plugin says otherwise;
//! 3. the routes peers announced over the mesh, which carry every other datacenter whatever
//!    the plugin, and this datacenter's nodes that `mesh`, `etcd` or `mdns` linked to.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_proxy::{Directory, Endpoint, EndpointId, Resolution, ServiceName, Target};
use ferry_tunnel::{service_key, Network, Protocol};

use crate::registry::RegistryCache;
use crate::services::LocalServices;

/// A first lookup waits at most this long for an answer on its way (then: no route). Enough
/// for mDNS, whose responders may hold an answer up to a second (RFC 6762 §6 rate limit).
const SETTLE_MAX: Duration = Duration::from_millis(1500);
/// How often a waiting lookup looks at the route table, which has no change signal; the
/// registry's own answers wake it at once.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Local services, the registry's plain addresses and the mesh's routes.
pub struct NodeDirectory {
    /// This node's datacenter: a name pinned to another skips the local sources.
    pub datacenter: String,
    /// The services this node fronts.
    pub local: LocalServices,
    /// The tunnel network, whose route table holds what peers announced.
    pub network: Network,
    /// The registry plugin's cache: its plain addresses, and whether an answer is still on
    /// its way.
    pub registry: Arc<RegistryCache>,
}

impl NodeDirectory {
    fn here(&self, name: &ServiceName) -> bool {
        name.datacenter
            .as_deref()
            .is_none_or(|dc| dc.eq_ignore_ascii_case(&self.datacenter))
    }
}

impl Directory for NodeDirectory {
    fn resolve(&self, name: &ServiceName) -> Resolution {
        let mut endpoints = Vec::new();
        if self.here(name) {
            if let Some(service) = self.local.get(&name.service) {
                endpoints.push(Endpoint {
                    id: EndpointId::Address(service.address()),
                    target: Target::Address(service.address()),
                    protocol: service.protocol(),
                    datacenter: self.datacenter.clone(),
                    healthy: service.healthy(),
                });
            }
            for record in self.registry.addresses(&service_key(&name.service)) {
                endpoints.push(Endpoint {
                    id: EndpointId::Address(record.address),
                    target: Target::Address(record.address),
                    protocol: record.protocol,
                    datacenter: self.datacenter.clone(),
                    healthy: true,
                });
            }
        }
        for (route, remote) in self
            .network
            .lookup(&name.service, name.datacenter.as_deref())
        {
            endpoints.push(Endpoint {
                id: EndpointId::Node(route.key),
                target: Target::Node {
                    remote,
                    name: route.node,
                    metric: route.metric,
                },
                protocol: route.protocol,
                datacenter: route.datacenter,
                healthy: route.healthy,
            });
        }
        if endpoints.is_empty() {
            Resolution::NoRoute
        } else {
            Resolution::Endpoints(endpoints)
        }
    }

    fn local_service(&self, service: &str) -> Option<(SocketAddr, Protocol)> {
        self.local.get(service).map(|s| (s.address(), s.protocol()))
    }

    fn datacenter(&self) -> &str {
        &self.datacenter
    }

    fn unreachable(&self, service: &str, address: SocketAddr) {
        self.local.suspect(service, address);
    }

    fn settle(&self, name: &ServiceName) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let service = name.service.to_ascii_lowercase();
        if !self.here(name) || !self.registry.converging(&service) {
            return None;
        }
        let registry = self.registry.clone();
        let network = self.network.clone();
        let datacenter = name.datacenter.clone();
        Some(Box::pin(async move {
            let mut changes = registry.changes();
            let wait = async {
                loop {
                    let found = !registry.addresses(&service).is_empty()
                        || !network.lookup(&service, datacenter.as_deref()).is_empty();
                    if found || !registry.converging(&service) {
                        return;
                    }
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep(SETTLE_POLL) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(SETTLE_MAX, wait).await;
        }))
    }
}
