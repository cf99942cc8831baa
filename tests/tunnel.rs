//! The tunnel between nodes: who may connect (trust), what a stranger learns (nothing),
//! garbage on the port, and a peer that dies and comes back. Loopback only; the tests across
//! network namespaces live in `netns.rs`.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{
    assert_ferry_error, curl, eventually, get, wait_ready, wait_routable, Backend, Node, Service,
};

fn metric(node: &Node, line_start: &str) -> f64 {
    let text = curl(&[&format!("http://{}/metrics", node.admin)]).body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn routes(node: &Node) -> serde_json::Value {
    serde_json::from_str(&curl(&[&format!("http://{}/routes", node.admin)]).body)
        .expect("/routes is JSON")
}

fn wait_for_metric(node: &Node, line_start: &str) {
    eventually(Duration::from_secs(10), || {
        if metric(node, line_start) >= 1.0 {
            Ok(())
        } else {
            Err(format!("{line_start} not counted yet"))
        }
    });
}

/// Node b fronting `greeter`, and node a linked to it and ready to route there.
fn linked_pair() -> (Backend, Node, Node) {
    let web = Backend::http("web");
    let b = Node::builder("b").service(Service::http("greeter", web.address).health("/healthz"));
    let a = Node::builder("a").peer(b.tunnel(), b.public_key());
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&a);
    wait_routable(&a, "greeter");
    (web, a, b)
}

#[test]
fn an_untrusted_node_is_refused_and_learns_nothing() {
    let web = Backend::http("web");
    let b = Node::builder("b").service(Service::http("greeter", web.address).health("/healthz"));
    let a = Node::builder("a").peer(b.tunnel(), b.public_key());
    let b = b.start(); // b does not trust a
    let a = a.start();
    wait_ready(&b);
    wait_for_metric(&b, r#"ferry_tunnel_handshakes_total{result="untrusted"}"#);
    assert_eq!(
        routes(&a),
        serde_json::json!([]),
        "a learned no route from b"
    );
    let answer = get(a.outbound, "greeter", "/hello").expect("curl runs");
    assert_ferry_error(&answer, 503, "no-route", "greeter");
    assert!(
        a.log().contains("untrusted key"),
        "a's log says why it cannot link"
    );
    let peers: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("http://{}/peers", a.admin)]).body)
            .expect("/peers is JSON");
    assert_eq!(
        peers[0]["key"],
        b.public_key.as_str(),
        "a shows the key it expects from b: {peers}"
    );
    assert_ne!(peers[0]["state"], "up", "{peers}");
}

