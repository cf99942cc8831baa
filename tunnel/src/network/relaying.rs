//! Inner sessions to nodes beyond gateways. A node reaches a node of another datacenter by
//! an end-to-end QUIC session (the same Noise IK handshake as any link) whose packets travel
//! as datagrams on outer links, each behind a header naming its destination and source
//! (`relay/datagram.rs`). Every node sends such a datagram to the neighbor its route table
//! names as the next hop; a gateway forwards what arrives for others the same way. Neither
//! gateway can read the inner packets: they are sealed with keys only the two ends hold.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::state::{now, Shared};
use crate::identity::PublicKey;
use crate::link::Link;
use crate::peers::LinkKind;
use crate::relay::datagram::{self, HEADER_LEN};
use crate::table::Neighbor;

/// Sends an inner packet of this node's toward `dst`. Called by the relay socket, from within
/// the inner connection's own lock.
pub(super) fn send_relayed(shared: &Shared, dst: PublicKey, packet: Bytes) {
    let datagram = datagram::encode(&dst, &shared.key, datagram::MAX_HOPS, &packet);
    forward(shared, &dst, datagram, None);
}

/// Sends a datagram for `dst` toward it, never back to the neighbor it came from.
fn forward(shared: &Shared, dst: &PublicKey, datagram: Bytes, came_from: Option<&PublicKey>) {
    let link = shared.core().relay_link(dst, came_from);
    match link {
        // A full buffer drops the oldest datagrams: the inner session sees loss and slows
        // down, as it would on a congested path.
        Some(link) => {
            if let Err(e) = link.send_datagram(datagram) {
                debug!(error = %e, "relay datagram dropped");
            }
        }
        None => debug!(%dst, "no route for a relay datagram"),
    }
}

/// Reads the datagrams a neighbor sends on an outer link: inner packets for this node go to
/// its relay socket; a gateway forwards the others.
pub(super) async fn carry(shared: Arc<Shared>, link: Link, neighbor: Neighbor) {
    while let Ok(bytes) = link.read_datagram().await {
        let Ok(relayed) = datagram::decode(&bytes) else {
            debug!(peer = %neighbor.key, "malformed relay datagram");
            continue;
        };
        // Only a gateway speaks for other nodes: a datagram a sidecar sends must be its own.
        // The first gateway thus checks every source, and no node can pose as another.
        if !neighbor.gateway && relayed.src != neighbor.key {
            debug!(peer = %neighbor.key, "relay datagram with a forged source");
            continue;
        }
        let (dst, src) = (relayed.dst, relayed.src);
        if dst == shared.key {
            shared.relay.deliver(src, bytes.slice(HEADER_LEN..));
        } else if shared.gateway {
            match datagram::spend_hop(bytes) {
                Some(bytes) => forward(&shared, &dst, bytes, Some(&neighbor.key)),
                None => debug!(%dst, %src, "relay datagram out of hops: a routing loop?"),
            }
        }
    }
}

/// Accepts inner sessions that nodes beyond gateways open to this one. The handshake admits
/// only keys the mesh vouches for, as on any link.
pub(super) async fn accept_inner(shared: Arc<Shared>) {
    while let Some(incoming) = shared.inner.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => {
                    let link = Link::new(conn);
                    let claimed = shared.relay.key_of(link.remote_address());
                    match link.peer_key() {
                        // The key the handshake proved must be the one the datagrams came
                        // from, or replies would go to someone else.
                        Some(key) if claimed == Some(key) => adopt(&shared, key, link, false),
                        _ => link.close("source mismatch"),
                    }
                }
                Err(e) => debug!(error = %e, "inner handshake failed"),
            }
        });
    }
}

/// Makes an inner session to `key` available for calls, and serves the streams its far end
/// opens until it closes. `dialed`: this node opened it (for calls).
pub(super) fn adopt(shared: &Arc<Shared>, key: PublicKey, link: Link, dialed: bool) {
    shared.update(|core| {
        let known = core.table.node(&key).map(|c| (&*c.node, &*c.datacenter));
        core.peers
            .registered(key, link.clone(), LinkKind::Relayed { dialed }, known)
    });
    let shared = shared.clone();
    tokio::spawn(async move {
        // The streams wait for the proxy's handler; the close is reported regardless.
        tokio::select! {
            _ = shared.streams.accept(link.clone(), key) => {}
            _ = link.closed() => {}
            _ = link.rekey_every(shared.rekey) => {}
        }
        shared.update(|core| core.peers.closed(link.id(), now()));
    });
}
