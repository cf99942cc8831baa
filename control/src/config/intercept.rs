//! `[intercept]`: applications that know nothing of Ferry.

use std::net::SocketAddr;

use serde::{Serialize, Serializer};

use ferry_proxy::intercept::Network;

/// `[intercept]`: Ferry's DNS for service names, and where redirected connections land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterceptConfig {
    /// Whether the node serves interception's DNS (and, once redirected, its connections).
    pub enabled: bool,
    /// Where intercepted TCP connections land.
    pub listen: SocketAddr,
    /// Where Ferry's DNS answers (UDP and TCP).
    pub dns: SocketAddr,
    /// The addresses service names resolve to.
    #[serde(serialize_with = "serialize_network")]
    pub virtual_network: Network,
    /// Where names outside the mesh are asked; empty: the name servers of `/etc/resolv.conf`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<SocketAddr>,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 7704)),
            dns: SocketAddr::from(([127, 0, 0, 1], 53)),
            // 240.0.0.0/16, of the reserved 240.0.0.0/4: never routed on the internet, so a
            // virtual address can never be a real destination.
            virtual_network: Network::DEFAULT,
            upstreams: Vec::new(),
        }
    }
}

fn serialize_network<S: Serializer>(network: &Network, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(network)
}
