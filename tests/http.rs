//! HTTP through one node's outbound to a local workload, as the reference (`docs/reference.md`,
//! "How an outbound HTTP request is routed") promises. Needs no root or namespaces.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::http::assert_sse_streamed;
use support::{
    assert_ferry_error, curl, eventually, get, greeter_node, require_tool, run,
    wait_upstream_error, without_proxy,
};

#[test]
fn every_host_form_routes_to_the_service() {
    let (_backend, node) = greeter_node("");
    for host in [
        "greeter",
        "greeter.mesh",
        "greeter.dc1",
        "greeter.dc1.mesh",
        "greeter:1234",
        "greeter.mesh:80",
        "greeter.dc1:8080",
    ] {
        let response = get(node.outbound, host, "/hello").unwrap();
        assert_eq!(response.status, 200, "Host: {host} → {response:?}");
        assert!(
            response.body.contains("hello from greeter-backend"),
            "Host: {host} reached something else: {response:?}"
        );
    }
}

#[test]
fn h2c_with_prior_knowledge_reaches_the_service() {
    let (_backend, node) = greeter_node("");
    let url = format!("http://{}/hello", node.outbound);
    let response = curl(&["--http2-prior-knowledge", &url, "-H", "Host: greeter"]);
    assert_eq!(
        response.version, "2",
        "not answered over HTTP/2: {response:?}"
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains("hello from greeter-backend"),
        "{response:?}"
    );
}

#[test]
fn absolute_form_proxy_requests_route_by_service_name() {
    let (_backend, node) = greeter_node("");
    let proxy = format!("http://{}", node.outbound);
    let response = curl(&["-x", &proxy, "http://greeter/hello?via=proxy"]);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains("hello from greeter-backend"),
        "{response:?}"
    );
    assert!(
        response.body.contains("path: /hello?via=proxy"),
        "{response:?}"
    );
}

#[test]
fn connect_opens_a_tcp_stream_to_the_service() {
    let (_backend, node) = greeter_node("");
    let proxy = format!("http://{}", node.outbound);
    // -p: curl sends CONNECT greeter:80, then speaks HTTP to the backend through the stream.
    let response = curl(&["-p", "-x", &proxy, "http://greeter/hello"]);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains("hello from greeter-backend"),
        "{response:?}"
    );
}

#[test]
fn unknown_service_gets_503_no_route() {
    let (_backend, node) = greeter_node("");
    let response = get(node.outbound, "nosuch", "/hello").unwrap();
    assert_ferry_error(&response, 503, "no-route", "nosuch");
}

#[test]
fn service_in_unknown_datacenter_gets_503_no_route() {
    let (_backend, node) = greeter_node("");
    let response = get(node.outbound, "greeter.dc9", "/hello").unwrap();
    assert_ferry_error(&response, 503, "no-route", "greeter");
}

#[test]
fn dead_workload_gets_an_answer_from_ferry_not_a_hang() {
    let (mut backend, node) = greeter_node("");
    backend.kill();
    wait_upstream_error(node.outbound, "greeter");
}

/// A request to /slow that outlives `deadline_toml` gets 504 `timeout` in about a second.
fn assert_times_out(deadline_toml: &str) {
    let (_backend, node) = greeter_node(deadline_toml);
    let started = Instant::now();
    let response = get(node.outbound, "greeter", "/slow?ms=8000").expect("an answer");
    let took = started.elapsed();
    assert_ferry_error(&response, 504, "timeout", "greeter");
    assert!(
        took < Duration::from_secs(5),
        "a 1 s deadline answered after {took:?}"
    );
}

#[test]
fn default_deadline_answers_504_timeout() {
    assert_times_out("[deadlines]\ndefault = \"1s\"\n");
}

#[test]
fn per_service_deadline_answers_504_timeout() {
    assert_times_out("[deadlines]\ndefault = \"15s\"\nper_service = { greeter = \"1s\" }\n");
}

#[test]
fn server_sent_events_arrive_as_they_are_sent() {
    let (_backend, node) = greeter_node("");
    assert_sse_streamed(node.outbound, "greeter");
}

#[test]
fn post_body_reaches_the_workload_whole() {
    let (_backend, node) = greeter_node("");
    let body: String = (0..20_000).map(|i| format!("{i:09}\n")).collect();
    let file = node.dir().join("body.txt");
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/echo", node.outbound);
    let data = format!("@{}", file.display());
    let response = curl(&[&url, "-H", "Host: greeter", "--data-binary", &data]);
    assert_eq!(response.status, 200, "status {}", response.status);
    assert_eq!(
        response.body.len(),
        body.len(),
        "echoed body has the wrong length"
    );
    assert!(response.body == body, "echoed body differs");
}

#[test]
fn upstream_connections_are_pooled_and_reused() {
    require_tool("curl");
    let (backend, node) = greeter_node("");
    // Ten requests one after another through one client connection. A pool reuses the upstream
    // connection; it may open a second when a request arrives in the instant before the first
    // connection is back in the pool, but never one per request.
    let mut args: Vec<String> = [
        "-sS",
        "--max-time",
        "20",
        "-H",
        "Host: greeter",
        "-w",
        "%{http_code}\n",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for n in 0..10 {
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            format!("http://{}/hello?n={n}", node.outbound),
        ]);
    }
    let ran = run(
        without_proxy(&mut Command::new("curl")).args(&args),
        Duration::from_secs(30),
    );
    assert_eq!(
        ran.stdout,
        "200\n".repeat(10),
        "ten requests through one curl: {ran:?}"
    );
    let count = get(backend.address, "greeter", "/connections?path=/hello").expect("curl runs");
    let connections: u32 = count.body.trim().parse().expect("a count");
    assert!(
        (1..=3).contains(&connections),
        "the backend served ten requests on {connections} connections"
    );
}

#[test]
fn a_connection_the_workload_closed_while_idle_is_not_used_again() {
    require_tool("curl");
    let (backend, node) = greeter_node("");
    let first = get(node.outbound, "greeter", "/idle-close?ms=200").expect("curl runs");
    assert_eq!(first.status, 200, "{first:?}");
    // The workload closes that connection while it sits in Ferry's pool, as a server's idle
    // timeout does. The next calls must go out on a new connection, not fail on the old one.
    // They are POSTs with a body: the retry layer does not send those twice, so only the pool
    // can make them good.
    eventually(Duration::from_secs(10), || {
        let closed = get(backend.address, "greeter", "/idle-closed")?;
        match closed.body.trim() {
            "1" => Ok(()),
            other => Err(format!("the workload has closed {other} connections")),
        }
    });
    let url = format!("http://{}/echo", node.outbound);
    for n in 0..3 {
        let body = format!("call {n} after the idle close");
        let next = curl(&[&url, "-H", "Host: greeter", "--data-binary", &body]);
        assert_eq!(next.status, 200, "{body}: {next:?}");
        assert_eq!(next.body, body, "{body}: the echo differs");
    }
}
