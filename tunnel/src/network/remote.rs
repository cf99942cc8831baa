//! Reaching a node a call needs: over the link to it if there is one, else by dialing it on
//! first use. Nodes of this datacenter are dialed directly at the address they advertise;
//! others through gateways, by an end-to-end session.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::state::{now, Shared};
use super::{relaying, session};
use crate::header::StreamHeader;
use crate::identity::PublicKey;
use crate::link::{Link, TunnelStream};
use crate::peers::{LinkKind, Reach};
use crate::{Chain, Error};

/// A node that calls can go to; opens streams to it. Cheap to clone.
#[derive(Clone)]
pub struct RemoteNode {
    shared: Arc<Shared>,
    key: PublicKey,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteNode({})", self.key)
    }
}

impl RemoteNode {
    pub(super) fn new(shared: Arc<Shared>, key: PublicKey) -> RemoteNode {
        RemoteNode { shared, key }
    }

    /// The node's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Opens a stream to the node for one request or TCP connection. Nothing of the call has
    /// left when this fails: it may go elsewhere.
    pub async fn open(&self, header: &StreamHeader) -> Result<TunnelStream, Error> {
        let existing = self.shared.core().peers.link_for(&self.key);
        let Some(link) = existing else {
            return self.dial().await?.open(header).await;
        };
        match link.open(header).await {
            // The link closed, or began closing for idleness, between its last use and this
            // one, before the peers heard: they hear now, and the stream goes on another.
            Err(Error::LinkIdle | Error::LinkClosed(_)) => {
                self.shared
                    .update(|core| core.peers.closed(link.id(), now()));
                let other = self.shared.core().peers.link_for(&self.key);
                let link = match other {
                    Some(link) => link,
                    None => self.dial().await?,
                };
                link.open(header).await
            }
            opened => opened,
        }
    }

    /// A new link to the node, dialed once for every call that waits for it.
    async fn dial(&self) -> Result<Link, Error> {
        let (shared, key) = (self.shared.clone(), self.key);
        self.shared
            .dials
            .dial(key, move || async move {
                dial_for_calls(shared, key).await.map_err(Arc::new)
            })
            .await
            .map_err(Error::Shared)
    }
}

async fn dial_for_calls(shared: Arc<Shared>, key: PublicKey) -> Result<Link, Error> {
    let reach = {
        let core = shared.core();
        // A call that came as a link was being registered finds it here.
        if let Some(link) = core.peers.link_for(&key) {
            return Ok(link);
        }
        core.reach(&key)
    };
    let link = match reach {
        Reach::Unreachable(reason) => {
            return Err(Error::Unreachable {
                node: key.to_string(),
                reason,
            })
        }
        Reach::Relayed => {
            let link = shared
                .inner
                .connect(shared.relay.address_of(&key), &key)
                .await?;
            relaying::adopt(&shared, key, link.clone(), true);
            link
        }
        Reach::Direct {
            address,
            name,
            datacenter,
        } => {
            let link = shared.transport.dial(&address, &key).await?;
            // Named from the route table at once: `/peers` shows whom a call dialed before
            // the peer's hello arrives.
            shared.update(|core| {
                core.peers.registered(
                    key,
                    link.clone(),
                    LinkKind::ForCalls,
                    Some((&name, &datacenter)),
                )
            });
            let (running, shared) = (link.clone(), shared.clone());
            tokio::spawn(async move {
                if let Err(e) = session::run(shared, running, key).await {
                    debug!(peer = %key, error = %Chain(&e), "link ended");
                }
            });
            link
        }
    };
    tokio::spawn(close_when_idle(shared, link.clone()));
    Ok(link)
}

/// Closes a link dialed for calls once it has carried no stream for the idle time: a node
/// that called many others once would otherwise keep a link, and its keep-alives, to each.
/// The peers stop giving it to calls first; it closes as soon as no stream is open on it.
async fn close_when_idle(shared: Arc<Shared>, link: Link) {
    let idle = shared.idle_link;
    let mut closing = false;
    loop {
        // A closing link is watched closely: it goes as soon as its last stream ends.
        let wait = if closing {
            Duration::from_millis(100)
        } else {
            idle / 4
        };
        tokio::time::sleep(wait).await;
        if link.is_closed() {
            return;
        }
        if !closing {
            if link.idle_for().is_none_or(|for_| for_ < idle) {
                continue;
            }
            closing = shared.update(|core| core.peers.idle(link.id()));
            if !closing {
                return;
            }
        }
        if link.close_if_unused() {
            debug!(peer = ?link.peer_key(), "idle link closed");
            return;
        }
    }
}
