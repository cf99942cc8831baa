//! The tunnel between two hosts: network namespaces `a` and `b` joined by a veth pair. The
//! workloads listen on b's loopback, which nothing in `a` can reach except through the tunnel
//! from node A (in `a`) to node B (in `b`). Clients run inside `a` as an application there
//! would. Needs root and `ip` (iproute2): without them every test here fails saying so.
//! The loopback versions of the trust, garbage and kill tests are in `tunnel.rs`.

mod support;

use std::time::{Duration, Instant};

use support::netns::{Netns, NetnsPair};
use support::{
    assert_ferry_error, command_in, curl_in, curl_ran_in, eventually, eventually_every, get_in,
    grpc_call_in, python_script, redis_cli_in, run, start_pair, wait_ready, wait_routable, Backend,
    Node, NodeBuilder, Service,
};

/// A node that runs inside `host` with its tunnel on the host's veth address.
fn builder_in(host: &Netns, name: &str) -> NodeBuilder {
    Node::builder(name).netns(&host.name).tunnel_ip(host.ip)
}

/// Starts B in `b` fronting `services` and trusting A, and A in `a` dialing B's veth address
/// with B's key, with a TCP outbound for each of `tcp_outbounds`. Returns (A, B), both ready.
fn pair(hosts: &NetnsPair, services: Vec<Service>, tcp_outbounds: &[&str]) -> (Node, Node) {
    let a = builder_in(&hosts.a, "node-a");
    let b = builder_in(&hosts.b, "node-b");
    start_pair(a, b, services, tcp_outbounds)
}

/// Asserts that nothing in `a` can open a TCP connection to the workload on b's loopback
/// `port`, neither at b's veth address nor at a's own loopback: only the tunnel gets there.
fn assert_unreachable_from_a(hosts: &NetnsPair, port: u16) {
    for ip in [hosts.b.ip.to_string(), "127.0.0.1".to_owned()] {
        let url = format!("http://{ip}:{port}/hello");
        let ran = curl_ran_in(hosts.a.netns(), &["--max-time", "5", &url]);
        // curl exit 7: could not connect. Anything else means something answered there.
        assert_eq!(
            ran.code,
            Some(7),
            "curl {url} from netns a should fail to connect: {ran:?}"
        );
    }
}

/// The value of the first metric line of `node` starting with `line_start`; 0 if absent.
fn metric(node: &Node, line_start: &str) -> f64 {
    node.admin_get("/metrics")
        .body
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// How many UDP datagrams the kernel of `host` has delivered to its sockets so far
/// (`InDatagrams` in `/proc/net/snmp`, which is per network namespace).
fn udp_datagrams_delivered(host: &Netns) -> u64 {
    let ran = run(
        command_in(host.netns(), "cat").arg("/proc/net/snmp"),
        Duration::from_secs(10),
    );
    let mut udp = ran.stdout.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InDatagrams")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no Udp InDatagrams in /proc/net/snmp of {}: {ran:?}",
                host.name
            )
        })
}

/// Whether `node`'s `/peers` lists a peer in state `up`.
fn has_peer_up(node: &Node) -> bool {
    node.admin_json("/peers")
        .as_array()
        .is_some_and(|peers| peers.iter().any(|p| p["state"] == "up"))
}

/// Between polls when a test times how soon something happens.
const POLL: Duration = Duration::from_millis(20);

