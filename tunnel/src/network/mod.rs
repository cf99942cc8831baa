//! The network: links to peers kept alive, routes exchanged over them through the route
//! [`Table`](crate::Table), links to other nodes opened when a call needs one, and the streams
//! peers open handed to the proxy's [`StreamHandler`].
//!
//! The decisions are made by two state machines without I/O — the route table and the peers
//! (`crate::peers`) — held under one lock in `state.rs`. Around them, thin async drivers, each
//! depending only on those listed before it:
//!
//! - `config.rs`: what a node needs to join;
//! - `streams.rs`: the streams peers open, handed to the proxy;
//! - `state.rs`: the table, the peers and the sessions' update queues, under one lock, and the
//!   handles every driver shares;
//! - `relaying.rs`: relay datagrams on outer links, and inner sessions through gateways;
//! - `session.rs`: one link's life — hellos, updates, RTT samples, its streams and datagrams;
//! - `remote.rs`: [`RemoteNode`], which opens streams to a node, dialing it on first use;
//! - `driver.rs`: performs the peers' actions (dials, closes) and fires their timers, and
//!   takes the links other nodes open.

mod config;
mod driver;
mod relaying;
mod remote;
mod session;
mod state;
mod streams;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use self::state::{now, Core, Parts, Shared};
use crate::catalog::{Catalog, CatalogEntry, CatalogSubscription};
use crate::identity::PublicKey;
use crate::noise::Trust;
use crate::peers::PeerState;
use crate::relay::Relay;
use crate::route::{Route, SubscriptionRoute};
use crate::transport::Transport;
use crate::Error;

pub use config::{NetworkConfig, PeerAddress};
pub use remote::RemoteNode;
pub use streams::{IncomingStream, StreamHandler};

/// A peer as the admin API shows it.
#[derive(Clone, Debug)]
pub struct PeerSnapshot {
    /// The peer's key.
    pub key: PublicKey,
    /// Its name, from its hello or the route table; empty until known.
    pub name: String,
    /// Its datacenter, likewise.
    pub datacenter: String,
    /// The address of its link, or where it is dialed.
    pub address: String,
    /// Where it is in its life.
    pub state: PeerState,
    /// The round-trip time of the link calls use, while one is up.
    pub rtt: Option<Duration>,
    /// `direct`, or `via NAME` for a node reached through a gateway.
    pub path: String,
}

/// How many incoming handshakes a node accepted, answered with a Retry, and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionCounts {
    /// Handshakes taken on.
    pub accepted: u64,
    /// Handshakes answered with a Retry: the client must prove its address first.
    pub retried: u64,
    /// Handshakes dropped unanswered under a flood.
    pub dropped: u64,
}

/// This node's place in the mesh. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

impl Network {
    /// Binds the tunnel, starts accepting links and dialing the configured peers. Must be
    /// called within a tokio runtime.
    pub fn start(config: NetworkConfig) -> Result<Network, Error> {
        let transport = Transport::bind(config.listen, &config.identity, config.trust.clone())?;
        // The relay's packets go out through the network, which does not exist yet: the
        // callback finds it through a cell filled in below.
        let network = Arc::new(std::sync::OnceLock::<std::sync::Weak<Shared>>::new());
        let found = network.clone();
        let relay = Relay::new(Arc::new(move |dst, packet| {
            if let Some(shared) = found.get().and_then(|w| w.upgrade()) {
                relaying::send_relayed(&shared, dst, packet);
            }
        }));
        let inner = Transport::over_relay(&relay, &config.identity, config.trust.clone())?;
        let me = Catalog {
            node: config.name,
            datacenter: config.datacenter,
            key: config.identity.public(),
            address: config
                .advertise
                .unwrap_or_else(|| transport_address(&transport, config.listen)),
            gateway: config.gateway,
            services: Vec::new(),
            subscriptions: Vec::new(),
        };
        let mut core = Core::new(me.clone(), config.trust.clone(), jitter_seed(&me.key));
        for peer in config.peers {
            core.peers.configure(peer.key, peer.address, now());
        }
        let shared = Arc::new(Shared::new(Parts {
            key: me.key,
            gateway: me.gateway,
            transport,
            relay,
            inner,
            trust: config.trust,
            idle_link: config.idle_link,
            rekey: config.rekey,
            core,
        }));
        let _ = network.set(Arc::downgrade(&shared));
        tokio::spawn(driver::drive(shared.clone()));
        tokio::spawn(driver::accept_links(shared.clone()));
        tokio::spawn(relaying::accept_inner(shared.clone()));
        Ok(Network { shared })
    }

