//! Where calls go when things fail: health checks taking endpoints out and back in, retries
//! of connect failures, local datacenter first, and routes withdrawn when a peer dies.

mod support;

use std::time::{Duration, Instant};

use support::{
    assert_ferry_error, curl, eventually, get, wait_ready, wait_routable, Backend, Node, Service,
};

/// POSTs to a backend directly, to flip what its /healthz answers.
fn set_health(backend: &Backend, ok: bool) {
    let path = if ok { "/health/ok" } else { "/health/fail" };
    let r = curl(&["-X", "POST", &format!("http://{}{path}", backend.address)]);
    assert_eq!(r.status, 200);
}

/// Waits until `node` knows `count` healthy endpoints of `service`.
fn wait_healthy_routes(node: &Node, service: &str, count: usize) {
    eventually(Duration::from_secs(20), || {
        let routes: serde_json::Value =
            serde_json::from_str(&curl(&[&format!("http://{}/routes", node.admin)]).body)
                .map_err(|e| e.to_string())?;
        let healthy = routes
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["service"] == service && r["healthy"] == true)
                    .count()
            })
            .unwrap_or(0);
        if healthy == count {
            Ok(())
        } else {
            Err(format!(
                "{healthy} healthy routes to {service}, want {count}: {routes}"
            ))
        }
    });
}

#[test]
fn a_failing_health_check_takes_the_endpoint_out_and_a_passing_one_brings_it_back() {
    let backend = Backend::http("checked");
    let node = Node::builder("solo")
        .service(Service::http("greeter", backend.address).health("/healthz"))
        .start();
    wait_ready(&node);
    wait_routable(&node, "greeter");
    set_health(&backend, false);
    let out = eventually(Duration::from_secs(10), || {
        let r = get(node.outbound, "greeter", "/hello")?;
        if r.status == 503 {
            Ok(r)
        } else {
            Err(format!("still {}", r.status))
        }
    });
    assert_ferry_error(&out, 503, "no-healthy-endpoint", "greeter");
    set_health(&backend, true);
    eventually(Duration::from_secs(10), || node.answered_by("greeter"));
}

#[test]
fn a_connect_failure_is_retried_on_another_endpoint() {
    let mut here = Backend::http("here");
    let there = Backend::http("there");
    let b = Node::builder("b").service(Service::http("greeter", there.address).health("/healthz"));
    // A health check slow enough that the dead workload still counts as healthy during the
    // test: only the retry can save the calls that pick it.
    let a = Node::builder("a")
        .peer(b.tunnel(), b.public_key())
        .raw(&format!(
        "\n[[service]]\nname = \"greeter\"\naddress = \"{}\"\nhealth = {{ interval = \"60s\" }}\n",
        here.address
    ));
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    wait_healthy_routes(&a, "greeter", 2);
    here.kill();
    for i in 0..30 {
        let who = a
            .answered_by("greeter")
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(who, "there", "call {i}");
    }
}

#[test]
fn local_endpoints_come_first_another_datacenter_serves_when_they_fail_then_traffic_returns() {
    let near = Backend::http("near");
    let far = Backend::http("far");
    let b = Node::builder("b")
        .datacenter("dc2")
        .service(Service::http("greeter", far.address).health("/healthz"));
    let a = Node::builder("a")
        .service(Service::http("greeter", near.address).health("/healthz"))
        .peer(b.tunnel(), b.public_key());
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    wait_healthy_routes(&a, "greeter", 2);

    for _ in 0..10 {
        assert_eq!(
            a.answered_by("greeter").expect("call works"),
            "near",
            "local datacenter first"
        );
    }
    assert_eq!(
        a.answered_by("greeter.dc2").expect("call works"),
        "far",
        "a pinned datacenter"
    );
    assert_eq!(
        a.answered_by("greeter.dc2.mesh").expect("call works"),
        "far"
    );

    set_health(&near, false);
    eventually(Duration::from_secs(10), || {
        match a.answered_by("greeter")?.as_str() {
            "far" => Ok(()),
            other => Err(format!("still served by {other}")),
        }
    });
    set_health(&near, true);
    eventually(Duration::from_secs(10), || {
        match a.answered_by("greeter")?.as_str() {
            "near" => Ok(()),
            other => Err(format!("still served by {other}")),
        }
    });
}

#[test]
fn a_dead_peer_has_its_routes_withdrawn_within_seconds() {
    let web = Backend::http("web");
    let b = Node::builder("b").service(Service::http("greeter", web.address).health("/healthz"));
    let a = Node::builder("a").peer(b.tunnel(), b.public_key());
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
    b.kill();
    let killed = Instant::now();
    let answer = eventually(Duration::from_secs(10), || {
        let r = get(a.outbound, "greeter", "/hello")?;
        if r.header("ferry-error") == Some("no-route") {
            Ok(r)
        } else {
            Err(format!("still {}", r.status))
        }
    });
    assert_ferry_error(&answer, 503, "no-route", "greeter");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "withdrawn after {:?}",
        killed.elapsed()
    );
}
