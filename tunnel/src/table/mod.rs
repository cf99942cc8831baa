//! The route table: every node this node knows of, what each fronts, and how to reach it; and
//! the exchange of routes with neighbors (the nodes it has links to).
//!
//! Plain state with no I/O, as quinn-proto keeps QUIC apart from sockets: the network feeds
//! it events — a link up or down, an update received, a round-trip time measured, this
//! node's own catalog changed — and sends the updates each event returns. Tests drive whole
//! simulated meshes through it (`tunnel/tests/mesh.rs`).
//!
//! For each node the table keeps every neighbor's offer and picks the best: a neighbor that
//! *is* the node, else the lowest cost (the offer's metric plus the round-trip time to the
//! neighbor), then the shortest path. Only changes to the best route are passed on, and a
//! withdrawal travels the moment a link dies, as fast as an announcement.

mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

// Looked up on every call: foldhash, not SipHash.
use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::identity::PublicKey;
use crate::route::{Route, ServiceIndex, SubscriptionRoute};
use crate::update::{Advert, Update};

pub(crate) use rules::{permitted, same_dc};
pub use rules::{Neighbor, Refusal};

/// Names one link's exchange of routes. Two nodes that dial each other at once have two
/// links, each with its own exchange: they offer the same routes twice, which is harmless,
/// and either can die without the other's routes going with it.
pub type SessionId = u64;

/// An update for the neighbor at the other end of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The session, and so the neighbor, it goes to.
    pub to: SessionId,
    /// What to tell that neighbor.
    pub update: Update,
}

struct NeighborState {
    info: Neighbor,
    /// Round-trip time in microseconds.
    rtt: u32,
    /// The nodes this neighbor offered routes to.
    offered: HashSet<PublicKey>,
    synced: bool,
}

/// A neighbor's offer of a route to a node.
struct Offer {
    from: SessionId,
    advert: Advert,
}

/// The route in use: whose offer, with its cost from here. It keeps what it needs of the
/// neighbor it came from, so that a withdrawal can still be worked out once that neighbor
/// is gone.
#[derive(Clone)]
struct Best {
    learned: Neighbor,
    advert: Advert,
}

#[derive(Default)]
struct NodeRoutes {
    offers: Vec<Offer>,
    best: Option<Best>,
}

