//! The network: links to peers kept alive, routes exchanged over them through the route
//! [`Table`], links to other nodes opened when a call needs one, and the streams peers open
//! handed to the proxy's [`StreamHandler`].
//!
//! - `session.rs`: one link's life — hellos, the update streams, RTT samples, the streams
//!   the peer opens, and the withdrawal of its routes when it ends.
//! - `dial.rs`: links to configured peers (redialed with backoff) and links peers open.
//! - `reach.rs`: [`Peer`], a handle that opens streams to a node, dialing it on first use.
//! - `relaying.rs`: inner sessions to nodes beyond gateways, and the forwarding of their
//!   datagrams by gateways.

mod dial;
mod reach;
mod relaying;
mod session;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::catalog::{Catalog, CatalogEntry};
use crate::header::StreamHeader;
use crate::identity::{Identity, PublicKey};
use crate::link::{Link, TunnelStream};
use crate::noise::Trust;
use crate::relay::Relay;
use crate::route::Route;
use crate::table::{Outgoing, SessionId, Table};
use crate::transport::Transport;
use crate::update::Update;
use crate::Error;

pub use reach::Peer;

/// A peer to dial, from the config.
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
    pub identity: Identity,
    pub name: String,
    pub datacenter: String,
    pub listen: SocketAddr,
    /// What nodes of this datacenter dial to reach this one; the listen address when unset.
    /// An unspecified IP (`0.0.0.0`) is filled in by each neighbor with the address it sees.
    pub advertise: Option<String>,
    /// Whether this node carries traffic between its datacenter and others.
    pub gateway: bool,
    pub peers: Vec<PeerAddress>,
    /// Keys allowed to open links to this node.
    pub trust: Arc<Trust>,
    /// A link this node opened for calls (to a node of its datacenter, or end to end through
    /// gateways) closes once no stream has been open on it this long; the next call dials
    /// again. Links to configured and discovered peers stay up.
    pub idle_link: Duration,
}

/// Serves the streams peers open: the proxy's inbound side. Each stream is handed over on the
/// task that read its header, so a call costs no extra task or channel hop.
pub type StreamHandler =
    Arc<dyn Fn(IncomingStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A stream a peer opened, with its header read.
#[derive(Debug)]
pub struct IncomingStream {
    pub header: StreamHeader,
    pub stream: TunnelStream,
    pub peer: PublicKey,
}

/// A peer as the admin API shows it.
#[derive(Clone, Debug)]
pub struct PeerSnapshot {
    pub key: Option<PublicKey>,
    pub name: String,
    pub datacenter: String,
    pub address: String,
    /// `up`, `connecting` or `down`.
    pub state: &'static str,
    pub rtt: Option<Duration>,
    /// `direct`, or `via NAME` for a node reached through a gateway.
    pub path: String,
}

/// How many incoming handshakes a node accepted, answered with a Retry, and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionCounts {
    pub accepted: u64,
    pub retried: u64,
    pub dropped: u64,
}

/// A live link and who is at the other end.
struct LinkEntry {
    link: Link,
    /// Filled in from the peer's hello.
    name: String,
    datacenter: String,
}

/// The route table and the update queue of each session, under one lock: updates must be
/// queued in the order the table produced them, or a neighbor could hear an old
/// announcement after a newer one.
struct Routing {
    table: Table,
    sessions: HashMap<SessionId, mpsc::Sender<Update>>,
}

/// A session whose neighbor reads updates this slowly is cut: its link closes, and it
/// starts afresh when it redials.
const UPDATE_QUEUE: usize = 1 << 16;

impl Routing {
    /// Queues each update for its session, and passes the table's membership changes to
    /// the trust set. Returns the nodes that left the table.
    fn send(&mut self, out: Vec<Outgoing>, trust: &Trust) -> Vec<PublicKey> {
        for o in out {
            let full = match self.sessions.get(&o.to) {
                Some(queue) => queue.try_send(o.update).is_err(),
                None => false,
            };
            if full {
                // Dropping the queue ends the session's writer, which closes the link.
                self.sessions.remove(&o.to);
            }
        }
        let mut left = Vec::new();
        for (key, joined) in self.table.take_membership() {
            trust.vouch(key, joined);
            if !joined {
                left.push(key);
            }
        }
        left
    }
}

