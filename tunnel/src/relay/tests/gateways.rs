//! Inner sessions in their real shape: relayed by gateways over UDP loopback, through the loss
//! of a gateway that closes and of one that goes silent.

use super::*;

/// A gateway's forwarding, as the network does it: read each datagram's header and send the
/// datagram, one hop spent, on the link to its destination. It holds no inner endpoint and no keys
/// of the inner session.
async fn run_gateway(
    gateway: Transport,
    links: Arc<Mutex<HashMap<PublicKey, Link>>>,
    forwarded: Arc<AtomicUsize>,
) {
    while let Some(incoming) = gateway.accept().await {
        let Ok(conn) = incoming.await else { continue };
        let link = Link::new(conn);
        let Some(key) = link.peer_key() else { continue };
        links
            .lock()
            .expect("not poisoned")
            .insert(key, link.clone());
        let (links, forwarded) = (links.clone(), forwarded.clone());
        tokio::spawn(async move {
            while let Ok(bytes) = link.read_datagram().await {
                let Ok(relayed) = datagram::decode(&bytes) else {
                    continue;
                };
                let next = links
                    .lock()
                    .expect("not poisoned")
                    .get(&relayed.dst)
                    .cloned();
                if let (Some(next), Some(bytes)) = (next, datagram::spend_hop(bytes)) {
                    if next.send_datagram(bytes).is_ok() {
                        forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}

/// An endpoint node's half of relaying: inner packets out as datagrams on the first of
/// `outers` still open (a stand-in for the network's route choice), datagrams for `me` from
/// any of them into the relay. Returns the relay to build the inner transport on.
fn relay_over(outers: &[Link], me: PublicKey) -> Relay {
    let routes = outers.to_vec();
    let relay = Relay::new(Arc::new(move |dst, packet| {
        if let Some(link) = routes.iter().find(|link| !link.is_closed()) {
            let _ = link.send_datagram(datagram::encode(&dst, &me, datagram::MAX_HOPS, &packet));
        }
    }));
    for outer in outers {
        let (inbound, into) = (outer.clone(), relay.clone());
        tokio::spawn(async move {
            while let Ok(bytes) = inbound.read_datagram().await {
                let src = match datagram::decode(&bytes) {
                    Ok(relayed) if relayed.dst == me => relayed.src,
                    _ => continue,
                };
                into.deliver(src, bytes.slice(HEADER_LEN..));
            }
        });
    }
    relay
}

fn loopback(identity: &Identity, trusted: Vec<PublicKey>) -> Transport {
    Transport::bind(
        "127.0.0.1:0".parse().expect("address"),
        identity,
        Arc::new(Trust::new(trusted)),
    )
    .expect("binds on loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_relays_an_inner_session_it_cannot_read() {
    let (id_a, id_g, id_b) = (
        Identity::from_secret_bytes([1; 32]),
        Identity::from_secret_bytes([3; 32]),
        Identity::from_secret_bytes([2; 32]),
    );
    let (key_a, key_g, key_b) = (id_a.public(), id_g.public(), id_b.public());

    let gateway = loopback(&id_g, vec![key_a, key_b]);
    let g_addr = gateway.local_addr().expect("bound");
    let at_g = Arc::new(Mutex::new(HashMap::new()));
    let forwarded = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run_gateway(gateway, at_g.clone(), forwarded.clone()));

    let (outer_a, outer_b) = (loopback(&id_a, vec![]), loopback(&id_b, vec![]));
    let (a_g, b_g) = within("the outer links", 10, async {
        tokio::join!(
            outer_a.connect(g_addr, &key_g),
            outer_b.connect(g_addr, &key_g)
        )
    })
    .await;
    let (a_g, b_g) = (a_g.expect("a links to g"), b_g.expect("b links to g"));
    eventually_async(Duration::from_secs(10), || {
        (at_g.lock().expect("not poisoned").len() >= 2)
            .then_some(())
            .ok_or("g to hold both links")
    })
    .await;
    let room = a_g.connection().max_datagram_size().expect("datagrams on");
    assert!(
        room >= 1200 + HEADER_LEN,
        "an outer datagram holds {room} bytes"
    );

    let relay_a = relay_over(std::slice::from_ref(&a_g), key_a);
    let relay_b = relay_over(&[b_g], key_b);
    let inner_a = Transport::over_relay(&relay_a, &id_a, Arc::new(Trust::default())).expect("a");
    let inner_b =
        Transport::over_relay(&relay_b, &id_b, Arc::new(Trust::new(vec![key_a]))).expect("b");
    let (at_a, at_b) = inner_link(&inner_a, &relay_a, &inner_b, &key_b).await;
    assert_eq!(at_b.peer_key(), Some(key_a));
    assert_eq!(at_a.peer_key(), Some(key_b));

    let sent = payload(3, TEN_MIB);
    let started = Instant::now();
    let a_side = async {
        let mut stream = at_a.open(&header()).await.expect("a stream opens");
        stream.write_all(&sent).await.expect("write");
        stream.shutdown().await.expect("finish");
        // Waits for b's end, so that nothing is cut off when the test ends.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("b finishes");
    };
    let b_side = async {
        let mut stream = at_b.accept().await.expect("a stream arrives");
        assert_eq!(stream.read_header().await.expect("its header"), header());
        let mut got = Vec::with_capacity(TEN_MIB);
        stream.read_to_end(&mut got).await.expect("read");
        let elapsed = started.elapsed();
        stream.shutdown().await.expect("finish");
        (got, elapsed)
    };
    let ((), (got, elapsed)) = within("10 MiB through the gateway", 120, async {
        tokio::join!(a_side, b_side)
    })
    .await;
    assert!(
        got == sent,
        "b received {} bytes, not a's 10 MiB",
        got.len()
    );
    let forwarded = forwarded.load(Ordering::Relaxed);
    assert!(
        forwarded > TEN_MIB / 1200,
        "only {forwarded} datagrams went through g"
    );
    let secs = elapsed.as_secs_f64();
    println!(
        "relayed A → G → B: 10 MiB in {:.0} ms, {:.0} Mbit/s",
        secs * 1000.0,
        (TEN_MIB * 8) as f64 / secs / 1e6
    );
}

/// A gateway on loopback that trusts `trusted`, with its forwarder running.
struct Gateway {
    transport: Transport,
    addr: SocketAddr,
    links: Arc<Mutex<HashMap<PublicKey, Link>>>,
    forwarded: Arc<AtomicUsize>,
}

fn gateway(identity: &Identity, trusted: Vec<PublicKey>) -> Gateway {
    let transport = loopback(identity, trusted);
    let g = Gateway {
        addr: transport.local_addr().expect("bound"),
        links: Arc::default(),
        forwarded: Arc::default(),
        transport,
    };
    tokio::spawn(run_gateway(
        g.transport.clone(),
        g.links.clone(),
        g.forwarded.clone(),
    ));
    g
}

/// Two ends, a and b, and two gateways, g1 and g2, that trust them both.
struct TwoGateways {
    id_a: Identity,
    id_b: Identity,
    id_g1: Identity,
    id_g2: Identity,
    g1: Gateway,
    g2: Gateway,
}

/// An inner session between a and b over their links to both gateways, and what it needs
/// kept alive.
struct InnerSession {
    _ends: [Transport; 2],
    /// a–g1, a–g2, b–g1, b–g2.
    outer: Vec<Link>,
    _inner: [Transport; 2],
    _relays: [Relay; 2],
    at_a: Link,
    at_b: Link,
}

impl TwoGateways {
    fn new() -> TwoGateways {
        let id = |n: u8| Identity::from_secret_bytes([n; 32]);
        let (id_a, id_b, id_g1, id_g2) = (id(1), id(2), id(3), id(4));
        let trusted = vec![id_a.public(), id_b.public()];
        TwoGateways {
            g1: gateway(&id_g1, trusted.clone()),
            g2: gateway(&id_g2, trusted),
            id_a,
            id_b,
            id_g1,
            id_g2,
        }
    }

    /// Links each end to both gateways, g1 dialed at `g1_addr` (g1 itself, or a hop in front
    /// of it), then opens an inner session from a to b in which both ends prefer g1 while it
    /// lives.
    async fn inner_session(&self, g1_addr: SocketAddr) -> InnerSession {
        let (key_a, key_b) = (self.id_a.public(), self.id_b.public());
        let ends = [loopback(&self.id_a, vec![]), loopback(&self.id_b, vec![])];
        let mut outer = Vec::new();
        for end in &ends {
            for (to, key) in [
                (g1_addr, self.id_g1.public()),
                (self.g2.addr, self.id_g2.public()),
            ] {
                let link = within("an outer link", 10, end.connect(to, &key)).await;
                outer.push(link.expect("links to a gateway"));
            }
        }
        eventually_async(Duration::from_secs(10), || {
            let held = |g: &Gateway| g.links.lock().expect("not poisoned").len();
            (held(&self.g1) >= 2 && held(&self.g2) >= 2)
                .then_some(())
                .ok_or("both gateways to hold both links")
        })
        .await;
        let relay_a = relay_over(&outer[0..2], key_a);
        let relay_b = relay_over(&outer[2..4], key_b);
        let inner_a =
            Transport::over_relay(&relay_a, &self.id_a, Arc::new(Trust::default())).expect("a");
        let inner_b =
            Transport::over_relay(&relay_b, &self.id_b, Arc::new(Trust::new(vec![key_a])))
                .expect("b");
        let (at_a, at_b) = inner_link(&inner_a, &relay_a, &inner_b, &key_b).await;
        InnerSession {
            _ends: ends,
            outer,
            _inner: [inner_a, inner_b],
            _relays: [relay_a, relay_b],
            at_a,
            at_b,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_stream_survives_the_loss_of_its_gateway() {
    let cast = TwoGateways::new();
    let (g1, g2) = (&cast.g1, &cast.g2);
    let session = cast.inner_session(g1.addr).await;
    let (outer, at_a, at_b) = (&session.outer, &session.at_a, &session.at_b);

    let sent = payload(4, TEN_MIB);
    let a_side = async {
        let mut stream = at_a.open(&header()).await.expect("a stream opens");
        stream.write_all(&sent).await.expect("write");
        stream.shutdown().await.expect("finish");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("b finishes");
    };
    let b_side = async {
        let mut stream = at_b.accept().await.expect("a stream arrives");
        stream.read_header().await.expect("its header");
        let mut got = Vec::with_capacity(TEN_MIB);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            // A tenth of the way in, g1 goes away; the ends carry on through g2.
            if got.len() < TEN_MIB / 10 && got.len() + n >= TEN_MIB / 10 {
                g1.transport.close();
            }
            got.extend_from_slice(&buf[..n]);
        }
        stream.shutdown().await.expect("finish");
        got
    };
    let ((), got) = within("10 MiB across a lost gateway", 120, async {
        tokio::join!(a_side, b_side)
    })
    .await;
    assert!(outer[0].is_closed(), "g1 should be gone");
    let (via_g1, via_g2) = (
        g1.forwarded.load(Ordering::Relaxed),
        g2.forwarded.load(Ordering::Relaxed),
    );
    assert!(
        via_g1 > 0 && via_g2 > TEN_MIB / 2 / 1200,
        "{via_g1} datagrams went through g1 and {via_g2} through g2"
    );
    assert!(
        got == sent,
        "b received {} bytes, not a's 10 MiB",
        got.len()
    );
    assert!(!at_a.is_closed(), "the inner link should live on");
}

#[test]
fn garbage_and_truncated_datagrams_are_refused() {
    let good = datagram::encode(
        &PublicKey([1; 32]),
        &PublicKey([2; 32]),
        datagram::MAX_HOPS,
        &[7; 100],
    );
    assert!(datagram::decode(&good[..HEADER_LEN - 10]).is_err());
    assert!(datagram::decode(&good[..HEADER_LEN]).is_err());
    assert!(
        datagram::decode(b"\xffnot a relay datagram at all, but long enough to hold keys ok")
            .is_err()
    );
    assert!(datagram::decode(&[]).is_err());
}

/// A UDP hop in front of `to` that can go silent both ways, as a crashed machine does: unlike
/// a closing endpoint, it sends no CONNECTION_CLOSE.
async fn silenceable_hop(to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("binds"));
    let addr = front.local_addr().expect("bound");
    let silent = Arc::new(AtomicBool::new(false));
    let quiet = silent.clone();
    tokio::spawn(async move {
        // One socket toward `to` per client, so replies find their way back.
        let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, client)) = front.recv_from(&mut buf).await {
            if quiet.load(Ordering::Relaxed) {
                continue;
            }
            let back = match backs.entry(client) {
                Entry::Occupied(known) => known.get().clone(),
                Entry::Vacant(new) => {
                    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("binds"));
                    back.connect(to).await.expect("connects");
                    let (from, reply, quiet) = (back.clone(), front.clone(), quiet.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = from.recv(&mut buf).await {
                            if !quiet.load(Ordering::Relaxed) {
                                let _ = reply.send_to(&buf[..n], client).await;
                            }
                        }
                    });
                    new.insert(back).clone()
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    (addr, silent)
}

/// A gateway that goes silent (killed, or cut off) is noticed only after an outer link's idle
/// timeout, ~1 s; the inner session's longer timeout lets it ride that out and carry on through
/// the other gateway. A gateway that closes cleanly is covered by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_session_survives_a_gateway_that_goes_silent() {
    let cast = TwoGateways::new();
    let (hop, silent) = silenceable_hop(cast.g1.addr).await;
    let session = cast.inner_session(hop).await;
    let (outer, at_a, at_b) = (&session.outer, &session.at_a, &session.at_b);

    silent.store(true, Ordering::Relaxed);
    eventually_async(Duration::from_secs(10), || {
        outer[0]
            .is_closed()
            .then_some(())
            .ok_or("a to find g1 dead")
    })
    .await;
    // Through g2 now: a stream must still cross.
    let sent = payload(5, 100_000);
    let b_side = async {
        let mut stream = at_b.accept().await.expect("a stream arrives");
        stream.read_header().await.expect("its header");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read");
        stream.shutdown().await.expect("finish");
        got
    };
    let a_side = async {
        let mut stream = at_a.open(&header()).await.expect("a stream opens");
        stream.write_all(&sent).await.expect("write");
        stream.shutdown().await.expect("finish");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("b finishes");
    };
    let ((), got) = within("a stream through g2", 10, async {
        tokio::join!(a_side, b_side)
    })
    .await;
    assert!(got == sent, "b received {} bytes", got.len());
}
