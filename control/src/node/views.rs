//! What the admin API shows of a node, one struct a view, serialized as its JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use ferry_tunnel::PeerSnapshot;

use crate::registry::{NodeRecord, RegistryStatus};

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The node's name, `[node] name`.
    pub name: String,
    /// The datacenter it is in.
    pub datacenter: String,
    /// Its public key, base64.
    pub key: String,
    /// The version of the running binary.
    pub version: &'static str,
    /// Whether it can serve, as `/readyz` says.
    pub ready: bool,
    /// Why the node is not ready, while it is not.
    pub reason: Option<String>,
    /// Whole seconds since it started.
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
    /// This node's certificate and the CAs it trusts, when it has them.
    pub certificates: Vec<CertificateView>,
}

/// A certificate in `GET /status`.
#[derive(Debug, Serialize)]
pub struct CertificateView {
    /// `node` (this node's own) or `ca`.
    pub kind: &'static str,
    /// The name it vouches for.
    pub name: String,
    /// The public key of the CA that signed it, base64.
    pub issuer: String,
    /// `FROM to UNTIL`, RFC 3339.
    pub valid: String,
    /// Whole seconds until it expires; negative once it has.
    pub expires_in_seconds: i64,
    /// Set within 7 days of its expiry, and after.
    pub warning: Option<String>,
}

/// One row of `GET /peers`.
#[derive(Debug, Serialize)]
pub struct PeerRow {
    /// The peer's public key, base64.
    pub key: String,
    /// Its node name; empty for a configured peer not linked yet.
    pub name: String,
    /// Its datacenter; empty, like `name`, until it is linked.
    pub datacenter: String,
    /// Its link's remote address, or where it is dialed; empty for a session through gateways.
    pub address: String,
    /// `up`, `connecting` or `down`.
    pub state: &'static str,
    /// Round-trip time in milliseconds; `None` while it is not up.
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
    /// The service name.
    pub service: String,
    /// The datacenter the endpoint is in.
    pub datacenter: String,
    /// The node that fronts it; none for a plain address from the registry.
    pub node: Option<String>,
    /// The workload's address on local and registry rows; the node's advertised tunnel
    /// address on mesh routes.
    pub endpoint: String,
    /// `local`, `registry KIND`, `direct`, or the gateway it is reached through.
    pub via: String,
    /// Milliseconds: round-trip times summed along the route's path.
    pub metric: f64,
    /// Whether calls may go to it; a registry's plain address always counts as healthy.
    pub healthy: bool,
    /// The node's key, on mesh routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One row of `GET /services`.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    /// The service name, `[[service]] name`.
    pub name: String,
    /// Where the workload listens.
    pub address: String,
    /// `http`, `grpc` or `tcp`.
    pub protocol: &'static str,
    /// Whether calls go to it: its first check has passed, and it has not failed two in a row
    /// since the last success.
    pub healthy: bool,
    /// Whether its first health check has run.
    pub checked: bool,
    /// `tcp`, or `http PATH`.
    pub check: String,
}

/// `GET /registry`.
#[derive(Debug, Serialize)]
pub struct RegistryView {
    /// The registry's kind, as `[registry] kind` names it.
    pub kind: &'static str,
    /// The backend has answered once: until then the node is not ready.
    pub synced: bool,
    /// The backend answered last time it was asked.
    pub up: bool,
    /// Why it did not, while it is down.
    pub error: Option<String>,
    /// How many times the backend has failed (lookups, watches, registrations) since start.
    pub errors: u64,
    /// The Ferry nodes it found, sorted by name; this node and other datacenters' are left out.
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
