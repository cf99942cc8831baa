//! Reaching a node a call needs: over the link to it if there is one, else by dialing it on
//! first use. Nodes of this datacenter are dialed directly at the address they advertise.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::session::{register, run_registered};
use super::{dial, lock, Shared};
use crate::header::StreamHeader;
use crate::identity::PublicKey;
use crate::link::{Link, TunnelStream};
use crate::table::same_dc;
use crate::Error;

/// A node that calls can go to. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
    key: PublicKey,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peer({})", self.key)
    }
}

impl Peer {
    pub(super) fn new(shared: Arc<Shared>, key: PublicKey) -> Peer {
        Peer { shared, key }
    }

    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Opens a stream to the node for one request or TCP connection.
    pub async fn open(&self, header: &StreamHeader) -> Result<TunnelStream, Error> {
        self.link().await?.open(header).await
    }

    async fn link(&self) -> Result<Link, Error> {
        if let Some(link) = self.shared.link(&self.key) {
            return Ok(link);
        }
        // Calls that find no link wait for one dial rather than each making their own.
        let turn = lock(&self.shared.reaching)
            .entry(self.key)
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        if let Some(link) = self.shared.link(&self.key) {
            return Ok(link);
        }
        let result = self.dial().await;
        lock(&self.shared.reaching).remove(&self.key);
        result
    }

    async fn dial(&self) -> Result<Link, Error> {
        let shared = &self.shared;
        let (catalog, here, learned_from_itself) = {
            let routing = lock(&shared.routing);
            let here = routing.table.me().datacenter.clone();
            let catalog = routing.table.node(&self.key).cloned();
            let hop = routing.table.next_hop(&self.key);
            (catalog, here, hop == Some(self.key))
        };
        let catalog = catalog.ok_or_else(|| Error::Connect {
            addr: self.key.to_string(),
            reason: "no route to the node".into(),
        })?;
        // A route the node gave itself lasts only as long as its link, which has just closed:
        // the route is about to be withdrawn. Dialing a node that is most likely dead would
        // hold the call for a handshake timeout.
        if learned_from_itself {
            return Err(Error::Connect {
                addr: catalog.node.clone(),
                reason: "the link to the node has closed".into(),
            });
        }
        if !same_dc(&catalog.datacenter, &here) || catalog.address.is_empty() {
            return shared.dial_relayed(&self.key).await;
        }
        let link = dial::connect(shared, &catalog.address, &self.key).await?;
        // Named from the route table at once: `/peers` shows whom a call dialed before the
        // peer's hello arrives.
        let key = register(shared, &link, &catalog.node, &catalog.datacenter)?;
        let (running, idle) = (link.clone(), shared.idle_link);
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = run_registered(&shared, running, key, None).await {
                debug!(peer = %key, error = %e, "link ended");
            }
        });
        tokio::spawn(close_when_idle(link.clone(), idle));
        Ok(link)
    }
}

/// Closes a link dialed for calls once it has carried no stream for `idle`: a node that
/// called many others once would otherwise keep a link, and its keep-alives, to each.
pub(super) async fn close_when_idle(link: Link, idle: Duration) {
    let mut tick = tokio::time::interval(idle / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if link.is_closed() {
            return;
        }
        if link.close_if_idle(idle) {
            debug!(peer = ?link.peer_key(), "idle link closed");
            return;
        }
    }
}
