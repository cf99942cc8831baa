//! Two nodes as a pair: app → Ferry A → Ferry B → workload (issue 2, point 5). Node B fronts
//! the workloads; node A fronts nothing and knows B only as a peer. Needs no root.

mod support;

use std::time::Duration;
use support::http::assert_sse_streamed;
use support::{
    curl, eventually, get, grpc_call, redis_cli, start_pair, wait_routable, wait_upstream_error,
    ws_chat, Backend, Node, Service,
};

/// Starts B fronting `services` and trusting A, and A with B in `[tunnel] peers` and a TCP
/// outbound for each of `tcp_outbounds`. Returns (A, B) once both are ready.
fn pair(services: Vec<Service>, tcp_outbounds: &[&str]) -> (Node, Node) {
    start_pair(
        Node::builder("node-a"),
        Node::builder("node-b"),
        services,
        tcp_outbounds,
    )
}

#[test]
fn http_calls_through_a_reach_the_service_on_b() {
    let greeter = Backend::http("greeter-on-b");
    let (a, _b) = pair(
        vec![Service::http("greeter", greeter.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");

    let response = get(a.outbound, "greeter", "/hello").unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains("hello from greeter-on-b"),
        "{response:?}"
    );

    let url = format!("http://{}/hello", a.outbound);
    let response = curl(&["--http2-prior-knowledge", &url, "-H", "Host: greeter.dc1"]);
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
    let response = curl(&[
        &echo,
        "-H",
        "Host: greeter",
        "--data-binary",
        "across the pair",
    ]);
    assert_eq!(response.body, "across the pair");
}

#[test]
fn server_sent_events_stream_across_the_pair() {
    let greeter = Backend::http("greeter-on-b");
    let (a, _b) = pair(
        vec![Service::http("greeter", greeter.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");
    assert_sse_streamed(a.outbound, "greeter");
}

#[test]
fn grpc_streams_cross_the_pair() {
    let grpc = Backend::grpc("grpc-on-b");
    let (a, b) = pair(vec![Service::grpc("greeter", grpc.address)], &[]);
    eventually(Duration::from_secs(20), || {
        a.assert_alive();
        b.assert_alive();
        let outcome = grpc_call(a.outbound, "greeter", "SayHello", &["warmup"]);
        match outcome.code.as_str() {
            "OK" => Ok(()),
            _ => Err(format!("SayHello through A: {outcome:?}")),
        }
    });
    let outcome = grpc_call(a.outbound, "greeter", "Chat", &["one", "two", "three"]);
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(outcome.replies, ["ONE", "TWO", "THREE"]);
}

#[test]
fn redis_reaches_b_through_a_tcp_outbound_on_a() {
    let redis = Backend::redis("redis-on-b");
    let (a, b) = pair(vec![Service::tcp("redis", redis.address)], &["redis"]);
    let outbound = a.tcp_outbound("redis");
    eventually(Duration::from_secs(20), || {
        a.assert_alive();
        b.assert_alive();
        match redis_cli(outbound, &["PING"])?.as_str() {
            "PONG" => Ok(()),
            other => Err(format!("PING through A: {other}")),
        }
    });
    assert_eq!(
        redis_cli(outbound, &["SET", "pair:key", "far"]).unwrap(),
        "OK"
    );
    assert_eq!(redis_cli(outbound, &["GET", "pair:key"]).unwrap(), "far");
    assert_eq!(
        redis_cli(redis.address, &["GET", "pair:key"]).unwrap(),
        "far"
    );
}

#[test]
fn websocket_crosses_the_pair() {
    let echo = Backend::websocket("ws-on-b");
    let (a, b) = pair(vec![Service::http("echo", echo.address)], &[]);
    eventually(Duration::from_secs(20), || {
        a.assert_alive();
        b.assert_alive();
        ws_chat(a.outbound, "echo", &["warmup"]).map(drop)
    });
    let replies = ws_chat(a.outbound, "echo", &["hi", "there"]).unwrap();
    assert_eq!(replies, ["ws-on-b: hi", "ws-on-b: there"]);
}

#[test]
fn a_pair_with_several_workers_each_carries_concurrent_calls() {
    let greeter = Backend::http("greeter-on-b");
    let (a, b) = start_pair(
        Node::builder("node-a").workers(4),
        Node::builder("node-b").workers(4),
        vec![Service::http("greeter", greeter.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");
    for node in [&a, &b] {
        // A current-thread runtime runs on `ferry`'s main thread; a multi-thread one adds
        // `tokio-rt-worker` threads.
        let workers = node
            .thread_names()
            .iter()
            .filter(|name| name.as_str() == "tokio-rt-worker")
            .count();
        assert!(
            workers >= 4,
            "{workers} worker threads: {:?}",
            node.thread_names()
        );
    }
    let outbound = a.outbound;
    let calls: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(move || get(outbound, "greeter", "/hello")))
        .collect();
    for call in calls {
        let response = call.join().expect("caller thread").unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert!(
            response.body.contains("hello from greeter-on-b"),
            "{response:?}"
        );
    }
}

#[test]
fn dead_workload_on_b_gets_an_error_from_a() {
    let mut greeter = Backend::http("greeter-on-b");
    let (a, _b) = pair(
        vec![Service::http("greeter", greeter.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");
    greeter.kill();
    wait_upstream_error(a.outbound, "greeter");
}
