//! WebSocket upgrades through the HTTP outbound to a websockets echo server.
//! Needs no root or namespaces.

mod support;

use std::time::Duration;
use support::{eventually, wait_ready, ws_chat, Backend, Node, Service};

#[test]
fn websocket_messages_pass_both_ways() {
    let echo = Backend::websocket("ws-backend");
    let node = Node::builder("solo-ws")
        .service(Service::http("echo", echo.address))
        .start();
    wait_ready(&node);
    // The echo server answers a plain GET with 426, so the route is polled with an upgrade.
    eventually(Duration::from_secs(20), || {
        node.assert_alive();
        ws_chat(node.outbound, "echo", &["warmup"]).map(drop)
    });
    let replies = ws_chat(node.outbound, "echo", &["first", "second", "third"]).unwrap();
    assert_eq!(
        replies,
        [
            "ws-backend: first",
            "ws-backend: second",
            "ws-backend: third"
        ]
    );
}