#[test]
fn a_key_added_to_the_trust_file_is_trusted_within_seconds() {
    let web = Backend::http("web");
    let b = Node::builder("b")
        .service(Service::http("greeter", web.address).health("/healthz"))
        .trust_file("trusted.keys");
    let a = Node::builder("a").peer(b.tunnel(), b.public_key());
    let a_key = a.public_key().to_owned();
    // The file must exist before b starts: a node refuses to start without its trust file.
    std::fs::write(b.dir().join("trusted.keys"), "# one key a line\n")
        .expect("can write the trust file");
    let b = b.start();
    wait_ready(&b);
    let a = a.start();
    wait_for_metric(&b, r#"ferry_tunnel_handshakes_total{result="untrusted"}"#);
    std::fs::write(
        b.dir().join("trusted.keys"),
        format!("# one key a line\n{a_key}\n"),
    )
    .expect("can write");
    let added = Instant::now();
    wait_routable(&a, "greeter");
    assert!(
        added.elapsed() < Duration::from_secs(10),
        "took {:?}",
        added.elapsed()
    );
}

#[test]
fn dialing_with_the_wrong_key_fails_the_handshake() {
    let web = Backend::http("web");
    let impostor_key = Node::builder("impostor").public_key().to_owned();
    let b = Node::builder("b").service(Service::http("greeter", web.address).health("/healthz"));
    let a = Node::builder("a").peer(b.tunnel(), &impostor_key);
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_for_metric(&b, r#"ferry_tunnel_handshakes_total{result="failed"}"#);
    assert_eq!(routes(&a), serde_json::json!([]));
    let answer = get(a.outbound, "greeter", "/hello").expect("curl runs");
    assert_ferry_error(&answer, 503, "no-route", "greeter");
}

#[test]
fn garbage_datagrams_on_the_tunnel_port_disturb_no_link() {
    let (_web, a, b) = linked_pair();
    let handshakes = metric(&b, r#"ferry_tunnel_handshakes_total{result="ok"}"#);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..3000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 1400) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        // Every third looks like a QUIC v1 Initial, so it gets past the first checks.
        if i % 3 == 0 && len > 8 {
            datagram[0] = 0xc0;
            datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
        }
        let target = if i % 2 == 0 { b.tunnel } else { a.tunnel };
        let _ = socket.send_to(&datagram, target);
        if i % 500 == 0 {
            let r = get(a.outbound, "greeter", "/hello").expect("curl runs");
            assert_eq!(
                r.status, 200,
                "a call during the garbage (datagram {i}): {}",
                r.body
            );
        }
    }
    for _ in 0..10 {
        assert_eq!(
            get(a.outbound, "greeter", "/hello")
                .expect("curl runs")
                .status,
            200
        );
    }
    assert_eq!(
        metric(&b, r#"ferry_tunnel_handshakes_total{result="ok"}"#),
        handshakes,
        "the link was never re-established: it never broke"
    );
}

#[test]
fn a_peer_killed_and_restarted_with_the_same_key_is_back_within_seconds() {
    let (_web, a, b) = linked_pair();

    b.kill();
    let killed = Instant::now();
    let gone = eventually(Duration::from_secs(10), || {
        let r = get(a.outbound, "greeter", "/hello")?;
        if r.status == 503 {
            Ok(r)
        } else {
            Err(format!("still {}", r.status))
        }
    });
    assert_ferry_error(&gone, 503, "no-route", "greeter");
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(3),
        "a noticed after {noticed:?}"
    );

    b.restart();
    let restarted = Instant::now();
    wait_routable(&a, "greeter");
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "back after {:?}",
        restarted.elapsed()
    );
}

#[test]
fn a_slow_reader_never_makes_a_node_buffer_without_bound() {
    let (_web, a, b) = linked_pair();
    let before = a.rss_kib().max(b.rss_kib());
    // 512 MiB offered, read at 1 MiB/s for 4 s: without flow control end to end, the bytes the
    // reader has not taken would pile up in some node.
    let url = format!("http://{}/big?mb=512", a.outbound);
    let reader = std::thread::spawn(move || {
        support::curl_ran(&[
            &url,
            "-H",
            "Host: greeter",
            "--limit-rate",
            "1M",
            "--max-time",
            "4",
            "-o",
            "/dev/null",
        ])
    });
    let mut peak = before;
    while !reader.is_finished() {
        peak = peak.max(a.rss_kib()).max(b.rss_kib());
        std::thread::sleep(Duration::from_millis(100)); // sampling, not waiting for a condition
    }
    let ran = reader.join().expect("the reader thread");
    assert_eq!(
        ran.code,
        Some(28),
        "curl stopped at its --max-time, still reading: {}",
        ran.stderr
    );
    let grew_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        grew_mib < 64,
        "a node grew by {grew_mib} MiB while the reader lagged 500 MiB behind"
    );
    assert_eq!(
        get(a.outbound, "greeter", "/hello")
            .expect("curl runs")
            .status,
        200
    );
}

#[test]
fn links_update_their_keys_on_schedule_and_keep_carrying_calls() {
    let web = Backend::http("web");
    let b = Node::builder("b")
        .tunnel_line("rekey = \"200ms\"")
        .service(Service::http("greeter", web.address).health("/healthz"));
    let a = Node::builder("a")
        .tunnel_line("rekey = \"200ms\"")
        .peer(b.tunnel(), b.public_key());
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&a);
    wait_routable(&a, "greeter");
    let updates = |node: &Node| metric(node, "ferry_tunnel_key_updates_total");
    let before = (updates(&a), updates(&b));
    let handshakes = metric(&b, r#"ferry_tunnel_handshakes_total{result="ok"}"#);
    eventually(Duration::from_secs(10), || {
        let r = get(a.outbound, "greeter", "/hello")?;
        assert_eq!(r.status, 200, "a call while keys change: {}", r.body);
        let now = (updates(&a), updates(&b));
        (now.0 >= before.0 + 5.0 && now.1 >= before.1 + 5.0)
            .then_some(())
            .ok_or_else(|| format!("key updates went from {before:?} to {now:?}"))
    });
    assert_eq!(
        metric(&b, r#"ferry_tunnel_handshakes_total{result="ok"}"#),
        handshakes,
        "the keys changed on the same link: no new handshake"
    );
}
