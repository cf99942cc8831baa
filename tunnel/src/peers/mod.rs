//! The peers: every node this node keeps a link to, has a link with, or is dialing, and what
//! it does next for each.
//!
//! Plain state with no I/O, like the route table ([`crate::table`]) and quinn-proto's
//! connections: the network feeds it events with the time — a peer configured, discovered or
//! forgotten; a link registered, its hello read, its peer synced, a link idle or closed; a dial
//! failed; a timer due — and performs the actions it queues: dial a peer, close a link. The
//! async drivers around it are in `tunnel/src/network/`.
//!
//! What is kept for each peer:
//! - whether this node keeps a link to it, and why ([`Origin`]): a configured peer for the
//!   node's life, a discovered one until the registry forgets it. Such a peer's own link is
//!   dialed, redialed after a jittered backoff when it fails or drops ([`Dial`]);
//! - its live links, each in its own [`Phase`]: linked (registered, and usable by calls at
//!   once, before the peer's hello), identified (hello read), synced (the peer's whole table
//!   read), closing (no new stream starts on it). A link is direct or relayed through
//!   gateways, and dialed to keep the peer, dialed for calls, or opened by the peer
//!   ([`LinkKind`]).
//!
//! A peer's [`PeerState`] is read off those rather than stored beside them: two links to one
//! peer are normal (two nodes that dial each other at once, a peer that restarted while its
//! old link times out), and a single stored state could disagree with one of them.

mod peer;
mod reach;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

// Looked up on every call: foldhash, not SipHash (keys are peers' public keys).
use foldhash::HashMap;
use std::time::Instant;

use crate::identity::PublicKey;

pub(crate) use crate::backoff::{Backoff, Jitter};
pub use peer::PeerState;
pub(crate) use peer::{
    Action, Attempt, CloseReason, Dial, LinkHandle, LinkId, LinkKind, Origin, PeerView, Phase,
};
use peer::{Entry, Kept, Peer};
pub(crate) use reach::{reach, Reach};

/// Every peer, and the actions they call for.
pub(crate) struct Peers<L> {
    peers: HashMap<PublicKey, Peer<L>>,
    /// The peer of each link, for the events that name only the link.
    owners: HashMap<LinkId, PublicKey>,
    actions: VecDeque<Action<L>>,
    /// Whether an action was queued or a dial timer set since [`Peers::take_changed`].
    changed: bool,
    backoff: Backoff,
    jitter: Jitter,
    attempts: Attempt,
}

impl<L: LinkHandle> Peers<L> {
    /// No peers yet. `seed` seeds the jitter of redials.
    pub(crate) fn new(backoff: Backoff, seed: u64) -> Peers<L> {
        Peers {
            peers: HashMap::default(),
            owners: HashMap::default(),
            actions: VecDeque::new(),
            changed: false,
            backoff,
            jitter: Jitter::new(seed),
            attempts: 0,
        }
    }

    /// A peer from the config: dialed at once, and kept linked for the node's life.
    pub(crate) fn configure(&mut self, key: PublicKey, address: String, now: Instant) {
        let peer = self.peers.entry(key).or_insert_with(Peer::new);
        peer.kept = Some(Kept {
            origin: Origin::Configured,
            address,
            dial: Dial::Waiting {
                at: now,
                backoff: self.backoff.min,
            },
            settled: false,
            failures: 0,
        });
        self.changed = true;
    }

    /// A peer a registry found: dialed at once, and kept linked until [`Peers::forget`]. The
    /// same address again changes nothing; a new one closes the link to the old and dials the
    /// new. A configured peer stays as the config has it.
    pub(crate) fn discover(&mut self, key: PublicKey, address: String, now: Instant) {
        let min = self.backoff.min;
        let peer = self.peers.entry(key).or_insert_with(Peer::new);
        let waiting = Dial::Waiting {
            at: now,
            backoff: min,
        };
        let Some(kept) = &mut peer.kept else {
            peer.kept = Some(Kept {
                origin: Origin::Discovered,
                address,
                dial: waiting,
                settled: false,
                failures: 0,
            });
            self.changed = true;
            return;
        };
        if kept.origin == Origin::Configured || kept.address == address {
            return;
        }
        kept.address = address;
        self.changed = true;
        let old = std::mem::replace(&mut kept.dial, waiting);
        if let Dial::Linked { link } = old {
            self.close(&key, link, CloseReason::Readdressed);
        }
    }

