//! The network: links to peers kept alive, catalogs exchanged over them, and the route table
//! they feed. Streams peers open are handed to the proxy's [`StreamHandler`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Admissions};
use crate::catalog::{Catalog, CatalogEntry, MAX_CATALOG_LEN};
use crate::header::StreamHeader;
use crate::identity::{Identity, PublicKey};
use crate::link::{Link, TunnelStream};
use crate::noise::Trust;
use crate::route::{Route, RouteTable};
use crate::transport::Transport;
use crate::Error;

/// A peer can take this long to identify itself or to send a stream's header.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    pub peers: Vec<PeerAddress>,
    /// Keys allowed to open links to this node.
    pub trust: Arc<Trust>,
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
    /// `direct` (gateways come with the multi-datacenter issue).
    pub path: String,
}

struct LinkEntry {
    link: Link,
    name: String,
    datacenter: String,
}

struct Shared {
    transport: Transport,
    local: watch::Sender<Catalog>,
    routes: Mutex<RouteTable>,
    links: Mutex<HashMap<PublicKey, LinkEntry>>,
    /// Configured peers by address, with whether a dial is under way.
    dialed: Mutex<HashMap<String, &'static str>>,
    /// The key each configured peer must hold, by address: shown even before it links.
    peer_keys: HashMap<String, PublicKey>,
    /// Peers a registry discovered, by key: the address dialed and the switch that stops it.
    discovered: Mutex<HashMap<PublicKey, (String, watch::Sender<bool>)>>,
    /// Configured peers not yet settled: neither identified nor found unreachable once.
    unsettled: Mutex<std::collections::HashSet<String>>,
    /// Set once by [`Network::serve_streams`]; links wait for it before taking streams.
    handler: watch::Sender<Option<StreamHandler>>,
    trust: Arc<Trust>,
    /// Incoming handshakes by what was decided: accepted, retried, dropped.
    admitted: [AtomicU64; 3],
}

/// How many incoming handshakes a node accepted, answered with a Retry, and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionCounts {
    pub accepted: u64,
    pub retried: u64,
    pub dropped: u64,
}

/// Locks a mutex even if a panicking thread poisoned it: the data is plain state that a panic
/// elsewhere cannot leave half-updated in a way that matters here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This node's place in the mesh. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

impl Network {
    /// Binds the tunnel, starts accepting links and dialing the configured peers. Must be
    /// called within a tokio runtime. Streams that peers open arrive on the returned channel.
    pub fn start(config: NetworkConfig) -> Result<Network, Error> {
        let transport = Transport::bind(config.listen, &config.identity, config.trust.clone())?;
        let (handler, _) = watch::channel(None);
        let (local, _) = watch::channel(Catalog {
            node: config.name,
            datacenter: config.datacenter,
            key: config.identity.public(),
            services: Vec::new(),
        });
        let shared = Arc::new(Shared {
            transport,
            local,
            routes: Mutex::default(),
            links: Mutex::default(),
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
            admitted: Default::default(),
        });
        tokio::spawn(accept_links(shared.clone()));
        for peer in config.peers {
            lock(&shared.dialed).insert(peer.address.clone(), "connecting");
            tokio::spawn(dial(shared.clone(), peer, None));
        }
        Ok(Network { shared })
    }

    /// The UDP address the tunnel is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.shared.transport.local_addr()
    }

    /// Sets the services this node announces; peers hear of a change at once.
    pub fn announce(&self, services: Vec<CatalogEntry>) {
        self.shared.local.send_if_modified(|catalog| {
            let changed = catalog.services != services;
            catalog.services = services;
            changed
        });
    }

    /// Routes to `service` (in `datacenter` only, when given) with the link to each.
    pub fn lookup(&self, service: &str, datacenter: Option<&str>) -> Vec<(Route, Link)> {
        let routes = lock(&self.shared.routes).lookup(service, datacenter);
        let links = lock(&self.shared.links);
        routes
            .into_iter()
            .filter_map(|r| links.get(&r.key).map(|e| (r, e.link.clone())))
            .collect()
    }

    /// Every route the node knows, for the admin API.
    pub fn routes(&self) -> Vec<Route> {
        lock(&self.shared.routes).all()
    }

    /// The peers: those linked, and configured ones not linked yet.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        let links = lock(&self.shared.links);
        let mut peers: Vec<PeerSnapshot> = links
            .iter()
            .map(|(key, e)| PeerSnapshot {
                key: Some(*key),
                name: e.name.clone(),
                datacenter: e.datacenter.clone(),
                address: e.link.remote_address().to_string(),
                state: "up",
                rtt: Some(e.link.rtt()),
                path: "direct".into(),
            })
            .collect();
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

    /// Whether every configured peer has been tried once: linked and its catalog read, or
    /// found unreachable. A node is not ready before, lest its first calls miss routes it is
    /// about to learn; it never waits longer, lest an unreachable peer hold it back.
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
        tokio::spawn(dial(self.shared.clone(), peer, Some(stopped)));
    }

    /// Forgets a discovered peer: stops dialing it, closes its link (withdrawing its routes)
    /// and stops trusting its key.
    pub fn remove_peer(&self, key: &PublicKey) {
        if let Some((_, stop)) = lock(&self.shared.discovered).remove(key) {
            self.shared.trust.remove_discovered(key);
            stop.send_replace(true);
            // A link the peer opened to us goes too; the dial loop closes its own.
            if let Some(entry) = lock(&self.shared.links).get(key) {
                entry.link.connection().close(0u32.into(), b"peer removed");
            }
        }
    }

    /// Closes every link, telling peers to withdraw this node's routes now rather than after
    /// the idle timeout.
    pub fn close(&self) {
        self.shared.transport.close();
    }
}

