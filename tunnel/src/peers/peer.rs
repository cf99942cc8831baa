//! What the peers are made of: the links they hold and in what phase, the dialing of kept
//! peers, the state read off those, and the actions the network performs for them.

use std::time::{Duration, Instant};

use crate::identity::PublicKey;

/// Names a link among all of this node's links (quinn's stable connection id).
pub(crate) type LinkId = usize;

/// Names one dial of a kept peer, so that its outcome counts only if nothing changed while it
/// was under way.
pub(crate) type Attempt = u64;

/// What the peers need of a link: which one it is. They never look at its connection: the
/// network holds their lock from within a QUIC connection's own (the relay socket sends from
/// there), so touching a connection under it could deadlock. A link that closed is known by
/// the event that reports it.
pub(crate) trait LinkHandle: Clone {
    fn id(&self) -> LinkId;
}

/// How a link came to be, which decides what its idling and its closing do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// Dialed to keep a configured or discovered peer linked, by dial `Attempt`.
    Kept(Attempt),
    /// Dialed for calls, to a node of this datacenter: closed once idle.
    ForCalls,
    /// Opened by the peer.
    Accepted,
    /// An end-to-end session through gateways: dialed by this node for calls (closed once
    /// idle), or by the peer.
    Relayed { dialed: bool },
}

impl LinkKind {
    pub(super) fn relayed(self) -> bool {
        matches!(self, LinkKind::Relayed { .. })
    }

    /// Whether a link of this kind closes when no stream has used it for a while.
    pub(super) fn closes_when_idle(self) -> bool {
        matches!(
            self,
            LinkKind::ForCalls | LinkKind::Relayed { dialed: true }
        )
    }
}

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Registered: calls may open streams on it, before the peer's hello arrives.
    Linked,
    /// The peer's hello was read: it is named.
    Identified,
    /// The peer has sent its whole route table.
    Synced,
    /// No new stream may start on it; it is being closed.
    Closing,
}

/// Why this node keeps a link to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Configured,
    Discovered,
}

/// The dialing of a kept peer's own link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dial {
    /// Not linked: the next dial starts at `at`; `backoff` is the wait after it, should it fail.
    Waiting { at: Instant, backoff: Duration },
    /// A dial is under way; `backoff` is the wait after it, should it fail.
    Dialing { attempt: Attempt, backoff: Duration },
    /// Its link is up.
    Linked { link: LinkId },
}

/// A peer's state, as the admin API and the tests see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Configured, not linked, waiting for its next dial.
    Configured,
    /// Found by a registry, not linked, waiting for its next dial.
    Discovered,
    /// Being dialed, or waiting out its backoff after a dial that failed.
    Dialing,
    /// Linked directly; its table is still arriving.
    Linked,
    /// Linked directly, its whole table received.
    Synced,
    /// Reached through gateways, by an end-to-end session.
    Relayed,
    /// Its links are closing, and nothing else is under way.
    Closing,
}

impl PeerState {
    /// The state as `/peers` and `ferry_tunnel_peers{state}` name it: `up` while calls can
    /// reach the peer, `connecting` while it is dialed, `down` otherwise.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Linked | PeerState::Synced | PeerState::Relayed => "up",
            PeerState::Dialing => "connecting",
            PeerState::Configured | PeerState::Discovered | PeerState::Closing => "down",
        }
    }
}

/// Why a link is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The registry forgot its peer.
    Forgotten,
    /// Its peer was found at another address, where it is dialed now.
    Readdressed,
    /// The route table no longer knows the node at its far end: calls to it fail at once
    /// rather than when the session times out.
    Unrouted,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Forgotten => "peer removed",
            CloseReason::Readdressed => "peer moved",
            CloseReason::Unrouted => "no route",
        }
    }
}

/// What the network is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action<L> {
    /// Dial the peer at `address` for the link this node keeps to it; report the outcome
    /// with `attempt`.
    Dial {
        key: PublicKey,
        address: String,
        attempt: Attempt,
    },
    /// Close the link.
    Close { link: L, reason: CloseReason },
}

/// One peer, as the admin API shows it. `link` is the one calls use, if any.
#[derive(Clone, Debug)]
pub(crate) struct PeerView<L> {
    pub(crate) key: PublicKey,
    pub(crate) name: String,
    pub(crate) datacenter: String,
    /// Where a kept peer is dialed.
    pub(crate) address: Option<String>,
    pub(crate) state: PeerState,
    pub(crate) link: Option<L>,
}

pub(super) struct Kept {
    pub(super) origin: Origin,
    pub(super) address: String,
    pub(super) dial: Dial,
    /// Tried once: linked and synced, or found unreachable, or its link ended. Only then is
    /// a configured peer no longer something the node waits for before it is ready.
    pub(super) settled: bool,
    /// Dials failed since it was last linked.
    pub(super) failures: u32,
}

pub(super) struct Entry<L> {
    pub(super) link: L,
    pub(super) kind: LinkKind,
    pub(super) phase: Phase,
    /// Whether its close was queued. A link closing for idleness waits for its last stream
    /// first; a reason to close it at once (its peer forgotten, its node gone) still queues.
    pub(super) close_queued: bool,
}

impl<L> Entry<L> {
    pub(super) fn usable(&self) -> bool {
        self.phase != Phase::Closing
    }
}

pub(super) struct Peer<L> {
    pub(super) kept: Option<Kept>,
    /// Oldest first; calls take the newest usable one.
    pub(super) links: Vec<Entry<L>>,
    pub(super) name: String,
    pub(super) datacenter: String,
}

impl<L: LinkHandle> Peer<L> {
    pub(super) fn new() -> Peer<L> {
        Peer {
            kept: None,
            links: Vec::new(),
            name: String::new(),
            datacenter: String::new(),
        }
    }

    pub(super) fn entry(&mut self, link: LinkId) -> Option<&mut Entry<L>> {
        self.links.iter_mut().find(|e| e.link.id() == link)
    }

    /// The link a call takes: the newest usable direct one, else the newest relayed one.
    pub(super) fn for_calls(&self) -> Option<&Entry<L>> {
        let newest = |relayed: bool| {
            self.links
                .iter()
                .rev()
                .find(|e| e.kind.relayed() == relayed && e.usable())
        };
        newest(false).or_else(|| newest(true))
    }

    pub(super) fn state(&self) -> PeerState {
        if let Some(entry) = self.for_calls() {
            return match (entry.kind.relayed(), entry.phase) {
                (true, _) => PeerState::Relayed,
                (false, Phase::Synced) => PeerState::Synced,
                (false, _) => PeerState::Linked,
            };
        }
        match &self.kept {
            Some(Kept {
                dial: Dial::Dialing { .. },
                ..
            }) => PeerState::Dialing,
            // Waiting out its backoff after a failed dial: still being reached.
            Some(Kept {
                dial: Dial::Waiting { .. },
                failures: 1..,
                ..
            }) => PeerState::Dialing,
            Some(kept) if self.links.is_empty() => match kept.origin {
                Origin::Configured => PeerState::Configured,
                Origin::Discovered => PeerState::Discovered,
            },
            _ => PeerState::Closing,
        }
    }
}