    /// Stops keeping a discovered peer linked: its links close, a dial under way is ignored
    /// when it ends. A configured peer is not forgotten.
    pub(crate) fn forget(&mut self, key: &PublicKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer
            .kept
            .as_ref()
            .is_none_or(|k| k.origin != Origin::Discovered)
        {
            return;
        }
        peer.kept = None;
        let links: Vec<LinkId> = peer.links.iter().map(|e| e.link.id()).collect();
        for link in links {
            self.close(key, link, CloseReason::Forgotten);
        }
        self.drop_if_empty(key);
    }

    /// When the next timer is due: the earliest dial a kept peer waits for.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| match p.kept.as_ref()?.dial {
                Dial::Waiting { at, .. } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Starts the dials that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for (key, peer) in &mut self.peers {
            let Some(kept) = &mut peer.kept else { continue };
            let Dial::Waiting { at, backoff } = kept.dial else {
                continue;
            };
            if at > now {
                continue;
            }
            self.attempts += 1;
            kept.dial = Dial::Dialing {
                attempt: self.attempts,
                backoff,
            };
            self.actions.push_back(Action::Dial {
                key: *key,
                address: kept.address.clone(),
                attempt: self.attempts,
            });
        }
    }

    /// A kept peer's dial failed: it waits out its backoff, which doubles for the next time.
    /// Returns whether this is its first failure since it was last linked (worth a warning;
    /// the next ones are not).
    pub(crate) fn dial_failed(&mut self, key: &PublicKey, attempt: Attempt, now: Instant) -> bool {
        let Some(kept) = self.peers.get_mut(key).and_then(|p| p.kept.as_mut()) else {
            return false;
        };
        let Dial::Dialing {
            attempt: current,
            backoff,
        } = kept.dial
        else {
            return false;
        };
        if current != attempt {
            return false;
        }
        self.changed = true;
        kept.settled = true;
        kept.failures += 1;
        kept.dial = Dial::Waiting {
            at: now + self.jitter.spread(backoff),
            backoff: self.backoff.after(backoff),
        };
        kept.failures == 1
    }

    /// A new link to `key` is up and may carry calls at once. `known` is what this node
    /// already knows of the peer (name, datacenter) before its hello. Returns `false` for a
    /// kept dial that no longer counts (its peer was forgotten or moved meanwhile): the caller
    /// closes that link instead of running it.
    pub(crate) fn registered(
        &mut self,
        key: PublicKey,
        link: L,
        kind: LinkKind,
        known: Option<(&str, &str)>,
    ) -> bool {
        if let LinkKind::Kept(attempt) = kind {
            let kept = self.peers.get_mut(&key).and_then(|p| p.kept.as_mut());
            match kept {
                Some(kept) if matches!(kept.dial, Dial::Dialing { attempt: a, .. } if a == attempt) =>
                {
                    kept.dial = Dial::Linked { link: link.id() };
                    kept.failures = 0;
                }
                _ => return false,
            }
        }
        let peer = self.peers.entry(key).or_insert_with(Peer::new);
        if let Some((name, datacenter)) = known {
            if peer.name.is_empty() {
                peer.name = name.to_owned();
                peer.datacenter = datacenter.to_owned();
            }
        }
        self.owners.insert(link.id(), key);
        peer.links.push(Entry {
            link,
            kind,
            phase: Phase::Linked,
            close_queued: false,
        });
        true
    }

    /// The peer's hello came over `link`: it is who it says, and named so.
    pub(crate) fn hello(&mut self, link: LinkId, name: &str, datacenter: &str) {
        let Some(peer) = self.owner(link) else { return };
        peer.name = name.to_owned();
        peer.datacenter = datacenter.to_owned();
        if let Some(entry) = peer.entry(link) {
            entry.phase = entry.phase.max(Phase::Identified);
        }
    }

    /// The peer has sent its whole table over `link`.
    pub(crate) fn synced(&mut self, link: LinkId) {
        let Some(peer) = self.owner(link) else { return };
        if let Some(entry) = peer.entry(link) {
            entry.phase = entry.phase.max(Phase::Synced);
        }
        if let Some(kept) = &mut peer.kept {
            if kept.dial == (Dial::Linked { link }) {
                kept.settled = true;
            }
        }
    }

    /// `link` has closed. A kept peer whose own link it was is redialed after the shortest
    /// backoff, jittered.
    pub(crate) fn closed(&mut self, link: LinkId, now: Instant) {
        let Some(key) = self.owners.remove(&link) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.links.retain(|e| e.link.id() != link);
        if let Some(kept) = &mut peer.kept {
            if kept.dial == (Dial::Linked { link }) {
                self.changed = true;
                kept.settled = true;
                kept.dial = Dial::Waiting {
                    at: now + self.jitter.spread(self.backoff.min),
                    backoff: self.backoff.after(self.backoff.min),
                };
            }
        }
        self.drop_if_empty(&key);
    }

    /// `link` has carried no stream for the idle time. A link dialed for calls starts closing:
    /// no call is given it any more, and the caller closes it once its last stream ends.
    /// Returns whether it is closing; links kept for peers, or opened by them, never close
    /// for idleness here.
    pub(crate) fn idle(&mut self, link: LinkId) -> bool {
        let Some(entry) = self.owner(link).and_then(|p| p.entry(link)) else {
            return false;
        };
        if entry.kind.closes_when_idle() {
            entry.phase = Phase::Closing;
        }
        entry.phase == Phase::Closing
    }

    /// The route table no longer knows node `key`: its relayed sessions close, so calls to it
    /// fail at once rather than when a session times out.
    pub(crate) fn unrouted(&mut self, key: &PublicKey) {
        let Some(peer) = self.peers.get(key) else {
            return;
        };
        let relayed: Vec<LinkId> = peer
            .links
            .iter()
            .filter(|e| e.kind.relayed())
            .map(|e| e.link.id())
            .collect();
        for link in relayed {
            self.close(key, link, CloseReason::Unrouted);
        }
    }

    /// The link a call to `key` takes, if one is up: the newest direct link, else the newest
    /// relayed session.
    pub(crate) fn link_for(&self, key: &PublicKey) -> Option<L> {
        Some(self.peers.get(key)?.for_calls()?.link.clone())
    }

    /// A direct link to `key`, for relaying datagrams: relayed sessions cannot carry them.
    pub(crate) fn direct(&self, key: &PublicKey) -> Option<L> {
        let peer = self.peers.get(key)?;
        let entry = peer
            .links
            .iter()
            .rev()
            .find(|e| !e.kind.relayed() && e.usable())?;
        Some(entry.link.clone())
    }

    /// Whether every configured peer has been tried once: linked and synced, or found
    /// unreachable, or its link ended.
    pub(crate) fn settled(&self) -> bool {
        self.peers.values().all(|p| {
            p.kept
                .as_ref()
                .is_none_or(|k| k.origin != Origin::Configured || k.settled)
        })
    }

    /// The state of peer `key`; `None` for a node that is not a peer.
    #[cfg(test)]
    pub(crate) fn state(&self, key: &PublicKey) -> Option<PeerState> {
        Some(self.peers.get(key)?.state())
    }

    /// Every peer, for the admin API.
    pub(crate) fn views(&self) -> Vec<PeerView<L>> {
        self.peers
            .iter()
            .map(|(key, peer)| PeerView {
                key: *key,
                name: peer.name.clone(),
                datacenter: peer.datacenter.clone(),
                address: peer.kept.as_ref().map(|k| k.address.clone()),
                state: peer.state(),
                link: peer.for_calls().map(|e| e.link.clone()),
            })
            .collect()
    }

    /// The next action to perform.
    pub(crate) fn poll_action(&mut self) -> Option<Action<L>> {
        self.actions.pop_front()
    }

    /// Whether an action was queued or a dial timer set since the last call: the driver
    /// need be woken only then.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    fn owner(&mut self, link: LinkId) -> Option<&mut Peer<L>> {
        let key = self.owners.get(&link)?;
        self.peers.get_mut(key)
    }

    /// Marks `link` closing and queues its close, unless that was done already.
    fn close(&mut self, key: &PublicKey, link: LinkId, reason: CloseReason) {
        let Some(entry) = self.peers.get_mut(key).and_then(|p| p.entry(link)) else {
            return;
        };
        if entry.close_queued {
            return;
        }
        entry.close_queued = true;
        entry.phase = Phase::Closing;
        self.actions.push_back(Action::Close {
            link: entry.link.clone(),
            reason,
        });
        self.changed = true;
    }

    /// Forgets a peer nothing keeps: not kept, no link left.
    fn drop_if_empty(&mut self, key: &PublicKey) {
        if self
            .peers
            .get(key)
            .is_some_and(|p| p.kept.is_none() && p.links.is_empty())
        {
            self.peers.remove(key);
        }
    }
}