async fn accept_links(shared: Arc<Shared>) {
    let admissions = Arc::new(Mutex::new(Admissions::default()));
    while let Some(incoming) = shared.transport.accept().await {
        let remote = incoming.remote_address();
        let decision = lock(&admissions).admit(
            std::time::Instant::now(),
            remote.ip(),
            incoming.remote_address_validated(),
        );
        metrics::counter!("ferry_tunnel_incoming_total", "decision" => decision.as_str())
            .increment(1);
        shared.admitted[decision as usize].fetch_add(1, Ordering::Relaxed);
        match decision {
            Admission::Accept => {}
            Admission::Retry => {
                if let Err(e) = incoming.retry() {
                    // Only a client that already echoed a token can get here, and those
                    // are validated; drop it rather than guess.
                    debug!(%remote, error = %e, "cannot send a retry");
                }
                continue;
            }
            Admission::Drop => {
                incoming.ignore();
                continue;
            }
        }
        let shared = shared.clone();
        let admissions = admissions.clone();
        tokio::spawn(async move {
            let handshake = incoming.await;
            lock(&admissions).done();
            match handshake {
                Ok(conn) => {
                    let link = Link::new(conn);
                    if let Err(e) = run_link(&shared, link, None).await {
                        debug!(%remote, error = %e, "incoming link ended");
                    }
                }
                Err(e) => debug!(%remote, error = %e, "incoming handshake failed"),
            }
        });
    }
}

