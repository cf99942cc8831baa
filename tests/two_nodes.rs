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

/// A `ferry run` started with flags alone, killed when dropped.
struct FlagsOnly(std::process::Child);

impl Drop for FlagsOnly {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry keygen` in `dir`: the key file and its public key.
fn keygen(dir: &support::TempDir) -> (String, String) {
    let key = dir.join("node.key");
    let key = key.to_str().expect("a UTF-8 temp path").to_owned();
    let made = support::ferry(&["keygen", "--out", &key], dir.path());
    assert!(made.success(), "keygen failed: {made:?}");
    let public = made
        .stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .expect("keygen prints the public key")
        .to_owned();
    (key, public)
}

fn run_with_flags(dir: &support::TempDir, flags: &[String]) -> FlagsOnly {
    let log = std::fs::File::create(dir.join("ferry.log")).expect("a log file");
    let child = std::process::Command::new(support::ferry_bin())
        .arg("run")
        .args(flags)
        .env("FERRY_STATE_DIR", dir.path())
        .env_remove("FERRY_CONFIG")
        .stdout(log.try_clone().expect("the log again"))
        .stderr(log)
        .spawn()
        .expect("ferry runs");
    FlagsOnly(child)
}

#[test]
fn a_pair_started_with_flags_alone_talks() {
    let greeter = Backend::http("greeter-on-b");
    let (dir_a, dir_b) = (
        support::TempDir::new("flags-a"),
        support::TempDir::new("flags-b"),
    );
    let ((key_a, public_a), (key_b, public_b)) = (keygen(&dir_a), keygen(&dir_b));
    let local = |port: u16| format!("127.0.0.1:{port}");
    let tunnel_b = local(support::free_tunnel_port());
    let outbound_a = local(support::free_tcp_port());
    let _b = run_with_flags(
        &dir_b,
        &[
            "--name=b".into(),
            format!("--key={key_b}"),
            format!("--listen={tunnel_b}"),
            format!("--admin={}", local(support::free_tcp_port())),
            format!("--api={}", local(support::free_tcp_port())),
            format!("--outbound={}", local(support::free_tcp_port())),
            format!("--service=greeter={}", greeter.address),
            // Without this, b refuses a's handshake: no config file lists a's key.
            format!("--trust={public_a}"),
        ],
    );
    let _a = run_with_flags(
        &dir_a,
        &[
            "--name=a".into(),
            format!("--key={key_a}"),
            format!("--listen={}", local(support::free_tunnel_port())),
            format!("--admin={}", local(support::free_tcp_port())),
            format!("--api={}", local(support::free_tcp_port())),
            format!("--outbound={outbound_a}"),
            format!("--peer={tunnel_b}#{public_b}"),
        ],
    );
    let outbound = outbound_a.parse().expect("an address");
    let answer = eventually(Duration::from_secs(20), || {
        let response = get(outbound, "greeter", "/hello")?;
        match response.status {
            200 => Ok(response.body),
            _ => Err(format!("{response:?}")),
        }
    });
    assert!(answer.contains("hello from greeter-on-b"), "{answer}");
}

#[test]
fn a_serving_node_told_to_stop_finishes_the_calls_peers_sent_it() {
    let greeter = Backend::http("greeter-on-b");
    let (a, b) = pair(
        vec![Service::http("greeter", greeter.address).health("/healthz")],
        &[],
    );
    wait_routable(&a, "greeter");
    let outbound = a.outbound;
    let call = std::thread::spawn(move || get(outbound, "greeter", "/slow?ms=1500"));
    // The backend records a path when the request arrives: then the call is in flight at b.
    eventually(Duration::from_secs(10), || {
        let seen = support::curl_ran(&[&format!("http://{}/seen", greeter.address)])
            .response()?
            .body;
        seen.contains("/slow")
            .then_some(())
            .ok_or_else(|| "the slow call has not reached the backend yet".to_owned())
    });
    b.signal("TERM");
    let response = call.join().expect("the caller thread").expect("curl runs");
    assert_eq!(
        (response.status, response.body.trim()),
        (200, "slow done by greeter-on-b"),
        "the call b was serving finished before b closed its links"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(15)), Some(0));
}