/// This node's view of the mesh.
pub struct Table {
    me: Arc<Catalog>,
    neighbors: HashMap<SessionId, NeighborState>,
    nodes: HashMap<PublicKey, NodeRoutes>,
    index: ServiceIndex,
    /// Nodes that joined (`true`) or left the table since the last
    /// [`Table::take_membership`].
    membership: Vec<(PublicKey, bool)>,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl Table {
    /// A table that knows only this node, `me`.
    pub fn new(me: Catalog) -> Table {
        Table {
            me: Arc::new(me),
            neighbors: HashMap::default(),
            nodes: HashMap::default(),
            index: ServiceIndex::default(),
            membership: Vec::new(),
        }
    }

    /// This node's own catalog.
    pub fn me(&self) -> &Arc<Catalog> {
        &self.me
    }

    /// The first update on a new link, sent before anything is known of the peer: this
    /// node's own catalog, which tells the peer who and what it is.
    pub fn hello(&self) -> Update {
        Update::Announce(self.own_advert())
    }

    fn own_advert(&self) -> Advert {
        Advert {
            catalog: self.me.clone(),
            path: vec![self.me.datacenter.clone()],
            metric: 0,
        }
    }

    /// Replaces this node's own catalog; every neighbor hears of it.
    pub fn set_local(&mut self, me: Catalog) -> Vec<Outgoing> {
        if *self.me == me {
            return Vec::new();
        }
        self.me = Arc::new(me);
        let hello = self.hello();
        self.neighbors
            .keys()
            .map(|&to| Outgoing {
                to,
                update: hello.clone(),
            })
            .collect()
    }

    /// Session `to` with `neighbor` is up and its hello read (which the caller then passes
    /// to [`Table::receive`]). Returns what this node exports to it: its own catalog again
    /// (it may have changed since the hello went out), every route, then `Synced`.
    pub fn link_up(&mut self, to: SessionId, neighbor: Neighbor, rtt: Duration) -> Vec<Outgoing> {
        let mut out = vec![Outgoing {
            to,
            update: self.hello(),
        }];
        self.neighbors.insert(
            to,
            NeighborState {
                info: neighbor,
                rtt: micros(rtt),
                offered: HashSet::new(),
                synced: false,
            },
        );
        let target = &self.neighbors[&to].info;
        for routes in self.nodes.values() {
            if let Some(advert) = routes.best.as_ref().and_then(|b| self.export(b, target)) {
                out.push(Outgoing {
                    to,
                    update: Update::Announce(advert),
                });
            }
        }
        out.push(Outgoing {
            to,
            update: Update::Synced,
        });
        out
    }

    /// Session `id` is gone with its link: every route it offered is withdrawn at once.
    pub fn link_down(&mut self, id: SessionId) -> Vec<Outgoing> {
        let Some(gone) = self.neighbors.remove(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for node in gone.offered {
            if let Some(routes) = self.nodes.get_mut(&node) {
                routes.offers.retain(|o| o.from != id);
            }
            self.choose(&node, &mut out);
        }
        out
    }

    /// An update on session `from`. A refused announcement changes nothing; the link stays
    /// up, since one bad route is no reason to lose the good ones.
    pub fn receive(&mut self, from: SessionId, update: Update) -> Result<Vec<Outgoing>, Refusal> {
        let Some(neighbor) = self.neighbors.get_mut(&from) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match update {
            Update::Synced => neighbor.synced = true,
            Update::Withdraw(node) => {
                if neighbor.offered.remove(&node) {
                    if let Some(routes) = self.nodes.get_mut(&node) {
                        routes.offers.retain(|o| o.from != from);
                    }
                    self.choose(&node, &mut out);
                }
            }
            Update::Announce(advert) => {
                rules::accept(&self.me, &neighbor.info, &advert)?;
                let node = advert.catalog.key;
                neighbor.offered.insert(node);
                let routes = self.nodes.entry(node).or_default();
                routes.offers.retain(|o| o.from != from);
                routes.offers.push(Offer { from, advert });
                self.choose(&node, &mut out);
            }
        }
        Ok(out)
    }

    /// A new round-trip time on session `id`; routes through it may now cost more or less.
    pub fn set_rtt(&mut self, id: SessionId, rtt: Duration) -> Vec<Outgoing> {
        let Some(neighbor) = self.neighbors.get_mut(&id) else {
            return Vec::new();
        };
        neighbor.rtt = micros(rtt);
        let offered: Vec<PublicKey> = neighbor.offered.iter().copied().collect();
        let mut out = Vec::new();
        for node in offered {
            self.choose(&node, &mut out);
        }
        out
    }

    /// Picks the best offer for `node` again, and tells every neighbor what changed for it.
    fn choose(&mut self, node: &PublicKey, out: &mut Vec<Outgoing>) {
        let Some(routes) = self.nodes.get(node) else {
            return;
        };
        let candidate = routes
            .offers
            .iter()
            .filter_map(|o| {
                let neighbor = self.neighbors.get(&o.from)?;
                let mut advert = o.advert.clone();
                advert.metric = advert.metric.saturating_add(neighbor.rtt);
                Some((
                    o.from,
                    Best {
                        learned: neighbor.info.clone(),
                        advert,
                    },
                ))
            })
            .min_by_key(|(from, b)| {
                (
                    b.learned.key != *node,
                    b.advert.metric,
                    b.advert.path.len(),
                    b.learned.key,
                    *from,
                )
            })
            .map(|(_, best)| best);
        let old = routes.best.clone();
        let new = match (&old, candidate) {
            (Some(old), Some(new))
                if old.learned.key == new.learned.key && rules::same(&old.advert, &new.advert) =>
            {
                return;
            }
            (_, new) => new,
        };
        for (to, neighbor) in &self.neighbors {
            let before = old.as_ref().and_then(|b| self.export(b, &neighbor.info));
            let after = new.as_ref().and_then(|b| self.export(b, &neighbor.info));
            let update = match (before, after) {
                (Some(before), Some(after)) if rules::same(&before, &after) => continue,
                (_, Some(after)) => Update::Announce(after),
                (Some(_), None) => Update::Withdraw(*node),
                (None, None) => continue,
            };
            out.push(Outgoing { to: *to, update });
        }
        if let Some(old) = &old {
            self.index.remove(&old.advert.catalog);
        }
        if old.is_some() != new.is_some() {
            self.membership.push((*node, new.is_some()));
        }
        match new {
            Some(best) => {
                self.index.insert(&best.advert.catalog);
                if let Some(routes) = self.nodes.get_mut(node) {
                    routes.best = Some(best);
                }
            }
            None => {
                self.nodes.remove(node);
            }
        }
    }

    fn export(&self, best: &Best, to: &Neighbor) -> Option<Advert> {
        rules::export(&self.me, &best.learned, &best.advert, to)
    }

    /// The routes to `service`, in `datacenter` only when one is given, sorted by node.
    pub fn lookup(&self, service: &str, datacenter: Option<&str>) -> Vec<Route> {
        let mut routes: Vec<Route> = self
            .index
            .nodes(service)
            .filter_map(|key| self.nodes.get(key)?.best.as_ref())
            .filter(|b| {
                datacenter.is_none_or(|dc| rules::same_dc(&b.advert.catalog.datacenter, dc))
            })
            .flat_map(|b| routes_of(b, Some(service)))
            .collect();
        routes.sort_by(|a, b| a.node.cmp(&b.node));
        routes
    }

    /// Every route, sorted by service then node, for the admin API.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes: Vec<Route> = self
            .nodes
            .values()
            .filter_map(|r| r.best.as_ref())
            .flat_map(|b| routes_of(b, None))
            .collect();
        routes.sort_by(|a, b| (&a.service, &a.node).cmp(&(&b.service, &b.node)));
        routes
    }

    /// Every subscription other nodes announced, sorted by node. Publishers match topics
    /// against them; there are few enough (a handful per node) that a scan costs less than
    /// an index of wildcard patterns would.
    pub fn subscriptions(&self) -> Vec<SubscriptionRoute> {
        let mut subscriptions: Vec<SubscriptionRoute> = self
            .nodes
            .values()
            .filter_map(|r| r.best.as_ref())
            .flat_map(|b| {
                let catalog = &b.advert.catalog;
                catalog
                    .subscriptions
                    .iter()
                    .map(move |s| SubscriptionRoute {
                        subscription: s.clone(),
                        datacenter: catalog.datacenter.clone(),
                        node: catalog.node.clone(),
                        key: catalog.key,
                        healthy: catalog
                            .services
                            .iter()
                            .any(|e| e.healthy && e.service.eq_ignore_ascii_case(&s.service)),
                        metric: Duration::from_micros(b.advert.metric as u64),
                    })
            })
            .collect();
        subscriptions.sort_by(|a, b| a.node.cmp(&b.node));
        subscriptions
    }

    /// Whether any node in any datacenter fronts `service`.
    pub fn knows(&self, service: &str) -> bool {
        self.index.nodes(service).next().is_some()
    }

    /// What the mesh says about node `key`, if it knows of it.
    pub fn node(&self, key: &PublicKey) -> Option<&Arc<Catalog>> {
        Some(&self.nodes.get(key)?.best.as_ref()?.advert.catalog)
    }

    /// The neighbor that packets for node `key` go to: the one whose route is best.
    pub fn next_hop(&self, key: &PublicKey) -> Option<PublicKey> {
        Some(self.nodes.get(key)?.best.as_ref()?.learned.key)
    }

    /// Whether the neighbor on session `id` has sent everything it exports to this node.
    pub fn synced(&self, id: SessionId) -> bool {
        self.neighbors.get(&id).is_some_and(|n| n.synced)
    }

    /// The nodes that joined (`true`) or left the table since the last call.
    pub fn take_membership(&mut self) -> Vec<(PublicKey, bool)> {
        std::mem::take(&mut self.membership)
    }

    /// How many nodes the table knows.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the table knows no node but this one.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The routes of one node's best route: one per service it fronts, or only `service`.
fn routes_of<'a>(best: &'a Best, service: Option<&'a str>) -> impl Iterator<Item = Route> + 'a {
    let catalog = &best.advert.catalog;
    let via = (best.learned.key != catalog.key).then_some(best.learned.key);
    catalog
        .services
        .iter()
        .filter(move |e| service.is_none_or(|s| e.service.eq_ignore_ascii_case(s)))
        .map(move |e| Route {
            service: e.service.clone(),
            datacenter: catalog.datacenter.clone(),
            node: catalog.node.clone(),
            key: catalog.key,
            protocol: e.protocol,
            healthy: e.healthy,
            metric: Duration::from_micros(best.advert.metric as u64),
            via,
        })
}