/// Keeps a link to a peer, redialing with jittered exponential backoff. A configured peer's
/// loop runs for the node's life; a discovered peer's (`stop` given) until `stop` turns true,
/// when its link is closed, cleaned up as any closed link is, and the loop ends.
async fn dial(shared: Arc<Shared>, peer: PeerAddress, mut stop: Option<watch::Receiver<bool>>) {
    let mut backoff = BACKOFF_MIN;
    let mut logged = false;
    loop {
        lock(&shared.dialed).insert(peer.address.clone(), "connecting");
        let connected = tokio::select! {
            connected = connect(&shared, &peer.address, &peer.key) => connected,
            _ = stopped(&mut stop) => break,
        };
        match connected {
            Ok(link) => {
                info!(peer = %peer.address, "link up");
                backoff = BACKOFF_MIN;
                logged = false;
                lock(&shared.dialed).insert(peer.address.clone(), "up");
                let conn = link.connection().clone();
                let run = run_link(&shared, link, Some(&peer.address));
                tokio::pin!(run);
                let result = tokio::select! {
                    result = &mut run => result,
                    _ = stopped(&mut stop) => {
                        conn.close(0u32.into(), b"peer removed");
                        run.await
                    }
                };
                lock(&shared.dialed).insert(peer.address.clone(), "down");
                match result {
                    Ok(()) => info!(peer = %peer.address, "link down"),
                    Err(e) => warn!(peer = %peer.address, error = %e, "link down"),
                }
            }
            Err(e) if !logged => {
                lock(&shared.unsettled).remove(&peer.address);
                warn!(peer = %peer.address, error = %e, "cannot reach peer; retrying");
                logged = true;
            }
            Err(e) => debug!(peer = %peer.address, error = %e, "cannot reach peer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    lock(&shared.dialed).remove(&peer.address);
}

/// Resolves once a discovered peer's dial loop is told to stop; never for a configured peer.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        // A dropped sender stops the loop too: nobody is left to want the peer.
        Some(stop) => {
            let _ = stop.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

async fn connect(shared: &Shared, address: &str, key: &PublicKey) -> Result<Link, Error> {
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| Error::Connect {
            addr: address.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| Error::Connect {
            addr: address.to_owned(),
            reason: "name has no address".into(),
        })?;
    shared.transport.connect(addr, key).await
}

/// Half to all of `backoff`, so that peers that lost each other do not redial in lockstep.
fn jitter(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let half = backoff / 2;
    half + half.mul_f64((random % 1000) as f64 / 1000.0)
}

/// Runs one link until it closes: exchanges catalogs, and hands the peer's streams to the
/// proxy. The peer's routes are withdrawn the moment the link ends.
async fn run_link(shared: &Arc<Shared>, link: Link, dialed: Option<&str>) -> Result<(), Error> {
    let conn = link.connection().clone();
    let sender = tokio::spawn(send_catalogs(conn.clone(), shared.local.subscribe()));
    let result = receive_catalogs(shared, &link, dialed).await;
    if let Some(address) = dialed {
        lock(&shared.unsettled).remove(address);
    }
    sender.abort();
    let reason = match &result {
        Ok(()) => "closed".to_owned(),
        Err(e) => e.to_string(),
    };
    conn.close(0u32.into(), reason.as_bytes());
    result
}

async fn send_catalogs(
    conn: quinn::Connection,
    mut local: watch::Receiver<Catalog>,
) -> Result<(), Error> {
    let mut stream = conn
        .open_uni()
        .await
        .map_err(|e| Error::LinkClosed(e.to_string()))?;
    loop {
        let mut buf = BytesMut::new();
        local.borrow_and_update().encode(&mut buf);
        stream
            .write_all(&buf)
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        if local.changed().await.is_err() {
            return Ok(());
        }
    }
}

async fn read_catalog(stream: &mut quinn::RecvStream) -> Result<Catalog, Error> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_CATALOG_LEN {
        return Err(Error::Malformed("catalog too long"));
    }
    let mut buf = vec![0u8; len];
    AsyncReadExt::read_exact(stream, &mut buf).await?;
    Catalog::decode(&buf)
}

async fn receive_catalogs(
    shared: &Arc<Shared>,
    link: &Link,
    dialed: Option<&str>,
) -> Result<(), Error> {
    let conn = link.connection();
    let (mut stream, first) = tokio::time::timeout(HELLO_TIMEOUT, async {
        let mut stream = conn
            .accept_uni()
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        let first = read_catalog(&mut stream).await?;
        Ok::<_, Error>((stream, first))
    })
    .await
    .map_err(|_| Error::LinkClosed("peer sent no catalog".into()))??;
    // The handshake proved who the peer is; what it says in its catalog must agree.
    let key = link
        .peer_key()
        .ok_or_else(|| Error::LinkClosed("link has no authenticated peer key".into()))?;
    if first.key != key {
        return Err(Error::InvalidKey(format!(
            "peer {key} announced itself as {}",
            first.key
        )));
    }
    info!(peer = %first.node, datacenter = %first.datacenter, %key, "peer identified");
    lock(&shared.links).insert(
        key,
        LinkEntry {
            link: link.clone(),
            name: first.node.clone(),
            datacenter: first.datacenter.clone(),
        },
    );
    lock(&shared.routes).update(first);
    if let Some(address) = dialed {
        lock(&shared.unsettled).remove(address);
    }
    let acceptor = tokio::spawn(accept_streams(shared.clone(), link.clone(), key));

    let result = async {
        loop {
            let catalog = read_catalog(&mut stream).await?;
            if catalog.key != key {
                return Err(Error::Malformed("peer changed its key mid-link"));
            }
            debug!(peer = %catalog.node, services = catalog.services.len(), "catalog update");
            lock(&shared.routes).update(catalog);
        }
    }
    .await;

    acceptor.abort();
    // Withdraw only if a newer link to the same peer has not replaced this one.
    let mut links = lock(&shared.links);
    if links.get(&key).is_some_and(|e| e.link.id() == link.id()) {
        links.remove(&key);
        lock(&shared.routes).withdraw(&key);
    }
    result
}

async fn accept_streams(shared: Arc<Shared>, link: Link, peer: PublicKey) {
    // Streams wait in quinn (bounded by its stream limit) until the proxy is ready for them.
    let mut handler = shared.handler.subscribe();
    let handler = match handler.wait_for(Option::is_some).await {
        Ok(ready) => ready.clone(),
        Err(_) => return,
    };
    let Some(handler) = handler else {
        return;
    };
    while let Ok(mut stream) = link.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HELLO_TIMEOUT, stream.read_header()).await {
                Ok(Ok(header)) => {
                    handler(IncomingStream {
                        header,
                        stream,
                        peer,
                    })
                    .await
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "bad stream header");
                    stream.reset();
                }
                Err(_) => stream.reset(),
            }
        });
    }
}
