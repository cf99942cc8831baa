//! gRPC through one node's outbound: Python grpcio client and server, `:authority` = service.
//! Needs no root or namespaces.

mod support;

use std::time::{Duration, Instant};
use support::{eventually, grpc_call, wait_ready, Backend, Node, Service};

/// One node fronting the grpcio workload as service `greeter`, with `raw` TOML appended,
/// polled until a unary call goes through.
fn grpc_node(raw: &str) -> (Backend, Node) {
    let backend = Backend::grpc("grpc-backend");
    let node = Node::builder("solo-grpc")
        .service(Service::grpc("greeter", backend.address))
        .raw(raw)
        .start();
    wait_ready(&node);
    eventually(Duration::from_secs(20), || {
        node.assert_alive();
        let outcome = grpc_call(node.outbound, "greeter", "SayHello", &["warmup"]);
        match outcome.code.as_str() {
            "OK" => Ok(()),
            _ => Err(format!("SayHello: {outcome:?}")),
        }
    });
    (backend, node)
}

#[test]
fn unary_call_reaches_the_workload() {
    let (_backend, node) = grpc_node("");
    let outcome = grpc_call(node.outbound, "greeter", "SayHello", &["ferry", "again"]);
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(outcome.replies, ["hello ferry", "hello again"]);
}

#[test]
fn server_streaming_delivers_every_message() {
    let (_backend, node) = grpc_node("");
    let outcome = grpc_call(node.outbound, "greeter", "Split", &["one two three four"]);
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(outcome.replies, ["one", "two", "three", "four"]);
}

#[test]
fn client_streaming_delivers_every_message() {
    let (_backend, node) = grpc_node("");
    let outcome = grpc_call(node.outbound, "greeter", "Join", &["a", "b", "c"]);
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(outcome.replies, ["a,b,c"]);
}

#[test]
fn bidirectional_streaming_is_full_duplex() {
    let (_backend, node) = grpc_node("");
    // The client sends each message only after the previous reply: a proxy that waits for the
    // whole request stream before forwarding would stall until the client's deadline.
    let outcome = grpc_call(node.outbound, "greeter", "Chat", &["ping", "pong", "done"]);
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(outcome.replies, ["PING", "PONG", "DONE"]);
}

#[test]
fn unknown_service_fails_unavailable() {
    let (_backend, node) = grpc_node("");
    let outcome = grpc_call(node.outbound, "nosuch", "SayHello", &["x"]);
    assert_eq!(outcome.code, "UNAVAILABLE", "{outcome:?}");
}

#[test]
fn dead_workload_fails_unavailable() {
    let (mut backend, node) = grpc_node("");
    backend.kill();
    eventually(Duration::from_secs(10), || {
        let outcome = grpc_call(node.outbound, "greeter", "SayHello", &["x"]);
        match outcome.code.as_str() {
            "UNAVAILABLE" => Ok(()),
            _ => Err(format!("not yet UNAVAILABLE: {outcome:?}")),
        }
    });
}

#[test]
fn deadline_fails_deadline_exceeded() {
    let (_backend, node) = grpc_node("[deadlines]\ndefault = \"1s\"\n");
    let started = Instant::now();
    // Slow answers after 8 s; the client's own deadline is 10 s, Ferry's is 1 s.
    let outcome = grpc_call(node.outbound, "greeter", "Slow", &["8000"]);
    let took = started.elapsed();
    assert_eq!(outcome.code, "DEADLINE_EXCEEDED", "{outcome:?}");
    assert!(
        took < Duration::from_secs(6),
        "a 1 s deadline answered after {took:?}"
    );
}

#[test]
fn calls_to_a_restarted_workload_go_out_on_a_new_connection() {
    let backend = Backend::grpc("grpc-restarted");
    // Health checked rarely, so that Ferry goes on routing to the workload across its restart
    // and the calls below are what find its old connection closed.
    let node = Node::builder("solo-grpc-restart")
        .raw(&format!(
            "[[service]]\nname = \"greeter\"\naddress = \"{}\"\nprotocol = \"grpc\"\n\
             health = {{ interval = \"60s\" }}\n",
            backend.address
        ))
        .start();
    wait_ready(&node);
    eventually(Duration::from_secs(20), || {
        let outcome = grpc_call(node.outbound, "greeter", "SayHello", &["warmup"]);
        match outcome.code.as_str() {
            "OK" => Ok(()),
            _ => Err(format!("SayHello: {outcome:?}")),
        }
    });
    let address = backend.address;
    drop(backend);
    let _backend = Backend::grpc_at("grpc-restarted", address);
    // Eight calls at once; none may fail on the connection the old process left behind.
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| grpc_call(node.outbound, "greeter", "SayHello", &["again"])))
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("the call's thread ends"))
            .collect()
    });
    for outcome in &outcomes {
        assert_eq!(outcome.code, "OK", "{outcome:?}");
        assert_eq!(outcome.replies, ["hello again"]);
    }
}
