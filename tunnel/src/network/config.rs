//! What a node needs to join the network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::identity::{Identity, PublicKey};
use crate::noise::Trust;

/// A peer to dial, from the config or a registry.
#[derive(Clone, Debug)]
pub struct PeerAddress {
    /// `host:port` of the peer's tunnel.
    pub address: String,
    /// The key the peer must hold: the handshake (Noise IK) needs it up front.
    pub key: PublicKey,
}

/// What a node needs to join the network.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// This node's key: its identity.
    pub identity: Identity,
    /// The node's name, as its peers show it.
    pub name: String,
    /// The datacenter the node is in.
    pub datacenter: String,
    /// The UDP address the tunnel listens on.
    pub listen: SocketAddr,
    /// What nodes of this datacenter dial to reach this one; the listen address when unset.
    /// An unspecified IP (`0.0.0.0`) is filled in by each neighbor with the address it sees.
    pub advertise: Option<String>,
    /// Whether this node carries traffic between its datacenter and others.
    pub gateway: bool,
    /// Peers this node keeps linked for its whole life.
    pub peers: Vec<PeerAddress>,
    /// Keys allowed to open links to this node.
    pub trust: Arc<Trust>,
    /// A link this node opened for calls (to a node of its datacenter, or end to end through
    /// gateways) closes once no stream has been open on it this long; the next call dials
    /// again. Links to configured and discovered peers stay up.
    pub idle_link: Duration,
    /// How often each link updates its 1-RTT keys (a QUIC key update: both directions move
    /// to keys derived one-way from the old), so that a key stolen from memory reads at most
    /// this long of traffic back. WireGuard rekeys every 2 minutes.
    pub rekey: Duration,
}
