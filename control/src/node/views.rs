//! What the admin API shows of a node, one struct a view, serialized as its JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use ferry_tunnel::PeerSnapshot;

use crate::registry::{NodeRecord, RegistryStatus};

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub datacenter: String,
    pub key: String,
    pub version: &'static str,
    pub ready: bool,
    /// Why the node is not ready, while it is not.
    pub reason: Option<String>,
    pub uptime_seconds: u64,
    /// The tunnel's bound UDP address.
    pub tunnel: String,
    /// The outbound listeners' bound addresses.
    pub outbounds: Vec<String>,
    /// How many peers are up.
    pub peers: usize,
    /// How many local services the node fronts.
    pub services: usize,
    /// How many routes the mesh gave it.
    pub routes: usize,
    /// The registry's kind.
    pub registry: &'static str,
}

/// One row of `GET /peers`.
#[derive(Debug, Serialize)]
pub struct PeerRow {
    pub key: String,
    pub name: String,
    pub datacenter: String,
    pub address: String,
    /// `up`, `connecting` or `down`.
    pub state: &'static str,
    pub rtt_ms: Option<f64>,
    /// `direct`, or `via GATEWAY`.
    pub path: String,
}

impl From<PeerSnapshot> for PeerRow {
    fn from(p: PeerSnapshot) -> PeerRow {
        PeerRow {
            key: p.key.to_string(),
            name: p.name,
            datacenter: p.datacenter,
            address: p.address,
            state: p.state.as_str(),
            rtt_ms: p.rtt.map(|r| r.as_secs_f64() * 1000.0),
            path: p.path,
        }
    }
}

/// One row of `GET /routes`.
#[derive(Debug, Serialize)]
pub struct RouteRow {
    pub service: String,
    pub datacenter: String,
    /// The node that fronts it; none for a plain address from the registry.
    pub node: Option<String>,
    pub endpoint: String,
    /// `local`, `registry KIND`, `direct`, or the gateway it is reached through.
    pub via: String,
    /// Milliseconds: round-trip times summed along the route's path.
    pub metric: f64,
    pub healthy: bool,
    /// The node's key, on mesh routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One row of `GET /services`.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub address: String,
    pub protocol: &'static str,
    pub healthy: bool,
    /// Whether its first health check has run.
    pub checked: bool,
    /// `tcp`, or `http PATH`.
    pub check: String,
}

/// `GET /registry`.
#[derive(Debug, Serialize)]
pub struct RegistryView {
    pub kind: &'static str,
    pub synced: bool,
    pub up: bool,
    pub error: Option<String>,
    pub errors: u64,
    pub nodes: Vec<NodeRecord>,
    /// Plain addresses by service.
    pub services: BTreeMap<String, Vec<String>>,
}

impl From<RegistryStatus> for RegistryView {
    fn from(status: RegistryStatus) -> RegistryView {
        RegistryView {
            kind: status.kind.as_str(),
            synced: status.synced,
            up: status.up,
            error: status.error,
            errors: status.errors,
            nodes: status.nodes,
            services: status
                .addresses
                .into_iter()
                .map(|(name, set)| (name, set.iter().map(|a| a.to_string()).collect()))
                .collect(),
        }
    }
}
