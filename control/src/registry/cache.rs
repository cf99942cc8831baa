//! The cache in front of every registry plugin: the last good answer, whether the backend is
//! up, and the peers the discovered nodes became.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use ferry_tunnel::{Network, PeerAddress, PublicKey};

use super::{run_watch, AddressRecord, EndpointSet, NodeRecord, Registry, RegistryError, Scope};
use crate::config::RegistryKind;

/// At most this many names are watched one by one (DNS): a client sending made-up `Host`
/// names must not grow the node without bound. Past it, unknown names are not looked up.
const MAX_WATCHED_NAMES: usize = 1024;
/// A node found this recently whose link is not up yet means routes are still on their way.
const CONVERGING: Duration = Duration::from_secs(5);
/// How long a stopping node gives its backend to withdraw its registration.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// Plain addresses by lower-case service name.
    addresses: HashMap<String, Vec<AddressRecord>>,
    /// Discovered nodes (this one and other datacenters' left out), with when each was found.
    nodes: HashMap<PublicKey, (NodeRecord, Instant)>,
    synced: bool,
    up: bool,
    error: Option<String>,
    errors: u64,
    /// Names watched one by one, and those of them that have had a first answer.
    watched: HashSet<String>,
    answered: HashSet<String>,
}

/// A registry's last good answer and its backend's health, as `/readyz`, `/registry` and
/// the metrics show them.
#[derive(Clone, Debug)]
pub struct RegistryStatus {
    /// Which registry the cache fronts.
    pub kind: RegistryKind,
    /// The backend has answered once: until then the node is not ready.
    pub synced: bool,
    /// The backend answered last time it was asked.
    pub up: bool,
    /// Why it did not, while it is down.
    pub error: Option<String>,
    /// How many times the backend has failed (lookups, watches, registrations) since start.
    pub errors: u64,
    /// The Ferry nodes it found, sorted by name; this node and other datacenters' are left out.
    pub nodes: Vec<NodeRecord>,
    /// Plain addresses by lower-case service name.
    pub addresses: BTreeMap<String, Vec<SocketAddr>>,
}

/// The cache in front of a registry plugin. It never forgets an answer because the backend
/// failed: only a newer answer from the backend replaces it.
pub struct RegistryCache {
    plugin: Arc<dyn Registry>,
    kind: RegistryKind,
    key: PublicKey,
    datacenter: String,
    network: Network,
    started: Instant,
    state: Mutex<State>,
    /// Bumped on every answer, so that a waiting first lookup wakes at once.
    changed: watch::Sender<u64>,
    /// Set when the node deregisters: its registration must not be renewed after.
    leaving: AtomicBool,
}

