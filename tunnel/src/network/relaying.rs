//! Inner sessions to nodes beyond gateways. A node reaches a node of another datacenter by
//! an end-to-end QUIC session (the same Noise IK handshake as any link) whose packets travel
//! as datagrams on outer links, each behind a header naming its destination and source
//! (`relay/datagram.rs`). Every node sends such a datagram to the neighbor its route table
//! names as the next hop; a gateway forwards what arrives for others the same way. Neither
//! gateway can read the inner packets: they are sealed with keys only the two ends hold.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::reach::close_when_idle;
use super::session::accept_streams;
use super::{lock, Shared};
use crate::identity::PublicKey;
use crate::link::Link;
use crate::relay::datagram::{self, HEADER_LEN};
use crate::table::Neighbor;
use crate::Error;

impl Shared {
    /// Sends an inner packet of this node's toward `dst`.
    pub(super) fn send_relayed(&self, dst: PublicKey, packet: Bytes) {
        let datagram = datagram::encode(&dst, &self.key, datagram::MAX_HOPS, &packet);
        self.forward(&dst, datagram, None);
    }

    /// Sends a datagram for `dst` on the link to it, else to the next hop the table names;
    /// never back to the neighbor it came from, which would make a loop.
    fn forward(&self, dst: &PublicKey, datagram: Bytes, came_from: Option<&PublicKey>) {
        let link = self.direct(dst).or_else(|| {
            let hop = lock(&self.routing).table.next_hop(dst)?;
            if Some(&hop) == came_from {
                return None;
            }
            self.direct(&hop)
        });
        match link {
            // A full buffer drops the oldest datagrams: the inner session sees loss and
            // slows down, as it would on a congested path.
            Some(link) => {
                if let Err(e) = link.send_datagram(datagram) {
                    debug!(error = %e, "relay datagram dropped");
                }
            }
            None => debug!(%dst, "no route for a relay datagram"),
        }
    }

    /// Opens an inner session to `key`, through the gateways toward it.
    pub(super) async fn dial_relayed(self: &Arc<Self>, key: &PublicKey) -> Result<Link, Error> {
        let link = self.inner.connect(self.relay.address_of(key), key).await?;
        self.adopt_relayed(*key, link.clone());
        tokio::spawn(close_when_idle(link.clone(), self.idle_link));
        Ok(link)
    }

    /// Keeps an inner session for calls, and serves the streams its far end opens.
    fn adopt_relayed(self: &Arc<Self>, key: PublicKey, link: Link) {
        if let Some(old) = lock(&self.relayed).insert(key, link.clone()) {
            if old.id() != link.id() {
                old.connection().close(0u32.into(), b"replaced");
            }
        }
        let shared = self.clone();
        tokio::spawn(async move {
            accept_streams(shared.clone(), link.clone(), key).await;
            let mut relayed = lock(&shared.relayed);
            if relayed.get(&key).is_some_and(|l| l.id() == link.id()) {
                relayed.remove(&key);
            }
        });
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
                Some(bytes) => shared.forward(&dst, bytes, Some(&neighbor.key)),
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
                        Some(key) if claimed == Some(key) => shared.adopt_relayed(key, link),
                        _ => link.connection().close(0u32.into(), b"source mismatch"),
                    }
                }
                Err(e) => debug!(error = %e, "inner handshake failed"),
            }
        });
    }
}