    /// The UDP address the tunnel is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.shared.transport.local_addr()
    }

    /// This node's public key.
    pub fn key(&self) -> PublicKey {
        self.shared.key
    }

    /// Sets the services this node announces; peers hear of a change at once.
    pub fn announce(&self, services: Vec<CatalogEntry>) {
        self.change_catalog(|me| me.services = services);
    }

    /// Sets the subscriptions this node announces; peers hear of a change at once, and of a
    /// withdrawal as fast as of an announcement.
    pub fn announce_subscriptions(&self, subscriptions: Vec<CatalogSubscription>) {
        self.change_catalog(|me| me.subscriptions = subscriptions);
    }

    /// Changes this node's own catalog; the table tells every neighbor when it differs.
    fn change_catalog(&self, change: impl FnOnce(&mut Catalog)) {
        self.shared.update(|core| {
            core.route(|table| {
                let mut me = (**table.me()).clone();
                change(&mut me);
                ((), table.set_local(me))
            })
        });
    }

    /// Every subscription other nodes announced, each with a handle that opens streams to
    /// its node.
    pub fn subscriptions(&self) -> Vec<(SubscriptionRoute, RemoteNode)> {
        let subscriptions = self.shared.core().table.subscriptions();
        subscriptions
            .into_iter()
            .map(|s| {
                let node = RemoteNode::new(self.shared.clone(), s.key);
                (s, node)
            })
            .collect()
    }

    /// Routes to `service` (in `datacenter` only, when given), each with a handle that
    /// opens streams to its node.
    pub fn lookup(&self, service: &str, datacenter: Option<&str>) -> Vec<(Route, RemoteNode)> {
        let routes = self.shared.core().table.lookup(service, datacenter);
        routes
            .into_iter()
            .map(|r| {
                let node = RemoteNode::new(self.shared.clone(), r.key);
                (r, node)
            })
            .collect()
    }

    /// Every route the node knows, for the admin API.
    pub fn routes(&self) -> Vec<Route> {
        self.shared.core().table.routes()
    }

    /// The name of a node by its key, for showing which gateway a route goes through.
    pub fn node_name(&self, key: &PublicKey) -> Option<String> {
        self.shared.core().table.node(key).map(|c| c.node.clone())
    }

    /// The address a node advertises for its datacenter's peers to dial.
    pub fn node_address(&self, key: &PublicKey) -> Option<String> {
        self.shared
            .core()
            .table
            .node(key)
            .map(|c| c.address.clone())
    }

    /// The peers: those linked or dialed, and configured or discovered ones not linked yet.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        let (views, named) = {
            let core = self.shared.core();
            let views = core.peers.views();
            // What the table knows of relayed peers: their names, and the gateway they are
            // reached through.
            let named: Vec<_> = views
                .iter()
                .map(|v| {
                    let node = core.table.node(&v.key);
                    let via = core
                        .table
                        .next_hop(&v.key)
                        .and_then(|hop| core.table.node(&hop))
                        .map(|c| c.node.clone());
                    (node.map(|c| (c.node.clone(), c.datacenter.clone())), via)
                })
                .collect();
            (views, named)
        };
        // Links are asked for their address and RTT only now: never under the lock.
        let mut peers: Vec<PeerSnapshot> = views
            .into_iter()
            .zip(named)
            .map(|(view, (node, via))| {
                let (name, datacenter) = match node {
                    Some(node) if view.name.is_empty() => node,
                    _ => (view.name, view.datacenter),
                };
                let (address, rtt, path) = match (&view.link, view.state) {
                    (Some(link), PeerState::Relayed) => (
                        String::new(),
                        Some(link.rtt()),
                        format!("via {}", via.unwrap_or_default()),
                    ),
                    (Some(link), _) => (
                        link.remote_address().to_string(),
                        Some(link.rtt()),
                        "direct".into(),
                    ),
                    (None, _) => (view.address.unwrap_or_default(), None, "direct".into()),
                };
                PeerSnapshot {
                    key: view.key,
                    name,
                    datacenter,
                    address,
                    state: view.state,
                    rtt,
                    path,
                }
            })
            .collect();
        peers.sort_by(|a, b| (&a.address, a.key.0).cmp(&(&b.address, b.key.0)));
        peers
    }

    /// Starts serving the streams peers open, with `handler`.
    pub fn serve_streams(&self, handler: StreamHandler) {
        self.shared.streams.serve_with(handler);
    }

    /// Incoming handshakes so far, by decision.
    pub fn admission_counts(&self) -> AdmissionCounts {
        let [accepted, retried, dropped] = &self.shared.admitted;
        AdmissionCounts {
            accepted: accepted.load(Ordering::Relaxed),
            retried: retried.load(Ordering::Relaxed),
            dropped: dropped.load(Ordering::Relaxed),
        }
    }

    /// The keys allowed to open links to this node; replace them on reload.
    pub fn trust(&self) -> &Trust {
        &self.shared.trust
    }

    /// Whether every configured peer has been tried once: linked and its whole table read,
    /// or found unreachable. A node is not ready before, lest its first calls miss routes it
    /// is about to learn; it never waits longer, lest an unreachable peer hold it back.
    pub fn settled(&self) -> bool {
        self.shared.core().peers.settled()
    }

    /// Dials a peer that a registry discovered, and trusts its key, until
    /// [`Network::remove_peer`]. The same key at the same address again changes nothing; at a
    /// new address, the peer is dialed there instead.
    pub fn add_peer(&self, peer: PeerAddress) {
        self.shared.trust.add_discovered(peer.key);
        self.shared
            .update(|core| core.peers.discover(peer.key, peer.address, now()));
    }

    /// Forgets a discovered peer: stops dialing it, closes its links (withdrawing its routes)
    /// and stops trusting its key.
    pub fn remove_peer(&self, key: &PublicKey) {
        self.shared.trust.remove_discovered(key);
        self.shared.update(|core| core.peers.forget(key));
    }

    /// Closes every link, telling peers to withdraw this node's routes now rather than after
    /// the idle timeout.
    pub fn close(&self) {
        self.shared.stop();
        self.shared.inner.close();
        self.shared.transport.close();
    }
}

/// The address peers of this datacenter dial when none is advertised: the bound one.
fn transport_address(transport: &Transport, listen: SocketAddr) -> String {
    transport.local_addr().unwrap_or(listen).to_string()
}

/// A seed for the jitter of redials that differs between nodes, so that nodes that lost each
/// other do not redial in step.
fn jitter_seed(key: &PublicKey) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(key.0)
}