struct Shared {
    transport: Transport,
    key: PublicKey,
    gateway: bool,
    /// The socket of inner sessions, whose packets travel as datagrams through gateways.
    relay: Relay,
    inner: Transport,
    /// Inner sessions by the node at their far end.
    relayed: Mutex<HashMap<PublicKey, Link>>,
    routing: Mutex<Routing>,
    /// Live links by peer, newest last: two nodes that dial each other at once have two.
    links: Mutex<HashMap<PublicKey, Vec<LinkEntry>>>,
    /// Dials under way to nodes a call needs, so that concurrent calls share one.
    reaching: Mutex<HashMap<PublicKey, Arc<tokio::sync::Mutex<()>>>>,
    next_session: AtomicU64,
    /// Configured peers by address, with whether a dial is under way.
    dialed: Mutex<HashMap<String, &'static str>>,
    /// The key each configured peer must hold, by address: shown even before it links.
    peer_keys: HashMap<String, PublicKey>,
    /// Peers a registry discovered, by key: the address dialed and the switch that stops it.
    discovered: Mutex<HashMap<PublicKey, (String, watch::Sender<bool>)>>,
    /// Configured peers not yet settled: neither synced nor found unreachable once.
    unsettled: Mutex<HashSet<String>>,
    /// Set once by [`Network::serve_streams`]; links wait for it before taking streams.
    handler: watch::Sender<Option<StreamHandler>>,
    trust: Arc<Trust>,
    /// See [`NetworkConfig::idle_link`].
    idle_link: Duration,
    /// Incoming handshakes by what was decided: accepted, retried, dropped.
    admitted: [AtomicU64; 3],
}

