//! Registries: where a node publishes itself and learns where services are
//! (`docs/registries.md`).
//!
//! Every plugin implements one trait, [`Registry`], with three verbs: register this node,
//! deregister it, and watch endpoint sets. A plugin yields two kinds of endpoint (the reference,
//! `docs/reference.md`, under `[registry]`): Ferry nodes (`mesh`, `etcd`, `mdns`), which become
//! peers of the tunnel network and whose services then reach the route table over their links,
//! and plain addresses (`static`, `dns`), dialed directly. Nothing reads a plugin directly: its
//! answers go into a [`RegistryCache`], which keeps the last good answer while the backend is
//! down, says so in `/readyz` and metrics, and is what the directory asks on every call.

mod cache;
mod dns;
mod etcd;
mod mdns;
mod static_file;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use ferry_tunnel::{Network, Protocol, PublicKey};

use crate::config::{RegistryConfig, RegistryKind};

pub use cache::{RegistryCache, RegistryStatus};
pub use static_file::{read_static_file, StaticService};

/// A failing backend is retried after this long at first, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// A Ferry node as `etcd` and `mdns` publish it: what another node needs to dial it (its
/// tunnel address and key, which the Noise IK handshake needs up front) and what it fronts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its node name, `[node] name`.
    pub name: String,
    /// Its datacenter: only nodes of this node's own become its peers.
    pub datacenter: String,
    /// The node's public key, base64.
    pub key: String,
    /// `host:port` of its tunnel.
    pub address: String,
    /// The local services it fronts.
    pub services: Vec<ServiceRecord>,
}

/// A service a [`NodeRecord`] fronts. Its health travels over the mesh link, not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service name, as its `[[service]]` spells it.
    pub name: String,
    /// `http`, `grpc` or `tcp`, as the config names it; kept as the backend gave it.
    pub protocol: String,
}

/// A plain address a registry holds for a service: dialed directly, not through the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRecord {
    /// Where the service listens.
    pub address: SocketAddr,
    /// What it speaks.
    pub protocol: Protocol,
}

/// What a watch found: plain addresses by service name (lower case), and Ferry nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSet {
    /// Plain addresses (`static`, `dns`) by lower-case service name.
    pub addresses: BTreeMap<String, Vec<AddressRecord>>,
    /// Ferry nodes (`etcd`, `mdns`), which the cache makes peers of the tunnel network.
    pub nodes: Vec<NodeRecord>,
}

impl EndpointSet {
    /// A set of Ferry nodes only, as `etcd` and `mdns` find them.
    pub fn of_nodes<'a>(nodes: impl IntoIterator<Item = &'a NodeRecord>) -> EndpointSet {
        EndpointSet {
            addresses: BTreeMap::new(),
            nodes: nodes.into_iter().cloned().collect(),
        }
    }
}

/// What a watch covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything the backend holds: its answer replaces the whole cached set.
    All,
    /// One service name: its answer replaces that service's addresses only. For backends
    /// that cannot list what they hold (DNS), watched from the first call that asks.
    Service(String),
}

/// Why a backend could not answer. The cache keeps its last good answer meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

impl RegistryError {
    /// An error that says `what`, for the log and `/readyz`.
    pub fn new(what: impl std::fmt::Display) -> RegistryError {
        RegistryError(what.to_string())
    }
}

/// Where a watch delivers its answers: the cache, for one scope.
pub struct Sink {
    cache: Arc<RegistryCache>,
    scope: Scope,
}

impl Sink {
    /// The backend's current answer for this scope; marks the backend up.
    pub fn set(&self, set: EndpointSet) {
        self.cache.set(&self.scope, set);
    }
}

/// One registry backend. The verbs are async; a plugin holds no state the cache needs.
pub trait Registry: Send + Sync + 'static {
    /// Which registry this is, as `[registry] kind` names it.
    fn kind(&self) -> RegistryKind;

    /// Whether [`Registry::watch`] takes [`Scope::All`]; `false` for a backend that only
    /// answers names it is asked (DNS), which is watched one name at a time.
    fn lists_all(&self) -> bool {
        true
    }

    /// Publishes this node as `node` says, again whenever it changes, and holds the
    /// registration (renewing any lease) until the backend fails: then returns the error and
    /// is called again. `Ok` means there is nothing to hold. The default publishes nothing:
    /// the mesh carries catalogs itself, and the registries of plain addresses are written by
    /// whoever runs the services, not by Ferry.
    fn register<'a>(
        &'a self,
        _node: &'a mut watch::Receiver<NodeRecord>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async { Ok(()) })
    }

    /// Withdraws what `register` published, for a node that is stopping.
    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async { Ok(()) })
    }

    /// Delivers the endpoint set of `scope` to `sink` now and whenever it changes, until the
    /// backend fails: then returns the error (the cache keeps the last answer) and is called
    /// again after a backoff. `Ok` means the scope needs no more watching.
    fn watch<'a>(
        &'a self,
        scope: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;
}

