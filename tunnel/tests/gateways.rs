//! In-process meshes on loopback with gateways: nodes of one datacenter dial each other on
//! first use, and nodes of different datacenters reach each other through end-to-end sessions
//! relayed by gateways.

mod common;

use common::WAIT;
use ferry_testing::{eventually_async, throughout_async};
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::{
    CatalogEntry, Identity, Network, NetworkConfig, PeerAddress, Protocol, PublicKey, StreamHeader,
    StreamKind, Trust,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Node {
    network: Network,
    key: PublicKey,
}

/// Starts a node that dials `peers` and trusts `trusted`, fronts `services`, and echoes every
/// stream opened to it.
fn node(
    name: &str,
    dc: &str,
    gateway: bool,
    peers: &[&Node],
    trusted: &[PublicKey],
    services: &[&str],
) -> Node {
    start(config(name, dc, gateway, peers, trusted), services)
}

/// A sidecar that only calls, closing the links it dialed after `idle_link` without a
/// stream.
fn caller(name: &str, dc: &str, peers: &[&Node], idle_link: Duration) -> Node {
    let config = NetworkConfig {
        idle_link,
        ..config(name, dc, false, peers, &[])
    };
    start(config, &[])
}

fn config(
    name: &str,
    dc: &str,
    gateway: bool,
    peers: &[&Node],
    trusted: &[PublicKey],
) -> NetworkConfig {
    NetworkConfig {
        identity: Identity::generate().expect("key"),
        name: name.into(),
        datacenter: dc.into(),
        listen: "127.0.0.1:0".parse().expect("address"),
        advertise: None,
        gateway,
        peers: peers
            .iter()
            .map(|p| PeerAddress {
                address: p.network.local_addr().expect("bound").to_string(),
                key: p.key,
            })
            .collect(),
        trust: Arc::new(Trust::new(trusted.iter().copied())),
        // Longer than any test here runs, unless the test says otherwise.
        idle_link: Duration::from_secs(300),
        rekey: Duration::from_secs(120),
    }
}

fn start(config: NetworkConfig, services: &[&str]) -> Node {
    let key = config.identity.public();
    let network = Network::start(config).expect("the network starts");
    network.announce(
        services
            .iter()
            .map(|s| CatalogEntry {
                service: s.to_string(),
                protocol: Protocol::Tcp,
                healthy: true,
            })
            .collect(),
    );
    common::serve_echo(&network);
    Node { network, key }
}

async fn echo(from: &Node, service: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let (route, peer) = from
        .network
        .lookup(service, None)
        .into_iter()
        .next()
        .ok_or("no route")?;
    let header = StreamHeader {
        kind: StreamKind::Tcp,
        protocol: Protocol::Tcp,
        service: service.into(),
        datacenter: route.datacenter,
    };
    let mut stream = peer.open(&header).await.map_err(|e| e.to_string())?;
    stream.write_all(payload).await.map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    stream
        .read_to_end(&mut back)
        .await
        .map_err(|e| e.to_string())?;
    Ok(back)
}

fn peer_path(of: &Node, name: &str) -> Option<String> {
    of.network
        .peers()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_reaches_another_datacenter_through_two_gateways() {
    // Each gateway must trust the nodes that dial it, which start after it; the nodes beyond
    // trust each other because the gateways vouch for them.
    let g2 = node("g2", "dc2", true, &[], &[], &[]);
    let b = node("b", "dc2", false, &[&g2], &[], &["echo"]);
    let g1 = node("g1", "dc1", true, &[&g2], &[], &[]);
    let a = node("a", "dc1", false, &[&g1], &[], &[]);
    g2.network.trust().replace([b.key, g1.key]);
    g1.network.trust().replace([a.key]);

    eventually_async(WAIT, || {
        a.network
            .lookup("echo", None)
            .first()
            .filter(|(r, _)| r.datacenter == "dc2" && r.via == Some(g1.key))
            .map(drop)
            .ok_or("a learns echo in dc2")
    })
    .await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo(&a, "echo", &payload).await.expect("echo"), payload);
    assert_eq!(peer_path(&a, "b").as_deref(), Some("via g1"));
    // The gateways carried it without a session of their own to either end.
    assert_eq!(peer_path(&g1, "b"), None);
    assert_eq!(peer_path(&g2, "a"), None);
    // And b can call back over the session a opened.
    assert!(b.network.peers().iter().any(|p| p.name == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_one_datacenter_dial_each_other_on_first_use() {
    let g = node("g", "dc1", true, &[], &[], &[]);
    let s = node("s", "dc1", false, &[&g], &[], &["echo"]);
    let a = node("a", "dc1", false, &[&g], &[], &[]);
    g.network.trust().replace([s.key, a.key]);
    eventually_async(WAIT, || {
        (!a.network.lookup("echo", None).is_empty())
            .then_some(())
            .ok_or("a learns echo")
    })
    .await;
    assert_eq!(peer_path(&a, "s"), None, "no link before a call");
    assert_eq!(echo(&a, "echo", b"hello").await.expect("echo"), b"hello");
    eventually_async(WAIT, || {
        (peer_path(&a, "s").as_deref() == Some("direct"))
            .then_some(())
            .ok_or("a direct link to s")
    })
    .await;
    // Once linked, the route is learned from s itself.
    eventually_async(WAIT, || {
        a.network
            .lookup("echo", None)
            .first()
            .filter(|(r, _)| r.via.is_none())
            .map(drop)
            .ok_or("a direct route")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_through_gateways_closes_and_is_opened_again() {
    let g2 = node("g2", "dc2", true, &[], &[], &[]);
    let b = node("b", "dc2", false, &[&g2], &[], &["echo"]);
    let g1 = node("g1", "dc1", true, &[&g2], &[], &[]);
    let a = caller("a", "dc1", &[&g1], ms(800));
    g2.network.trust().replace([b.key, g1.key]);
    g1.network.trust().replace([a.key]);
    eventually_async(WAIT, || {
        (!a.network.lookup("echo", None).is_empty())
            .then_some(())
            .ok_or("a learns echo in dc2")
    })
    .await;
    for round in ["first", "after the idle close"] {
        assert_eq!(echo(&a, "echo", b"hi").await.expect(round), b"hi");
        assert_eq!(peer_path(&a, "b").as_deref(), Some("via g1"), "{round}");
        eventually_async(WAIT, || {
            (peer_path(&a, "b").is_none() && peer_path(&b, "a").is_none())
                .then_some(())
                .ok_or("the idle session closes")
        })
        .await;
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_dialed_for_calls_closes_when_idle_and_is_dialed_again() {
    let idle = ms(800);
    let g = node("g", "dc1", true, &[], &[], &[]);
    let s = node("s", "dc1", false, &[&g], &[], &["echo"]);
    let a = caller("a", "dc1", &[&g], idle);
    g.network.trust().replace([s.key, a.key]);
    eventually_async(WAIT, || {
        (!a.network.lookup("echo", None).is_empty())
            .then_some(())
            .ok_or("a learns echo")
    })
    .await;

    // A stream left open keeps its link, however quiet it is.
    let (route, peer) = a.network.lookup("echo", None).remove(0);
    let header = StreamHeader {
        kind: StreamKind::Tcp,
        protocol: Protocol::Tcp,
        service: "echo".into(),
        datacenter: route.datacenter,
    };
    let mut stream = peer.open(&header).await.expect("a stream opens");
    stream.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.expect("echoed");
    assert_eq!(peer_path(&a, "s").as_deref(), Some("direct"));
    throughout_async("the link with a stream open", idle * 3, || {
        peer_path(&a, "s").as_deref() == Some("direct")
    })
    .await;

    // Once no stream is open, the link goes, on both sides.
    drop(stream);
    eventually_async(WAIT, || {
        peer_path(&a, "s")
            .is_none()
            .then_some(())
            .ok_or("a closes the idle link")
    })
    .await;
    eventually_async(WAIT, || {
        peer_path(&s, "a")
            .is_none()
            .then_some(())
            .ok_or("s sees it closed")
    })
    .await;

    // And the next call dials it again.
    assert_eq!(echo(&a, "echo", b"again").await.expect("echo"), b"again");
    assert_eq!(peer_path(&a, "s").as_deref(), Some("direct"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_the_loss_of_one_gateway() {
    let g2 = node("g2", "dc2", true, &[], &[], &[]);
    let b = node("b", "dc2", false, &[&g2], &[], &["echo"]);
    let g1a = node("g1a", "dc1", true, &[&g2], &[], &[]);
    let g1b = node("g1b", "dc1", true, &[&g2, &g1a], &[], &[]);
    let a = node("a", "dc1", false, &[&g1a, &g1b], &[], &[]);
    g2.network.trust().replace([b.key, g1a.key, g1b.key]);
    g1a.network.trust().replace([a.key, g1b.key]);
    g1b.network.trust().replace([a.key]);
    eventually_async(WAIT, || {
        let via = a.network.lookup("echo", None).first().and_then(|r| r.0.via);
        via.filter(|via| *via == g1a.key || *via == g1b.key)
            .ok_or("two ways to echo")
    })
    .await;
    let (route, peer) = a.network.lookup("echo", None).remove(0);
    let used = if route.via == Some(g1a.key) {
        &g1a
    } else {
        &g1b
    };
    let header = StreamHeader {
        kind: StreamKind::Tcp,
        protocol: Protocol::Tcp,
        service: "echo".into(),
        datacenter: "dc2".into(),
    };
    let stream = peer.open(&header).await.expect("stream");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let total = 4usize << 20;
    let sender = tokio::spawn(async move {
        let chunk = vec![7u8; 16 << 10];
        let mut sent = 0;
        while sent < total {
            writer.write_all(&chunk).await.expect("write");
            sent += chunk.len();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        writer.shutdown().await.expect("finish");
    });
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut closed = false;
    while received < total {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("data keeps coming")
            .expect("read");
        assert!(n > 0, "stream ended early at {received}");
        received += n;
        if !closed && received > total / 4 {
            used.network.close();
            closed = true;
        }
    }
    sender.await.expect("sender");
    assert_eq!(received, total);
}