/// B in `b` fronting an HTTP workload `greeter` on b's loopback, and A in `a` that reaches it:
/// returns (the workload, A, B) once `greeter` is routable through A.
fn greeter_pair(hosts: &NetnsPair) -> (Backend, Node, Node) {
    let web = Backend::http_in(hosts.b.netns(), "greeter-on-b");
    let (a, b) = pair(
        hosts,
        vec![Service::http("greeter", web.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");
    (web, a, b)
}

const UNTRUSTED: &str = r#"ferry_tunnel_handshakes_total{result="untrusted"}"#;
const HANDSHAKES_OK: &str = r#"ferry_tunnel_handshakes_total{result="ok"}"#;

#[test]
fn http_and_h2c_from_a_reach_a_service_on_bs_loopback_only_through_the_tunnel() {
    let hosts = NetnsPair::new();
    let (web, a, _b) = greeter_pair(&hosts);

    // The workload is up on b's loopback, and nothing in a reaches it directly.
    let direct = curl_in(hosts.b.netns(), &[&format!("http://{}/hello", web.address)]);
    assert_eq!(
        direct.status, 200,
        "the workload answers inside b: {direct:?}"
    );
    assert_unreachable_from_a(&hosts, web.address.port());

    let response = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello").unwrap();
    assert_eq!(
        (response.version.as_str(), response.status),
        ("1.1", 200),
        "{response:?}"
    );
    assert!(
        response.body.contains("hello from greeter-on-b"),
        "{response:?}"
    );

    let url = format!("http://{}/hello", a.outbound);
    let response = curl_in(
        hosts.a.netns(),
        &["--http2-prior-knowledge", &url, "-H", "Host: greeter.dc1"],
    );
    assert_eq!(
        (response.version.as_str(), response.status),
        ("2", 200),
        "{response:?}"
    );
    assert!(
        response.body.contains("hello from greeter-on-b"),
        "{response:?}"
    );

    let echo = format!("http://{}/echo", a.outbound);
    let body = "across two hosts".repeat(4096);
    let response = curl_in(
        hosts.a.netns(),
        &[&echo, "-H", "Host: greeter", "--data-binary", &body],
    );
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert!(response.body == body, "the echo came back altered");
}

#[test]
fn grpc_unary_and_bidi_streaming_from_a_reach_bs_loopback() {
    let hosts = NetnsPair::new();
    let grpc = Backend::grpc_in(hosts.b.netns(), "grpc-on-b");
    let (a, b) = pair(&hosts, vec![Service::grpc("greeter", grpc.address)], &[]);
    assert_unreachable_from_a(&hosts, grpc.address.port());

    let unary = eventually(Duration::from_secs(20), || {
        a.assert_alive();
        b.assert_alive();
        let outcome = grpc_call_in(hosts.a.netns(), a.outbound, "greeter", "SayHello", &["a"]);
        match outcome.code.as_str() {
            "OK" => Ok(outcome),
            _ => Err(format!("SayHello through A: {outcome:?}")),
        }
    });
    assert_eq!(unary.replies, ["hello a"]);

    let chat = grpc_call_in(
        hosts.a.netns(),
        a.outbound,
        "greeter",
        "Chat",
        &["one", "two", "three"],
    );
    assert_eq!(chat.code, "OK", "{chat:?}");
    assert_eq!(chat.replies, ["ONE", "TWO", "THREE"]);
}

#[test]
fn redis_cli_in_a_sets_and_gets_on_bs_loopback_through_a_tcp_outbound() {
    let hosts = NetnsPair::new();
    let redis = Backend::redis_in(hosts.b.netns(), "redis-on-b");
    let (a, b) = pair(
        &hosts,
        vec![Service::tcp("redis", redis.address)],
        &["redis"],
    );
    assert_unreachable_from_a(&hosts, redis.address.port());
    let outbound = a.tcp_outbound("redis");

    eventually(Duration::from_secs(20), || {
        a.assert_alive();
        b.assert_alive();
        match redis_cli_in(hosts.a.netns(), outbound, &["PING"])?.as_str() {
            "PONG" => Ok(()),
            other => Err(format!("PING through A: {other}")),
        }
    });
    let set = redis_cli_in(hosts.a.netns(), outbound, &["SET", "netns:key", "far"]);
    assert_eq!(set.as_deref(), Ok("OK"));
    let get = redis_cli_in(hosts.a.netns(), outbound, &["GET", "netns:key"]);
    assert_eq!(get.as_deref(), Ok("far"));
    // The value landed in the redis on b.
    let stored = redis_cli_in(hosts.b.netns(), redis.address, &["GET", "netns:key"]);
    assert_eq!(stored.as_deref(), Ok("far"));
}

#[test]
fn a_node_in_a_that_b_does_not_trust_is_refused_and_learns_no_route() {
    let hosts = NetnsPair::new();
    let web = Backend::http_in(hosts.b.netns(), "greeter-on-b");
    let b = builder_in(&hosts.b, "node-b")
        .service(Service::http("greeter", web.address).health("/healthz"));
    let a = builder_in(&hosts.a, "node-a").peer(b.tunnel(), b.public_key());
    let stranger = builder_in(&hosts.a, "stranger").peer(b.tunnel(), b.public_key());
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    let stranger = stranger.start();
    wait_ready(&b);
    // A, on the same host as the stranger, gets through: the refusal is about the key.
    wait_routable(&a, "greeter");

    eventually(Duration::from_secs(10), || {
        stranger.assert_alive();
        match metric(&b, UNTRUSTED) {
            n if n >= 1.0 => Ok(()),
            _ => Err(format!("{UNTRUSTED} not counted on B yet")),
        }
    });
    wait_ready(&stranger);
    assert_eq!(
        stranger.admin_json("/routes"),
        serde_json::json!([]),
        "the stranger learned no route from B"
    );
    let answer = get_in(hosts.a.netns(), stranger.outbound, "greeter", "/hello").unwrap();
    assert_ferry_error(&answer, 503, "no-route", "greeter");
    assert!(
        stranger.log().contains("untrusted key"),
        "the stranger's log says why it cannot link"
    );
}

#[test]
fn garbage_datagrams_from_a_to_bs_tunnel_port_leave_the_link_working() {
    let hosts = NetnsPair::new();
    let (_web, a, b) = greeter_pair(&hosts);
    let handshakes = metric(&b, HANDSHAKES_OK);
    let delivered = udp_datagrams_delivered(&hosts.b);

    for batch in 0..6u32 {
        let ran = run(
            command_in(hosts.a.netns(), "python3")
                .arg(python_script("udp_garbage.py"))
                .arg(b.tunnel.to_string())
                .arg("500")
                .arg((0x2545_f491u32 + batch).to_string()),
            Duration::from_secs(30),
        );
        assert!(
            ran.success() && ran.stdout.starts_with("SENT"),
            "udp_garbage.py from netns a: {ran:?}"
        );
        let response = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello").unwrap();
        assert_eq!(
            response.status, 200,
            "a call after garbage batch {batch}: {response:?}"
        );
    }
    for _ in 0..10 {
        let response = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello").unwrap();
        assert_eq!(response.status, 200, "{response:?}");
    }
    // The garbage did reach B's tunnel socket (the only UDP socket in b), not the void.
    let arrived = udp_datagrams_delivered(&hosts.b) - delivered;
    assert!(
        arrived >= 3000,
        "only {arrived} datagrams reached a UDP socket in b"
    );
    assert_eq!(
        metric(&b, HANDSHAKES_OK),
        handshakes,
        "the link was never re-established: it never broke"
    );
}

#[test]
fn b_killed_with_sigkill_is_answered_503_within_3_s_and_is_back_soon_after_a_restart() {
    let hosts = NetnsPair::new();
    let (_web, a, b) = greeter_pair(&hosts);

    b.kill();
    let killed = Instant::now();
    // A call made before A learns of the death waits for it; none waits longer.
    let gone = eventually_every(POLL, Duration::from_secs(10), || {
        a.assert_alive();
        let response = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello")?;
        match response.status {
            503 => Ok(response),
            status => Err(format!("still {status} after {:?}", killed.elapsed())),
        }
    });
    let answered = killed.elapsed();
    assert_ferry_error(&gone, 503, "no-route", "greeter");
    assert!(
        answered < Duration::from_secs(3),
        "A answered 503 only {answered:?} after B was killed"
    );
    // From then on, calls are answered at once rather than left to hang.
    let started = Instant::now();
    let again = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello").unwrap();
    let took = started.elapsed();
    assert_ferry_error(&again, 503, "no-route", "greeter");
    assert!(took < Duration::from_secs(1), "the next 503 took {took:?}");

    b.restart();
    let restarted = Instant::now();
    wait_routable(&a, "greeter");
    let back = restarted.elapsed();
    assert!(back < Duration::from_secs(10), "B back after {back:?}");
    let response = get_in(hosts.a.netns(), a.outbound, "greeter", "/hello").unwrap();
    assert!(
        response.body.contains("hello from greeter-on-b"),
        "{response:?}"
    );
    eprintln!("B killed: A answered 503 after {answered:?}; B restarted: back after {back:?}");
}

#[test]
fn a_peer_killed_with_sigkill_leaves_as_peers_within_1_5_s() {
    let hosts = NetnsPair::new();
    let (_web, a, b) = greeter_pair(&hosts);
    assert!(
        has_peer_up(&a),
        "A lists B as up: {}",
        a.admin_json("/peers")
    );

    b.kill();
    let killed = Instant::now();
    eventually_every(POLL, Duration::from_secs(10), || {
        a.assert_alive();
        match has_peer_up(&a) {
            false => Ok(()),
            true => Err(format!("B still up on A: {}", a.admin_json("/peers"))),
        }
    });
    let noticed = killed.elapsed();
    eprintln!("B killed: A noticed after {noticed:?}");
    // The promised 1.5 s, plus one poll of /peers (a curl through `ip netns exec`, ~15 ms) and the
    // pause between polls.
    assert!(
        noticed < Duration::from_millis(1500) + POLL * 4,
        "A still listed B as up {noticed:?} after B was killed"
    );
}
