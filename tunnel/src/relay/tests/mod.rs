//! Inner sessions over relays, with real quinn endpoints: here joined by a lossy in-memory
//! forwarder; in `gateways.rs`, in their real shape, relayed by gateways over UDP loopback.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use ferry_testing::eventually_async;

use super::datagram::{self, HEADER_LEN};
use super::Relay;
use crate::header::{Protocol, StreamHeader, StreamKind};
use crate::identity::{Identity, PublicKey};
use crate::link::{Link, TunnelStream};
use crate::noise::Trust;
use crate::transport::Transport;

const TEN_MIB: usize = 10 << 20;

/// Fails the test instead of hanging it.
async fn within<T>(what: &str, secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Seeded pseudo-random numbers: reproducible loss, reordering and payloads.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Bytes without short repeats, so a misplaced chunk cannot pass for the right one.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn header() -> StreamHeader {
    StreamHeader {
        kind: StreamKind::Tcp,
        protocol: Protocol::Tcp,
        service: "bulk".into(),
        datacenter: String::new(),
    }
}

/// `a` dials `b` over their relays; returns both ends, dialer first.
async fn inner_link(
    a: &Transport,
    relay_a: &Relay,
    b: &Transport,
    key_b: &PublicKey,
) -> (Link, Link) {
    let accept = async {
        let incoming = b.accept().await.expect("an incoming handshake");
        Link::new(incoming.await.expect("the responder's handshake completes"))
    };
    let dial = async {
        a.connect(relay_a.address_of(key_b), key_b)
            .await
            .expect("the initiator's handshake completes")
    };
    let (dialer, acceptor) = within("the inner handshake", 10, async {
        tokio::join!(dial, accept)
    })
    .await;
    (dialer, acceptor)
}

/// Writes `out` on `stream` while reading everything the peer writes, then returns that.
async fn exchange(stream: TunnelStream, out: Vec<u8>) -> Vec<u8> {
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        writer.write_all(&out).await.expect("write");
        writer.shutdown().await.expect("finish");
    };
    let read = async move {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.expect("read");
        back
    };
    tokio::join!(write, read).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_session_survives_loss_and_reordering() {
    let (id_a, id_b) = (
        Identity::from_secret_bytes([1; 32]),
        Identity::from_secret_bytes([2; 32]),
    );
    let (key_a, key_b) = (id_a.public(), id_b.public());

    // Both relays hand their packets to one forwarder, as (source, destination, packet).
    let (tx, mut rx) = mpsc::unbounded_channel::<(PublicKey, PublicKey, Bytes)>();
    let sender = |src: PublicKey| {
        let tx = tx.clone();
        Arc::new(move |dst, packet| {
            let _ = tx.send((src, dst, packet));
        })
    };
    let relay_a = Relay::new(sender(key_a));
    let relay_b = Relay::new(sender(key_b));
    let relays: HashMap<PublicKey, Relay> =
        [(key_a, relay_a.clone()), (key_b, relay_b.clone())].into();
    let largest = Arc::new(Mutex::new(0usize));
    let seen = largest.clone();
    tokio::spawn(async move {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut held = None;
        while let Some((src, dst, packet)) = rx.recv().await {
            {
                let mut largest = seen.lock().expect("not poisoned");
                *largest = (*largest).max(packet.len());
            }
            let Some(relay) = relays.get(&dst) else {
                continue;
            };
            match rng.next() % 100 {
                0..5 => continue,
                // Hold one packet back until after the next: reordered by one.
                5..15 if held.is_none() => {
                    held = Some((relay.clone(), src, packet));
                    continue;
                }
                _ => relay.deliver(src, packet),
            }
            if let Some((relay, src, packet)) = held.take() {
                relay.deliver(src, packet);
            }
        }
    });

    let a = Transport::over_relay(&relay_a, &id_a, Arc::new(Trust::default())).expect("a");
    let b = Transport::over_relay(&relay_b, &id_b, Arc::new(Trust::new(vec![key_a]))).expect("b");
    let (at_a, at_b) = inner_link(&a, &relay_a, &b, &key_b).await;
    assert_eq!(at_a.peer_key(), Some(key_b));
    assert_eq!(at_b.peer_key(), Some(key_a));

    let (to_b, to_a) = (payload(1, TEN_MIB), payload(2, TEN_MIB));
    let a_side = async {
        let stream = at_a.open(&header()).await.expect("a stream opens");
        exchange(stream, to_b.clone()).await
    };
    let b_side = async {
        let mut stream = at_b.accept().await.expect("a stream arrives");
        assert_eq!(stream.read_header().await.expect("its header"), header());
        exchange(stream, to_a.clone()).await
    };
    let (at_a_got, at_b_got) = within("10 MiB each way", 120, async {
        tokio::join!(a_side, b_side)
    })
    .await;
    assert!(
        at_a_got == to_a,
        "a received {} bytes, not b's 10 MiB",
        at_a_got.len()
    );
    assert!(
        at_b_got == to_b,
        "b received {} bytes, not a's 10 MiB",
        at_b_got.len()
    );
    let largest = *largest.lock().expect("not poisoned");
    assert!(largest <= 1200, "an inner packet of {largest} bytes");
}

mod gateways;
