//! The peers in memory, with simulated time: the races the network once had, pinned down.

use std::time::{Duration, Instant};

use super::*;
use crate::catalog::Catalog;
use crate::identity::PublicKey;

#[derive(Clone, Debug, PartialEq, Eq)]
struct FakeLink {
    id: LinkId,
}

impl FakeLink {
    fn new(id: LinkId) -> FakeLink {
        FakeLink { id }
    }
}

impl LinkHandle for FakeLink {
    fn id(&self) -> LinkId {
        self.id
    }
}

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

fn peers() -> Peers<FakeLink> {
    Peers::new(Backoff::DEFAULT, 7)
}

fn actions(peers: &mut Peers<FakeLink>) -> Vec<Action<FakeLink>> {
    std::iter::from_fn(|| peers.poll_action()).collect()
}

/// Fires the timers due at `now` and returns the attempt of the one dial they start.
fn dial_due(peers: &mut Peers<FakeLink>, now: Instant) -> Attempt {
    peers.handle_timeout(now);
    match actions(peers).as_slice() {
        [Action::Dial { attempt, .. }] => *attempt,
        other => panic!("expected one dial at {now:?}, got {other:?}"),
    }
}

fn catalog(n: u8, datacenter: &str, address: &str) -> Catalog {
    Catalog {
        node: format!("node{n}"),
        datacenter: datacenter.into(),
        key: key(n),
        address: address.into(),
        gateway: false,
        subscriptions: Vec::new(),
        services: Vec::new(),
    }
}

#[test]
fn a_call_between_a_links_registration_and_its_hello_takes_the_link() {
    let mut peers = peers();
    let link = FakeLink::new(1);
    // A call dialed node 2, named from the route table before its hello.
    assert!(peers.registered(key(2), link.clone(), LinkKind::ForCalls, Some(("b", "dc1"))));
    assert_eq!(peers.link_for(&key(2)), Some(link.clone()));
    assert_eq!(peers.state(&key(2)), Some(PeerState::Linked));
    let view = &peers.views()[0];
    assert_eq!((view.name.as_str(), view.state.as_str()), ("b", "up"));
    peers.hello(1, "b", "dc1");
    peers.synced(1);
    assert_eq!(peers.state(&key(2)), Some(PeerState::Synced));
    assert_eq!(peers.link_for(&key(2)), Some(link));
}

#[test]
fn an_accepted_link_is_unnamed_until_its_hello() {
    let mut peers = peers();
    assert!(peers.registered(key(2), FakeLink::new(1), LinkKind::Accepted, None));
    assert_eq!(peers.views()[0].name, "");
    peers.hello(1, "b", "dc1");
    assert_eq!(peers.views()[0].name, "b");
}

#[test]
fn a_peer_that_restarts_during_a_dial_is_reached_over_its_own_link() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "10.0.0.2:7700".into(), t0);
    assert_eq!(peers.state(&key(2)), Some(PeerState::Configured));
    let attempt = dial_due(&mut peers, t0);
    assert_eq!(peers.state(&key(2)), Some(PeerState::Dialing));
    // The peer came back and dialed this node first; calls use that link at once.
    let theirs = FakeLink::new(10);
    assert!(peers.registered(key(2), theirs.clone(), LinkKind::Accepted, None));
    assert_eq!(peers.link_for(&key(2)), Some(theirs.clone()));
    assert_eq!(peers.state(&key(2)).map(PeerState::as_str), Some("up"));
    // The dial, aimed at the old process, fails: the peer waits out its backoff, yet stays up.
    let t1 = t0 + Duration::from_millis(300);
    peers.dial_failed(&key(2), attempt, t1);
    assert!(peers.settled(), "a failed dial settles the peer");
    assert_eq!(peers.link_for(&key(2)), Some(theirs.clone()));
    let next = peers.next_timeout().expect("a redial");
    assert!(next >= t1 + Duration::from_millis(50) && next <= t1 + Duration::from_millis(100));
    // The redial succeeds; the newest link is the one calls take.
    let attempt = dial_due(&mut peers, next);
    let ours = FakeLink::new(11);
    assert!(peers.registered(key(2), ours.clone(), LinkKind::Kept(attempt), None));
    assert_eq!(peers.link_for(&key(2)), Some(ours.clone()));
    // Their link closing leaves ours, with nothing to redial.
    peers.closed(10, next);
    assert_eq!(peers.link_for(&key(2)), Some(ours));
    assert_eq!(peers.next_timeout(), None);
}

