//! What the network knows and decides, under one lock: the route table, the peers, and the
//! update queue of each session ([`Core`]); and the handles every driver shares ([`Shared`]).
//!
//! One lock, so there is no order to remember. Two rules keep it short and safe:
//! - nothing awaits while holding it;
//! - nothing touches a QUIC connection while holding it. The relay socket sends an inner
//!   session's packets from within that connection's own lock, and takes this one to find the
//!   outer link; taking a connection's lock under this one could deadlock against it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::streams::Streams;
use crate::catalog::Catalog;
use crate::identity::PublicKey;
use crate::link::Link;
use crate::noise::Trust;
use crate::peers::{self, Backoff, Peers, Reach};
use crate::relay::Relay;
use crate::shared_dial::SharedDials;
use crate::table::{Neighbor, Outgoing, Refusal, SessionId, Table};
use crate::transport::Transport;
use crate::update::{Advert, Update};
use crate::Error;

/// A session whose neighbor reads updates this slowly is cut: its link closes, and it starts
/// afresh when it is dialed again.
pub(super) const UPDATE_QUEUE: usize = 1 << 16;

/// The route table, the peers and the sessions' update queues.
pub(super) struct Core {
    pub(super) table: Table,
    pub(super) peers: Peers<Link>,
    /// Each session's queue of updates for its neighbor, filled in the order the table
    /// produced them: a neighbor must never hear an old announcement after a newer one.
    sessions: HashMap<SessionId, mpsc::Sender<Update>>,
    next_session: SessionId,
    trust: Arc<Trust>,
}

impl Core {
    pub(super) fn new(me: Catalog, trust: Arc<Trust>, seed: u64) -> Core {
        Core {
            table: Table::new(me),
            peers: Peers::new(Backoff::DEFAULT, seed),
            sessions: HashMap::new(),
            next_session: 1,
            trust,
        }
    }

    /// Runs `event` on the table and sends the updates it returns.
    pub(super) fn route<R>(&mut self, event: impl FnOnce(&mut Table) -> (R, Vec<Outgoing>)) -> R {
        let (result, out) = event(&mut self.table);
        self.send(out);
        result
    }

    /// Queues each update for its session, and passes the table's membership changes on: to
    /// the trust set (the mesh vouches for the nodes in the table) and to the peers (a node
    /// gone from the table takes its relayed sessions with it).
    fn send(&mut self, out: Vec<Outgoing>) {
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
        for (key, joined) in self.table.take_membership() {
            self.trust.vouch(key, joined);
            if !joined {
                self.peers.unrouted(&key);
            }
        }
    }

    /// A session starts on `link`, whose peer's hello was read: the peer is named, the table
    /// exports everything to it, and the hello is taken as its first announcement. Returns
    /// the session, and the refusal of a hello the table would not take.
    pub(super) fn session_up(
        &mut self,
        link: &Link,
        rtt: Duration,
        advert: Advert,
        queue: mpsc::Sender<Update>,
    ) -> (SessionId, Result<(), Refusal>) {
        let session = self.next_session;
        self.next_session += 1;
        let catalog = advert.catalog.clone();
        self.peers
            .hello(link.id(), &catalog.node, &catalog.datacenter);
        self.sessions.insert(session, queue);
        let neighbor = Neighbor {
            key: catalog.key,
            datacenter: catalog.datacenter.clone(),
            gateway: catalog.gateway,
        };
        let mut out = self.table.link_up(session, neighbor, rtt);
        let accepted = self.table.receive(session, Update::Announce(advert));
        if let Ok(more) = &accepted {
            out.extend(more.iter().cloned());
        }
        self.send(out);
        (session, accepted.map(|_| ()))
    }

    /// An update on `session`, which runs over `link`. A refused one changes nothing.
    pub(super) fn receive(
        &mut self,
        session: SessionId,
        link: &Link,
        update: Update,
    ) -> Result<(), Refusal> {
        if update == Update::Synced {
            self.peers.synced(link.id());
        }
        let out = self.table.receive(session, update)?;
        self.send(out);
        Ok(())
    }