impl RegistryCache {
    pub(super) fn new(
        plugin: Arc<dyn Registry>,
        key: PublicKey,
        datacenter: String,
        network: Network,
    ) -> Arc<RegistryCache> {
        Arc::new(RegistryCache {
            kind: plugin.kind(),
            plugin,
            key,
            datacenter,
            network,
            started: Instant::now(),
            state: Mutex::default(),
            changed: watch::channel(0).0,
            leaving: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which registry the cache fronts.
    pub fn kind(&self) -> RegistryKind {
        self.kind
    }

    /// Starts watching `scope` (a name once only).
    pub(super) fn spawn_watch(self: &Arc<Self>, scope: Scope) {
        if let Scope::Service(name) = &scope {
            let mut state = self.lock();
            if state.watched.contains(name) || state.watched.len() >= MAX_WATCHED_NAMES {
                return;
            }
            state.watched.insert(name.clone());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(run_watch(self.plugin.clone(), self.clone(), scope));
    }

    /// A backend's answer for `scope`.
    pub(super) fn set(&self, scope: &Scope, set: EndpointSet) {
        let mut state = self.lock();
        match scope {
            Scope::All => {
                // A backend that cannot list answers `All` with a probe only: its per-name
                // answers stay.
                if self.plugin.lists_all() {
                    state.addresses = set.addresses.into_iter().collect();
                    self.reconcile_nodes(&mut state, set.nodes);
                }
                state.synced = true;
            }
            Scope::Service(name) => {
                let found = set.addresses.get(name).cloned().unwrap_or_default();
                state.addresses.insert(name.clone(), found);
                state.answered.insert(name.clone());
            }
        }
        if !state.up && state.error.is_some() {
            info!(kind = %self.kind, "registry backend is back");
        }
        state.up = true;
        state.error = None;
        drop(state);
        metrics::counter!("ferry_registry_updates_total", "kind" => self.kind.as_str())
            .increment(1);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Makes the discovered nodes the network's dynamic peers: new ones are dialed, gone ones
    /// dropped. Only nodes of this datacenter: others are reached through gateways.
    fn reconcile_nodes(&self, state: &mut State, nodes: Vec<NodeRecord>) {
        let now = Instant::now();
        let mut next = HashMap::new();
        for node in nodes {
            let Ok(key) = node.key.parse::<PublicKey>() else {
                debug!(node = %node.name, "registry record with a bad key skipped");
                continue;
            };
            if key == self.key || !node.datacenter.eq_ignore_ascii_case(&self.datacenter) {
                continue;
            }
            let found = match state.nodes.get(&key) {
                Some((old, at)) if old.address == node.address => *at,
                _ => now,
            };
            if found == now {
                info!(node = %node.name, address = %node.address, %key, "registry found a node");
            }
            self.network.add_peer(PeerAddress {
                address: node.address.clone(),
                key,
            });
            next.insert(key, (node, found));
        }
        for (key, (node, _)) in &state.nodes {
            if !next.contains_key(key) {
                info!(node = %node.name, %key, "node left the registry");
                self.network.remove_peer(key);
            }
        }
        state.nodes = next;
    }

    /// The backend failed: keep everything, say so.
    pub(super) fn failed(&self, error: &RegistryError) {
        let mut state = self.lock();
        if state.up || state.error.is_none() {
            warn!(kind = %self.kind, error = %error, "registry backend unavailable; serving its last good answer");
        } else {
            debug!(kind = %self.kind, error = %error, "registry backend still unavailable");
        }
        state.up = false;
        state.error = Some(error.to_string());
        state.errors += 1;
        drop(state);
        metrics::counter!("ferry_registry_errors_total", "kind" => self.kind.as_str()).increment(1);
    }

    /// The plain addresses of `service` (lower case), starting to watch it when the backend
    /// answers names one by one.
    pub fn addresses(self: &Arc<Self>, service: &str) -> Vec<AddressRecord> {
        if !self.plugin.lists_all() {
            self.spawn_watch(Scope::Service(service.to_owned()));
        }
        self.lock()
            .addresses
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether an answer for `service` may still be on its way: a name not yet answered by a
    /// per-name backend, or nodes found moments ago (or none yet, just after start) whose
    /// links and catalogs have not arrived. A lookup that finds nothing waits for these, and
    /// only these, and is woken by the first answer.
    pub fn converging(&self, service: &str) -> bool {
        let state = self.lock();
        if !self.plugin.lists_all() {
            // While the backend is down, waiting would only delay the refusal.
            return state.watched.contains(service)
                && !state.answered.contains(service)
                && state.error.is_none();
        }
        if !matches!(self.kind, RegistryKind::Etcd | RegistryKind::Mdns) {
            return false;
        }
        if state.nodes.is_empty() {
            return self.started.elapsed() < CONVERGING;
        }
        let fresh: Vec<PublicKey> = state
            .nodes
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < CONVERGING)
            .map(|(key, _)| *key)
            .collect();
        drop(state);
        if fresh.is_empty() {
            return false;
        }
        // A node's catalog reaches the route table with its hello, a moment after its link is
        // up: until then a lookup would find no route to a service the node is about to
        // announce. So the wait is for the catalog, not the link.
        fresh
            .iter()
            .any(|key| self.network.node_name(key).is_none())
    }

    /// Whether the backend answered last time it was asked.
    pub fn is_up(&self) -> bool {
        let state = self.lock();
        state.synced && state.error.is_none()
    }

    /// Wakes on every answer the backend gives.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// `Err` until the backend has answered once (the node is not ready); then `Ok`, with a
    /// warning while the backend is down and the cache serves its last answer.
    pub fn readiness(&self) -> Result<Option<String>, String> {
        let state = self.lock();
        match (&state.error, state.synced) {
            (None, true) => Ok(None),
            (Some(e), true) => Ok(Some(format!(
                "registry {} unavailable, serving its last good answer: {e}",
                self.kind
            ))),
            (Some(e), false) => Err(format!("registry {} not synced: {e}", self.kind)),
            (None, false) => Err(format!(
                "registry {} not synced: waiting for its first answer",
                self.kind
            )),
        }
    }

    /// The cache as `/registry`, `/routes` and the metrics show it, copied out.
    pub fn status(&self) -> RegistryStatus {
        let state = self.lock();
        let mut nodes: Vec<NodeRecord> = state.nodes.values().map(|(n, _)| n.clone()).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        RegistryStatus {
            kind: self.kind,
            synced: state.synced,
            up: state.synced && state.error.is_none(),
            error: state.error.clone(),
            errors: state.errors,
            nodes,
            addresses: state
                .addresses
                .iter()
                .map(|(name, set)| (name.clone(), set.iter().map(|a| a.address).collect()))
                .collect(),
        }
    }

    /// Whether the node has deregistered on its way out.
    pub(super) fn leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// Withdraws this node's registration, within a bounded time, for good.
    pub async fn deregister(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.plugin.deregister()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(kind = %self.kind, error = %e, "cannot deregister"),
            Err(_) => warn!(kind = %self.kind, "deregistering timed out"),
        }
    }
}