#[test]
fn a_dial_that_ends_after_its_peer_moved_does_not_count() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.discover(key(2), "10.0.0.2:7700".into(), t0);
    let old = dial_due(&mut peers, t0);
    peers.discover(key(2), "10.0.0.9:7700".into(), t0);
    assert!(
        !peers.registered(key(2), FakeLink::new(1), LinkKind::Kept(old), None),
        "the dial to the old address is refused"
    );
    assert_eq!(peers.link_for(&key(2)), None);
    peers.handle_timeout(t0);
    assert_eq!(
        actions(&mut peers),
        vec![Action::Dial {
            key: key(2),
            address: "10.0.0.9:7700".into(),
            attempt: old + 1,
        }]
    );
    peers.dial_failed(&key(2), old, t0);
    assert_eq!(
        peers.state(&key(2)),
        Some(PeerState::Dialing),
        "the old failure is ignored"
    );
}

#[test]
fn a_peer_found_at_a_new_address_is_dialed_there_and_its_old_link_closed() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.discover(key(2), "a:1".into(), t0);
    peers.discover(key(2), "a:1".into(), t0);
    let attempt = dial_due(&mut peers, t0);
    let link = FakeLink::new(1);
    assert!(peers.registered(key(2), link.clone(), LinkKind::Kept(attempt), None));
    peers.discover(key(2), "a:1".into(), t0);
    assert!(
        actions(&mut peers).is_empty(),
        "the same address changes nothing"
    );
    peers.discover(key(2), "b:1".into(), t0);
    assert_eq!(
        actions(&mut peers),
        vec![Action::Close {
            link,
            reason: CloseReason::Readdressed
        }]
    );
    assert_eq!(peers.link_for(&key(2)), None);
    assert_eq!(peers.next_timeout(), Some(t0));
}

#[test]
fn a_forgotten_peer_has_every_link_closed_and_is_gone_once_they_are() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.discover(key(2), "a:1".into(), t0);
    let attempt = dial_due(&mut peers, t0);
    assert!(peers.registered(key(2), FakeLink::new(1), LinkKind::Kept(attempt), None));
    assert!(peers.registered(key(2), FakeLink::new(2), LinkKind::Accepted, None));
    peers.forget(&key(2));
    let closed: Vec<LinkId> = actions(&mut peers)
        .into_iter()
        .map(|a| match a {
            Action::Close { link, reason } => {
                assert_eq!(reason, CloseReason::Forgotten);
                link.id
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(closed, vec![1, 2]);
    assert_eq!(peers.link_for(&key(2)), None);
    assert_eq!(peers.state(&key(2)), Some(PeerState::Closing));
    peers.closed(1, t0);
    peers.closed(2, t0);
    assert_eq!(peers.state(&key(2)), None);
    assert_eq!(peers.next_timeout(), None, "no redial of a forgotten peer");
}

#[test]
fn a_configured_peer_is_not_forgotten_nor_readdressed_by_a_registry() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "a:1".into(), t0);
    peers.discover(key(2), "b:1".into(), t0);
    peers.forget(&key(2));
    peers.handle_timeout(t0);
    assert_eq!(
        actions(&mut peers),
        vec![Action::Dial {
            key: key(2),
            address: "a:1".into(),
            attempt: 1,
        }]
    );
}

#[test]
fn a_relayed_session_outlives_its_gateway_but_not_its_route() {
    let mut peers = peers();
    let session = FakeLink::new(5);
    assert!(peers.registered(
        key(3),
        session.clone(),
        LinkKind::Relayed { dialed: true },
        Some(("c", "dc2"))
    ));
    assert_eq!(peers.state(&key(3)), Some(PeerState::Relayed));
    // One gateway died: the table found the node through the other one, so the session
    // stays and its packets take the new way.
    assert_eq!(peers.link_for(&key(3)), Some(session.clone()));
    // The table lost the node altogether: the session closes, and a call gets no link.
    peers.unrouted(&key(3));
    assert_eq!(
        actions(&mut peers),
        vec![Action::Close {
            link: session,
            reason: CloseReason::Unrouted
        }]
    );
    assert_eq!(peers.link_for(&key(3)), None);
    assert_eq!(
        reach(&key(3), "dc1", None, None),
        Reach::Unreachable("no route to the node")
    );
}