    /// `session` has ended with its link: everything its neighbor offered is withdrawn.
    pub(super) fn session_down(&mut self, session: SessionId) {
        self.route(|table| ((), table.link_down(session)));
        self.sessions.remove(&session);
    }

    /// How a call reaches node `key` when no link to it is up.
    pub(super) fn reach(&self, key: &PublicKey) -> Reach {
        peers::reach(
            key,
            &self.table.me().datacenter,
            self.table.node(key).map(|c| &**c),
            self.table.next_hop(key),
        )
    }

    /// The outer link a relay datagram for `dst` leaves on: the one to `dst`, else the one to
    /// the next hop the table names; never back to `came_from`, which would make a loop.
    pub(super) fn relay_link(
        &self,
        dst: &PublicKey,
        came_from: Option<&PublicKey>,
    ) -> Option<Link> {
        self.peers.direct(dst).or_else(|| {
            let hop = self.table.next_hop(dst)?;
            if Some(&hop) == came_from {
                return None;
            }
            self.peers.direct(&hop)
        })
    }
}

/// What every driver of the network shares. Cheap to reach through an `Arc`.
pub(super) struct Shared {
    pub(super) key: PublicKey,
    pub(super) gateway: bool,
    /// Links to nodes reached directly, on the node's UDP socket.
    pub(super) transport: Transport,
    /// The socket of inner sessions, whose packets travel as datagrams through gateways.
    pub(super) relay: Relay,
    /// End-to-end sessions through gateways, on the relay.
    pub(super) inner: Transport,
    pub(super) trust: Arc<Trust>,
    pub(super) streams: Streams,
    /// See [`NetworkConfig::idle_link`](super::NetworkConfig::idle_link).
    pub(super) idle_link: Duration,
    /// See [`NetworkConfig::rekey`](super::NetworkConfig::rekey).
    pub(super) rekey: Duration,
    /// Dials for calls, shared by the calls that wait for the same node.
    pub(super) dials: SharedDials<PublicKey, Result<Link, Arc<Error>>>,
    /// Incoming handshakes by what was decided: accepted, retried, dropped.
    pub(super) admitted: [AtomicU64; 3],
    core: Mutex<Core>,
    /// Tells the driver that the peers may have actions or a new timer.
    wake: Notify,
    stopping: AtomicBool,
}

/// The parts of [`Shared`] made before it.
pub(super) struct Parts {
    pub(super) key: PublicKey,
    pub(super) gateway: bool,
    pub(super) transport: Transport,
    pub(super) relay: Relay,
    pub(super) inner: Transport,
    pub(super) trust: Arc<Trust>,
    pub(super) idle_link: Duration,
    pub(super) rekey: Duration,
    pub(super) core: Core,
}

impl Shared {
    pub(super) fn new(parts: Parts) -> Shared {
        Shared {
            key: parts.key,
            gateway: parts.gateway,
            transport: parts.transport,
            relay: parts.relay,
            inner: parts.inner,
            trust: parts.trust,
            streams: Streams::new(),
            idle_link: parts.idle_link,
            rekey: parts.rekey,
            dials: SharedDials::default(),
            admitted: Default::default(),
            core: Mutex::new(parts.core),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The core, locked, to read it or to change what needs no action (a lookup, a route
    /// table event that the driver need not hear of).
    pub(super) fn core(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere cannot leave plain state half-updated in a way that matters here.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `event` on the core, then wakes the driver if it made actions or timers.
    pub(super) fn update<R>(&self, event: impl FnOnce(&mut Core) -> R) -> R {
        let (result, changed) = {
            let mut core = self.core();
            let result = event(&mut core);
            (result, core.peers.take_changed())
        };
        if changed {
            self.wake.notify_one();
        }
        result
    }

    /// Waits until [`Shared::update`] or [`Shared::stop`] wakes the driver.
    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Tells the driver to stop: the node is closing.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// The time the peers are fed: tokio's clock, which tests can pause.
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