/// The `mesh` registry: the tunnel network itself carries every node's catalog, so there is
/// nothing to publish or watch here, and no backend that can be down.
struct Mesh;

impl Registry for Mesh {
    fn kind(&self) -> RegistryKind {
        RegistryKind::Mesh
    }

    fn watch<'a>(
        &'a self,
        _: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        sink.set(EndpointSet::default());
        Box::pin(async { Ok(()) })
    }
}

/// What this node is, for the registries that publish nodes.
pub struct Local {
    /// Its public key: a registry that lists it back does not make it a peer of itself.
    pub key: PublicKey,
    /// Its datacenter: nodes found in others are not dialed, but reached through gateways.
    pub datacenter: String,
    /// This node as it is published, changed whenever its services change.
    pub record: watch::Receiver<NodeRecord>,
}

/// Builds the configured plugin, puts a cache in front of it and starts its register and
/// watch loops. Discovered nodes become peers of `network`.
pub fn start(
    config: &RegistryConfig,
    local: Local,
    network: Network,
) -> Result<Arc<RegistryCache>, String> {
    let plugin: Arc<dyn Registry> = match config.kind {
        RegistryKind::Mesh => Arc::new(Mesh),
        RegistryKind::Static => Arc::new(static_file::StaticFile::new(config)?),
        RegistryKind::Dns => Arc::new(dns::Dns::new(config)?),
        RegistryKind::Etcd => Arc::new(etcd::Etcd::new(config)),
        RegistryKind::Mdns => Arc::new(mdns::Mdns::new()?),
    };
    let cache = RegistryCache::new(plugin.clone(), local.key, local.datacenter, network);
    tokio::spawn(hold_registration(
        plugin.clone(),
        cache.clone(),
        local.record,
    ));
    // A backend that cannot list (DNS) takes `All` as a probe: readiness then means that it
    // answers, and each name is watched from the first call that asks for it.
    cache.spawn_watch(Scope::All);
    info!(kind = %plugin.kind(), "registry started");
    Ok(cache)
}

/// Keeps this node registered, re-registering after every failure with a backoff, until the
/// node deregisters on its way out.
async fn hold_registration(
    plugin: Arc<dyn Registry>,
    cache: Arc<RegistryCache>,
    mut record: watch::Receiver<NodeRecord>,
) {
    let mut backoff = RETRY_MIN;
    loop {
        let started = std::time::Instant::now();
        let result = plugin.register(&mut record).await;
        if cache.leaving() {
            return;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                // A registration that held a while was good: start the backoff afresh, and
                // say so once rather than at every retry of an outage.
                if started.elapsed() > RETRY_MAX {
                    backoff = RETRY_MIN;
                    warn!(kind = %plugin.kind(), error = %e, "registration lost; registering again");
                }
                cache.failed(&e);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Runs one scope's watch until it needs no more, retrying a failed backend with a backoff.
async fn run_watch(plugin: Arc<dyn Registry>, cache: Arc<RegistryCache>, scope: Scope) {
    let sink = Sink {
        cache: cache.clone(),
        scope: scope.clone(),
    };
    let mut backoff = RETRY_MIN;
    loop {
        match plugin.watch(&scope, &sink).await {
            Ok(()) => return,
            Err(e) => {
                // A watch that delivered since the last failure earned a fresh backoff.
                if cache.is_up() {
                    backoff = RETRY_MIN;
                }
                cache.failed(&e);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// The services of a node, as its [`NodeRecord`] lists them.
pub fn service_records(services: &[crate::config::ServiceConfig]) -> Vec<ServiceRecord> {
    services
        .iter()
        .map(|s| ServiceRecord {
            name: s.name.clone(),
            protocol: s.protocol.as_str().to_owned(),
        })
        .collect()
}