#[test]
fn a_direct_link_is_preferred_to_a_relayed_session() {
    let mut peers = peers();
    let direct = FakeLink::new(1);
    assert!(peers.registered(key(3), direct.clone(), LinkKind::Accepted, None));
    assert!(peers.registered(
        key(3),
        FakeLink::new(2),
        LinkKind::Relayed { dialed: false },
        None
    ));
    assert_eq!(peers.link_for(&key(3)), Some(direct.clone()));
    assert_eq!(peers.direct(&key(3)), Some(direct));
}

#[test]
fn idle_close_racing_a_new_call_sends_the_call_to_a_new_link() {
    let t0 = Instant::now();
    let mut peers = peers();
    let old = FakeLink::new(1);
    assert!(peers.registered(key(2), old.clone(), LinkKind::ForCalls, Some(("b", "dc1"))));
    assert!(peers.idle(1), "a link dialed for calls closes once idle");
    // The call that comes now is not given the closing link: it dials.
    assert_eq!(peers.link_for(&key(2)), None);
    assert_eq!(peers.state(&key(2)), Some(PeerState::Closing));
    let new = FakeLink::new(2);
    assert!(peers.registered(key(2), new.clone(), LinkKind::ForCalls, Some(("b", "dc1"))));
    assert_eq!(peers.link_for(&key(2)), Some(new.clone()));
    // The old link's close arrives after the new link is up: the new one stays.
    peers.closed(1, t0);
    assert_eq!(peers.link_for(&key(2)), Some(new));
    assert!(!peers.idle(1), "a closed link is no longer known");
}

#[test]
fn links_kept_for_peers_or_opened_by_them_never_close_for_idleness() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "a:1".into(), t0);
    let attempt = dial_due(&mut peers, t0);
    assert!(peers.registered(key(2), FakeLink::new(1), LinkKind::Kept(attempt), None));
    assert!(peers.registered(key(3), FakeLink::new(2), LinkKind::Accepted, None));
    assert!(peers.registered(
        key(4),
        FakeLink::new(3),
        LinkKind::Relayed { dialed: false },
        None
    ));
    assert!(!peers.idle(1));
    assert!(!peers.idle(2));
    assert!(!peers.idle(3));
    assert!(peers.link_for(&key(2)).is_some());
}

#[test]
fn redials_back_off_exponentially_with_jitter_within_bounds() {
    let mut now = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "a:1".into(), now);
    let mut expected = Backoff::DEFAULT.min;
    for _ in 0..12 {
        let attempt = dial_due(&mut peers, now);
        peers.dial_failed(&key(2), attempt, now);
        let next = peers.next_timeout().expect("a redial");
        let wait = next - now;
        assert!(
            wait >= expected / 2 && wait <= expected,
            "waited {wait:?} for a backoff of {expected:?}"
        );
        peers.handle_timeout(next - Duration::from_millis(1));
        assert!(actions(&mut peers).is_empty(), "no dial before its time");
        now = next;
        expected = (expected * 2).min(Backoff::DEFAULT.max);
    }
    assert_eq!(expected, Backoff::DEFAULT.max);
    // A link that comes up resets the backoff: when it drops, the redial comes quickly.
    let attempt = dial_due(&mut peers, now);
    assert!(peers.registered(key(2), FakeLink::new(1), LinkKind::Kept(attempt), None));
    assert_eq!(peers.next_timeout(), None);
    peers.closed(1, now);
    let wait = peers.next_timeout().expect("a redial") - now;
    assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100));
}

#[test]
fn jitter_spreads_redials_of_peers_that_failed_together() {
    let now = Instant::now();
    let mut peers = peers();
    for n in 2..12 {
        peers.configure(key(n), format!("h{n}:1"), now);
    }
    peers.handle_timeout(now);
    for action in actions(&mut peers) {
        if let Action::Dial { key, attempt, .. } = action {
            peers.dial_failed(&key, attempt, now);
        }
    }
    let mut waits: Vec<Instant> = (2..12)
        .filter_map(|n| match peers.peers[&key(n)].kept.as_ref()?.dial {
            Dial::Waiting { at, .. } => Some(at),
            _ => None,
        })
        .collect();
    waits.sort();
    waits.dedup();
    assert!(waits.len() >= 8, "redials bunched: {waits:?}");
}