/// Locks a mutex even if a panicking thread poisoned it: the data is plain state that a panic
/// elsewhere cannot leave half-updated in a way that matters here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Runs `event` on the table and queues the updates it returns.
    fn route<R>(&self, event: impl FnOnce(&mut Table) -> (R, Vec<Outgoing>)) -> R {
        let mut routing = lock(&self.routing);
        let (result, out) = event(&mut routing.table);
        let left = routing.send(out, &self.trust);
        drop(routing);
        self.forget(left);
        result
    }

    /// Closes the inner sessions to nodes the table no longer knows: calls to them fail at
    /// once rather than when the session times out.
    fn forget(&self, left: Vec<PublicKey>) {
        if left.is_empty() {
            return;
        }
        let mut relayed = lock(&self.relayed);
        for key in left {
            if let Some(link) = relayed.remove(&key) {
                link.connection().close(0u32.into(), b"no route");
            }
        }
    }

    /// The newest live direct link to `key`.
    fn direct(&self, key: &PublicKey) -> Option<Link> {
        lock(&self.links)
            .get(key)?
            .iter()
            .rev()
            .find(|e| !e.link.is_closed())
            .map(|e| e.link.clone())
    }

    /// A live link to `key`: direct, else an inner session through gateways.
    fn link(&self, key: &PublicKey) -> Option<Link> {
        self.direct(key).or_else(|| {
            lock(&self.relayed)
                .get(key)
                .filter(|l| !l.is_closed())
                .cloned()
        })
    }
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
                shared.send_relayed(dst, packet);
            }
        }));
        let inner = Transport::over_relay(&relay, &config.identity, config.trust.clone())?;
        let (handler, _) = watch::channel(None);
        let me = Catalog {
            node: config.name,
            datacenter: config.datacenter,
            key: config.identity.public(),
            address: config
                .advertise
                .unwrap_or_else(|| transport_address(&transport, config.listen)),
            gateway: config.gateway,
            services: Vec::new(),
        };
        let shared = Arc::new(Shared {
            transport,
            key: me.key,
            gateway: me.gateway,
            relay,
            inner,
            relayed: Mutex::default(),
            routing: Mutex::new(Routing {
                table: Table::new(me),
                sessions: HashMap::new(),
            }),
            links: Mutex::default(),
            reaching: Mutex::default(),
            next_session: AtomicU64::new(1),
            dialed: Mutex::default(),
            peer_keys: config
                .peers
                .iter()
                .map(|p| (p.address.clone(), p.key))
                .collect(),
            discovered: Mutex::default(),
            unsettled: Mutex::new(config.peers.iter().map(|p| p.address.clone()).collect()),
            handler,
            trust: config.trust,
            idle_link: config.idle_link,
            admitted: Default::default(),
        });
        let _ = network.set(Arc::downgrade(&shared));
        tokio::spawn(dial::accept_links(shared.clone()));
        tokio::spawn(relaying::accept_inner(shared.clone()));
        for peer in config.peers {
            lock(&shared.dialed).insert(peer.address.clone(), "connecting");
            tokio::spawn(dial::keep_linked(shared.clone(), peer, None));
        }
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
        self.shared.route(|table| {
            let mut me = (**table.me()).clone();
            me.services = services;
            ((), table.set_local(me))
        });
    }

    /// Routes to `service` (in `datacenter` only, when given), each with a handle that
    /// opens streams to its node.
    pub fn lookup(&self, service: &str, datacenter: Option<&str>) -> Vec<(Route, Peer)> {
        let routes = lock(&self.shared.routing).table.lookup(service, datacenter);
        routes
            .into_iter()
            .map(|r| {
                let peer = Peer::new(self.shared.clone(), r.key);
                (r, peer)
            })
            .collect()
    }

    /// Every route the node knows, for the admin API.
    pub fn routes(&self) -> Vec<Route> {
        lock(&self.shared.routing).table.routes()
    }

    /// The names of nodes by key, for showing which gateway a route goes through.
    pub fn node_name(&self, key: &PublicKey) -> Option<String> {
        let routing = lock(&self.shared.routing);
        routing.table.node(key).map(|c| c.node.clone())
    }

    /// The address a node advertises for its datacenter's peers to dial.
    pub fn node_address(&self, key: &PublicKey) -> Option<String> {
        let routing = lock(&self.shared.routing);
        routing.table.node(key).map(|c| c.address.clone())
    }

    /// The peers: those linked, and configured ones not linked yet.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        let mut peers: Vec<PeerSnapshot> = Vec::new();
        for (key, entries) in lock(&self.shared.links).iter() {
            let Some(e) = entries.iter().rev().find(|e| !e.link.is_closed()) else {
                continue;
            };
            peers.push(PeerSnapshot {
                key: Some(*key),
                name: e.name.clone(),
                datacenter: e.datacenter.clone(),
                address: e.link.remote_address().to_string(),
                state: "up",
                rtt: Some(e.link.rtt()),
                path: "direct".into(),
            });
        }
        for (key, link) in lock(&self.shared.relayed).iter() {
            if link.is_closed() {
                continue;
            }
            let (name, datacenter, via) = {
                let routing = lock(&self.shared.routing);
                let node = routing.table.node(key);
                let via = routing
                    .table
                    .next_hop(key)
                    .and_then(|hop| routing.table.node(&hop).map(|c| c.node.clone()));
                (
                    node.map(|c| c.node.clone()).unwrap_or_default(),
                    node.map(|c| c.datacenter.clone()).unwrap_or_default(),
                    via.unwrap_or_default(),
                )
            };
            peers.push(PeerSnapshot {
                key: Some(*key),
                name,
                datacenter,
                address: String::new(),
                state: "up",
                rtt: Some(link.rtt()),
                path: format!("via {via}"),
            });
        }
        for (address, state) in lock(&self.shared.dialed).iter() {
            if *state != "up" {
                peers.push(PeerSnapshot {
                    key: self.shared.peer_keys.get(address).copied(),
                    name: String::new(),
                    datacenter: String::new(),
                    address: address.clone(),
                    state,
                    rtt: None,
                    path: "direct".into(),
                });
            }
        }
        peers.sort_by(|a, b| a.address.cmp(&b.address));
        peers
    }

    /// Starts serving the streams peers open, with `handler`.
    pub fn serve_streams(&self, handler: StreamHandler) {
        self.shared.handler.send_replace(Some(handler));
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
        lock(&self.shared.unsettled).is_empty()
    }

    /// Dials a peer that a registry discovered, and trusts its key, until
    /// [`Network::remove_peer`]. The same key at the same address again changes nothing; at a
    /// new address, the peer is dialed there instead.
    pub fn add_peer(&self, peer: PeerAddress) {
        let mut discovered = lock(&self.shared.discovered);
        if let Some((address, stop)) = discovered.get(&peer.key) {
            if *address == peer.address {
                return;
            }
            stop.send_replace(true);
        }
        self.shared.trust.add_discovered(peer.key);
        let (stop, stopped) = watch::channel(false);
        discovered.insert(peer.key, (peer.address.clone(), stop));
        tokio::spawn(dial::keep_linked(self.shared.clone(), peer, Some(stopped)));
    }

    /// Forgets a discovered peer: stops dialing it, closes its links (withdrawing its routes)
    /// and stops trusting its key.
    pub fn remove_peer(&self, key: &PublicKey) {
        if let Some((_, stop)) = lock(&self.shared.discovered).remove(key) {
            self.shared.trust.remove_discovered(key);
            stop.send_replace(true);
            // A link the peer opened to us goes too; the dial loop closes its own.
            if let Some(entries) = lock(&self.shared.links).get(key) {
                for entry in entries {
                    entry.link.connection().close(0u32.into(), b"peer removed");
                }
            }
        }
    }

    /// Closes every link, telling peers to withdraw this node's routes now rather than after
    /// the idle timeout.
    pub fn close(&self) {
        self.shared.inner.close();
        self.shared.transport.close();
    }
}

/// The address peers of this datacenter dial when none is advertised: the bound one.
fn transport_address(transport: &Transport, listen: SocketAddr) -> String {
    transport.local_addr().unwrap_or(listen).to_string()
}
