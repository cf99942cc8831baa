//! Where the proxy learns a service's endpoints. The node implements [`Directory`] over its
//! registry and the tunnel's routes; the proxy only asks.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use ferry_tunnel::Protocol;

use crate::error::ProxyError;
use crate::target::{ServiceName, Target};

/// Names an endpoint across lookups: the balancer keeps its latency figures under it. Cheap
/// to copy and hash, since every call uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointId {
    /// A plain address.
    Address(SocketAddr),
    /// A node, by its key: the same whichever route leads to it.
    Node(ferry_tunnel::PublicKey),
}

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointId::Address(addr) => write!(f, "{addr}"),
            EndpointId::Node(key) => write!(f, "node {key}"),
        }
    }
}

/// One place a service can be reached.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// What the balancer knows it by.
    pub id: EndpointId,
    /// How it is reached.
    pub target: Target,
    /// What the service speaks there.
    pub protocol: Protocol,
    /// The datacenter it is in: routing prefers this node's own.
    pub datacenter: String,
    /// Whether its health check passes.
    pub healthy: bool,
}

impl Endpoint {
    /// How far away the endpoint is: the route's cost, or nothing for a direct address.
    pub fn distance(&self) -> Duration {
        match &self.target {
            Target::Address(_) => Duration::ZERO,
            Target::Node { metric, .. } => *metric,
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Resolution {
    /// No registry knows the service (in that datacenter).
    NoRoute,
    /// Its endpoints, healthy or not.
    Endpoints(Vec<Endpoint>),
}

/// The node's view of services, as the proxy needs it.
pub trait Directory: Send + Sync + 'static {
    /// The endpoints of a service anywhere, or in its pinned datacenter.
    fn resolve(&self, name: &ServiceName) -> Resolution;
    /// A service this node fronts: its address and protocol, for calls peers forward here.
    fn local_service(&self, service: &str) -> Option<(SocketAddr, Protocol)>;
    /// The datacenter this node is in, which routing prefers.
    fn datacenter(&self) -> &str;
    /// Asked when [`Directory::resolve`] found nothing: a future that ends once an answer
    /// still on its way has come (a registry asked about a name for the first time, a node
    /// just discovered whose routes have not arrived), after which `resolve` is asked again.
    /// `None`, the default, when nothing is on its way. It runs within the call's deadline.
    fn settle(&self, _name: &ServiceName) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        None
    }
    /// A call could not connect to `service` at `address` (refused, or timed out): passive
    /// evidence that it may be down, which an active health check can confirm at once rather
    /// than at its next interval. The default ignores it.
    fn unreachable(&self, _service: &str, _address: SocketAddr) {}
}

/// The endpoints a call to `name` may use, or the error that answers it. Endpoints the call
/// already `tried` are left out while others are eligible, so a retry lands elsewhere: on
/// another endpoint of the datacenter, else in the nearest other datacenter that has one.
pub(crate) async fn candidates(
    directory: &dyn Directory,
    name: &ServiceName,
    tried: &[EndpointId],
) -> Result<Vec<Endpoint>, ProxyError> {
    let mut resolution = directory.resolve(name);
    if matches!(resolution, Resolution::NoRoute) {
        if let Some(settled) = directory.settle(name) {
            settled.await;
            resolution = directory.resolve(name);
        }
    }
    let endpoints = match resolution {
        Resolution::NoRoute => {
            return Err(ProxyError::NoRoute {
                service: name.to_string(),
            })
        }
        Resolution::Endpoints(endpoints) => endpoints,
    };
    let local_dc = directory.datacenter();
    if !tried.is_empty() {
        let untried: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| !tried.contains(&e.id))
            .cloned()
            .collect();
        if let Some(eligible) = eligible(untried, local_dc) {
            return Ok(eligible);
        }
    }
    eligible(endpoints, local_dc).ok_or_else(|| ProxyError::NoHealthyEndpoint {
        service: name.to_string(),
    })
}

/// The endpoints a call may go to, by the routing rule: healthy ones in the local datacenter;
/// when there are none, healthy ones in the nearest datacenter that has any. `None` when no
/// endpoint is healthy. Filters in place: it runs on every call.
pub(crate) fn eligible(mut endpoints: Vec<Endpoint>, local_dc: &str) -> Option<Vec<Endpoint>> {
    endpoints.retain(|e| e.healthy);
    if endpoints.iter().any(|e| e.datacenter == local_dc) {
        endpoints.retain(|e| e.datacenter == local_dc);
        return Some(endpoints);
    }
    let nearest = endpoints
        .iter()
        .min_by_key(|e| e.distance())?
        .datacenter
        .clone();
    endpoints.retain(|e| e.datacenter == nearest);
    Some(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16, dc: &str, healthy: bool) -> Endpoint {
        Endpoint {
            id: EndpointId::Address(([127, 0, 0, 1], port).into()),
            target: Target::Address(([127, 0, 0, 1], 1).into()),
            protocol: Protocol::Http,
            datacenter: dc.into(),
            healthy,
        }
    }

    fn ports(v: Option<Vec<Endpoint>>) -> Option<Vec<u16>> {
        v.map(|v| {
            v.into_iter()
                .map(|e| match e.id {
                    EndpointId::Address(a) => a.port(),
                    EndpointId::Node(_) => 0,
                })
                .collect()
        })
    }

    #[test]
    fn local_healthy_endpoints_come_first() {
        let eps = [ep(1, "dc1", true), ep(2, "dc2", true), ep(3, "dc1", false)];
        assert_eq!(ports(eligible(eps.to_vec(), "dc1")), Some(vec![1]));
    }

    #[test]
    fn another_datacenter_serves_when_no_local_endpoint_is_healthy() {
        let eps = [ep(1, "dc1", false), ep(2, "dc2", true)];
        assert_eq!(ports(eligible(eps.to_vec(), "dc1")), Some(vec![2]));
    }

    /// A directory holding a fixed list of endpoints, seen from dc1.
    struct Fixed(Vec<Endpoint>);

    impl Directory for Fixed {
        fn resolve(&self, _: &ServiceName) -> Resolution {
            Resolution::Endpoints(self.0.clone())
        }
        fn local_service(&self, _: &str) -> Option<(SocketAddr, Protocol)> {
            None
        }
        fn datacenter(&self) -> &str {
            "dc1"
        }
    }

    #[tokio::test]
    async fn a_retry_avoids_tried_endpoints_and_falls_over_to_the_nearest_datacenter() {
        let name = ServiceName {
            service: "greeter".into(),
            datacenter: None,
        };
        let directory = Fixed(vec![
            ep(1, "dc1", true),
            ep(2, "dc1", true),
            ep(3, "dc2", true),
        ]);
        let pick = |tried: Vec<u16>| {
            let tried: Vec<EndpointId> = tried.iter().map(|p| ep(*p, "", true).id).collect();
            let directory = &directory;
            let name = &name;
            async move { ports(candidates(directory, name, &tried).await.ok()) }
        };
        assert_eq!(pick(vec![]).await, Some(vec![1, 2]));
        assert_eq!(pick(vec![1]).await, Some(vec![2]));
        assert_eq!(
            pick(vec![1, 2]).await,
            Some(vec![3]),
            "dc1 tried: on to dc2"
        );
        assert_eq!(
            pick(vec![1, 2, 3]).await,
            Some(vec![1, 2]),
            "all tried: try again where the rule says"
        );
    }

    #[test]
    fn nothing_healthy_is_none() {
        assert!(eligible(vec![ep(1, "dc1", false)], "dc1").is_none());
        assert!(eligible(vec![], "dc1").is_none());
    }
}
