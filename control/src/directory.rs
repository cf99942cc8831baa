//! The node's answer to "where is service X?": its own local services plus the routes its
//! peers announced over the mesh.

use std::net::SocketAddr;

use ferry_proxy::{Directory, Endpoint, EndpointId, Resolution, ServiceName, Target};
use ferry_tunnel::{Network, Protocol};

use crate::services::LocalServices;

/// The `mesh` registry: local services and what peers announce.
pub struct MeshDirectory {
    pub datacenter: String,
    pub local: LocalServices,
    pub network: Network,
}

impl Directory for MeshDirectory {
    fn resolve(&self, name: &ServiceName) -> Resolution {
        let mut endpoints = Vec::new();
        let here = name
            .datacenter
            .as_deref()
            .is_none_or(|dc| dc.eq_ignore_ascii_case(&self.datacenter));
        if here {
            if let Some(service) = self.local.get(&name.service) {
                endpoints.push(Endpoint {
                    id: EndpointId::Address(service.address()),
                    target: Target::Address(service.address()),
                    protocol: service.protocol(),
                    datacenter: self.datacenter.clone(),
                    healthy: service.healthy(),
                });
            }
        }
        for (route, peer) in self
            .network
            .lookup(&name.service, name.datacenter.as_deref())
        {
            endpoints.push(Endpoint {
                id: EndpointId::Node(route.key),
                target: Target::Node {
                    peer,
                    node: route.node,
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

    fn datacenter(&self) -> String {
        self.datacenter.clone()
    }
}
