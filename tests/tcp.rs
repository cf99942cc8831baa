//! Opaque TCP through a `kind = "tcp"` outbound: redis-cli against a real redis-server.
//! Needs no root or namespaces.

mod support;

use std::time::Duration;
use support::{eventually, redis_cli, wait_ready, Backend, Node, Service};

#[test]
fn redis_commands_pass_through_a_tcp_outbound() {
    let redis = Backend::redis("redis");
    let node = Node::builder("solo-tcp")
        .service(Service::tcp("redis", redis.address))
        .tcp_outbound("redis")
        .start();
    wait_ready(&node);
    let outbound = node.tcp_outbound("redis");
    eventually(Duration::from_secs(20), || {
        node.assert_alive();
        match redis_cli(outbound, &["PING"])?.as_str() {
            "PONG" => Ok(()),
            other => Err(format!("PING through the outbound: {other}")),
        }
    });
    assert_eq!(
        redis_cli(outbound, &["SET", "ferry:key", "carried"]).unwrap(),
        "OK"
    );
    assert_eq!(
        redis_cli(outbound, &["GET", "ferry:key"]).unwrap(),
        "carried"
    );
    // The value really is in the server, not in something that merely answers like it.
    assert_eq!(
        redis_cli(redis.address, &["GET", "ferry:key"]).unwrap(),
        "carried"
    );
}
