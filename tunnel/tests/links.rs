//! Links between in-process nodes on loopback: the handshake with real sockets, streams
//! across it, and a handshake flood that must not disturb a live link.

mod common;

use common::WAIT;
use ferry_testing::{eventually_async, throughout_async};
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::{
    CatalogEntry, Identity, Network, NetworkConfig, PeerAddress, Protocol, StreamHeader,
    StreamKind, Transport, Trust,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Node {
    network: Network,
    identity: Identity,
}

/// Starts a node on loopback that dials `peers` and trusts `trusted`; it echoes every stream
/// peers open to it.
fn node(
    identity: Identity,
    peers: Vec<PeerAddress>,
    trusted: Vec<ferry_tunnel::PublicKey>,
) -> Node {
    let network = Network::start(NetworkConfig {
        identity: identity.clone(),
        name: "node".into(),
        datacenter: "dc1".into(),
        listen: "127.0.0.1:0".parse().expect("address"),
        advertise: None,
        gateway: false,
        peers,
        trust: Arc::new(Trust::new(trusted)),
        idle_link: Duration::from_secs(300),
        rekey: Duration::from_secs(120),
    })
    .expect("the network starts");
    common::serve_echo(&network);
    Node { network, identity }
}

/// A linked pair: `a` dials `b`, which trusts it and announces the service `echo`.
async fn linked_pair() -> (Node, Node) {
    let (id_a, id_b) = (
        Identity::generate().expect("key"),
        Identity::generate().expect("key"),
    );
    let b = node(id_b.clone(), vec![], vec![id_a.public()]);
    b.network.announce(vec![CatalogEntry {
        service: "echo".into(),
        protocol: Protocol::Tcp,
        healthy: true,
    }]);
    let address = b.network.local_addr().expect("bound").to_string();
    let a = node(
        id_a,
        vec![PeerAddress {
            address,
            key: id_b.public(),
        }],
        vec![],
    );
    eventually_async(WAIT, || {
        (!a.network.lookup("echo", None).is_empty())
            .then_some(())
            .ok_or("a route to echo")
    })
    .await;
    (a, b)
}

async fn echo_through(a: &Node, payload: &[u8]) -> Vec<u8> {
    let (route, link) = a
        .network
        .lookup("echo", None)
        .into_iter()
        .next()
        .expect("a route");
    assert_eq!(link.key(), route.key);
    let header = StreamHeader {
        kind: StreamKind::Tcp,
        protocol: Protocol::Tcp,
        service: "echo".into(),
        datacenter: String::new(),
    };
    let mut stream = link.open(&header).await.expect("a stream opens");
    stream.write_all(payload).await.expect("write");
    stream.shutdown().await.expect("finish");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.expect("read");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_links_and_streams_cross_in_both_directions() {
    let (a, b) = linked_pair().await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(echo_through(&a, &payload).await, payload);
    let peers = b.network.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0].key,
        a.identity.public(),
        "b knows a by its proven key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_gets_retries_and_leaves_a_live_link_alone() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let (a, b) = linked_pair().await;
    let b_addr = b.network.local_addr().expect("bound");
    let b_key = b.identity.public();
    // Strangers on 20 addresses flood b with handshakes: each a real Noise initiation from an
    // untrusted key. Many addresses push the rate past the Retry threshold; each address also
    // meets its own cap.
    let mut attempts = Vec::new();
    for host in 1..=20u8 {
        let address = std::net::SocketAddr::from(([127, 0, 1, host], 0));
        let stranger = Transport::bind(
            address,
            &Identity::generate().expect("key"),
            Arc::new(Trust::default()),
        )
        .expect("binds");
        for _ in 0..15 {
            let stranger = stranger.clone();
            attempts.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(5), stranger.connect(b_addr, &b_key)).await
            }));
        }
    }
    // The live link keeps carrying streams while the flood goes on.
    for round in 0..5 {
        let payload = vec![round as u8; 10_000];
        assert_eq!(echo_through(&a, &payload).await, payload, "round {round}");
    }
    for attempt in attempts {
        let outcome = attempt.await.expect("task");
        assert!(!matches!(outcome, Ok(Ok(_))), "no stranger got a link");
    }
    let counts = b.network.admission_counts();
    assert!(
        counts.retried > 0,
        "a burst of unvalidated handshakes was retried: {counts:?}"
    );
    assert!(
        counts.accepted <= 1 + 20 * 16 * 6,
        "each address met its cap: {counts:?}"
    );
    assert_eq!(echo_through(&a, b"still here").await, b"still here");
}

/// What a registry does with a node it found: `add_peer` dials it and trusts its key (each
/// side finds the other), `remove_peer` drops the link and its routes and the trust.
#[tokio::test]
async fn discovered_peers_link_and_leave_when_removed() {
    let (id_a, id_b) = (
        Identity::generate().expect("key"),
        Identity::generate().expect("key"),
    );
    let a = node(id_a.clone(), vec![], vec![]);
    let b = node(id_b.clone(), vec![], vec![]);
    b.network.announce(vec![CatalogEntry {
        service: "echo".into(),
        protocol: Protocol::Tcp,
        healthy: true,
    }]);
    let peer = |node: &Node, identity: &Identity| PeerAddress {
        address: node.network.local_addr().expect("bound").to_string(),
        key: identity.public(),
    };
    a.network.add_peer(peer(&b, &id_b));
    b.network.add_peer(peer(&a, &id_a));
    eventually_async(WAIT, || {
        (!a.network.lookup("echo", None).is_empty())
            .then_some(())
            .ok_or("a route to echo")
    })
    .await;
    assert!(a.network.trust().allows(&id_b.public()));

    a.network.remove_peer(&id_b.public());
    eventually_async(WAIT, || {
        a.network
            .lookup("echo", None)
            .is_empty()
            .then_some(())
            .ok_or("the route to withdraw")
    })
    .await;
    assert!(!a.network.trust().allows(&id_b.public()));
    // b keeps redialing a, which no longer trusts it: no link comes back.
    throughout_async("no route back", Duration::from_millis(300), || {
        a.network.lookup("echo", None).is_empty()
    })
    .await;
}
