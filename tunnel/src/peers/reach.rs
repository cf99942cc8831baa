//! How a call reaches a node it has no link to: decided from what the route table says.

use crate::catalog::Catalog;
use crate::identity::PublicKey;
use crate::table::same_dc;

/// How a node that a call needs is reached when no link to it is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Dial it at the address it advertises to its datacenter.
    Direct {
        address: String,
        name: String,
        datacenter: String,
    },
    /// Open an end-to-end session through gateways.
    Relayed,
    /// Not at all, for this reason.
    Unreachable(&'static str),
}

/// How to reach node `key` for a call, from what the route table says of it: `node`, its
/// catalog, and `next_hop`, the neighbor its best route came from. `here` is this node's
/// datacenter.
pub(crate) fn reach(
    key: &PublicKey,
    here: &str,
    node: Option<&Catalog>,
    next_hop: Option<PublicKey>,
) -> Reach {
    let Some(node) = node else {
        return Reach::Unreachable("no route to the node");
    };
    // A route the node gave itself lasts only as long as its link, which has just closed
    // (else the call would have found it): the route is about to be withdrawn. Dialing a
    // node that is most likely dead would hold the call for a handshake timeout.
    if next_hop == Some(*key) {
        return Reach::Unreachable("the link to the node has closed");
    }
    if !same_dc(&node.datacenter, here) || !dialable(&node.address) {
        return Reach::Relayed;
    }
    Reach::Direct {
        address: node.address.clone(),
        name: node.node.clone(),
        datacenter: node.datacenter.clone(),
    }
}

/// Whether an advertised address can be dialed: not empty, and not an unspecified IP (which
/// would dial this very host) that no node with a direct link has filled in.
fn dialable(address: &str) -> bool {
    match address.parse::<std::net::SocketAddr>() {
        Ok(addr) => !addr.ip().is_unspecified(),
        Err(_) => !address.is_empty(),
    }
}