#[test]
fn a_configured_peer_settles_when_synced_or_found_unreachable() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "a:1".into(), t0);
    peers.configure(key(3), "b:1".into(), t0);
    assert!(!peers.settled());
    peers.handle_timeout(t0);
    let dials = actions(&mut peers);
    for action in dials {
        let Action::Dial {
            key: k, attempt, ..
        } = action
        else {
            continue;
        };
        if k == key(2) {
            assert!(peers.registered(k, FakeLink::new(1), LinkKind::Kept(attempt), None));
        } else {
            peers.dial_failed(&k, attempt, t0);
        }
    }
    peers.hello(1, "a", "dc1");
    assert!(
        !peers.settled(),
        "linked, but its table is still on its way"
    );
    peers.synced(1);
    assert!(peers.settled());
    // A discovered peer is the registry's to wait for, not this.
    peers.discover(key(4), "c:1".into(), t0);
    assert!(peers.settled());
}

#[test]
fn a_call_reaches_a_node_by_its_datacenter_and_its_route() {
    let here = catalog(2, "dc1", "10.0.0.2:7700");
    assert_eq!(
        reach(&key(2), "dc1", Some(&here), Some(key(9))),
        Reach::Direct {
            address: "10.0.0.2:7700".into(),
            name: "node2".into(),
            datacenter: "dc1".into(),
        }
    );
    let abroad = catalog(3, "DC2", "10.1.0.3:7700");
    assert_eq!(
        reach(&key(3), "dc1", Some(&abroad), Some(key(9))),
        Reach::Relayed
    );
    let hidden = catalog(4, "dc1", "");
    assert_eq!(
        reach(&key(4), "dc1", Some(&hidden), Some(key(9))),
        Reach::Relayed
    );
    let only_a_port = catalog(5, "dc1", "0.0.0.0:7700");
    assert_eq!(
        reach(&key(5), "dc1", Some(&only_a_port), Some(key(9))),
        Reach::Relayed
    );
    assert_eq!(
        reach(&key(2), "dc1", Some(&here), Some(key(2))),
        Reach::Unreachable("the link to the node has closed"),
        "a route the node gave itself dies with its link"
    );
}

#[test]
fn a_link_closing_for_idleness_is_still_closed_at_once_when_its_node_leaves_the_table() {
    let mut peers = peers();
    let session = FakeLink::new(5);
    assert!(peers.registered(
        key(3),
        session.clone(),
        LinkKind::Relayed { dialed: true },
        None
    ));
    // Idle: it waits for the stream still open on it to end...
    assert!(peers.idle(5));
    assert!(actions(&mut peers).is_empty());
    // ...unless its far end is gone: then it closes now, stream or not.
    peers.unrouted(&key(3));
    assert_eq!(
        actions(&mut peers),
        vec![Action::Close {
            link: session,
            reason: CloseReason::Unrouted
        }]
    );
    peers.unrouted(&key(3));
    assert!(actions(&mut peers).is_empty(), "queued once");
}

#[test]
fn a_peer_that_cannot_be_reached_shows_as_connecting_between_its_dials() {
    let t0 = Instant::now();
    let mut peers = peers();
    peers.configure(key(2), "a:1".into(), t0);
    let attempt = dial_due(&mut peers, t0);
    peers.dial_failed(&key(2), attempt, t0);
    assert_eq!(
        peers.state(&key(2)).map(PeerState::as_str),
        Some("connecting")
    );
    // One that was linked and lost its link is down until its redial starts.
    let attempt = dial_due(&mut peers, t0 + Duration::from_secs(1));
    assert!(peers.registered(key(2), FakeLink::new(1), LinkKind::Kept(attempt), None));
    peers.closed(1, t0 + Duration::from_secs(2));
    assert_eq!(peers.state(&key(2)).map(PeerState::as_str), Some("down"));
}
