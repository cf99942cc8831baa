//! Retries with bodies (issue 21, point 3): a request body up to 64 KiB is kept until the
//! response starts, so a POST (curl) or a gRPC unary call (grpcio) that meets a just-killed
//! workload or a dead node is tried on the other endpoint instead of failing; a larger body
//! streams and is not tried again. Two nodes front one service, each with its own workload;
//! an application's node calls it. Needs no root.

mod support;

use std::thread;
use std::time::Duration;

use support::node::app_and_endpoints;
use support::{curl, eventually, get, grpc_call, Backend, Node, Response, Service, TempDir};

/// How long each slow call takes at its workload: time enough to kill what serves it.
const SLOW_MS: &str = "3000";

/// The application's node and the two endpoints of a service: workload `w1` behind node
/// `s1`, `w2` behind `s2`.
struct Pair {
    app: Node,
    nodes: Vec<Node>,
    workloads: Vec<Backend>,
}

impl Pair {
    fn start(service: &str, workload: fn(&str) -> Backend) -> Pair {
        let workloads: Vec<Backend> = ["w1", "w2"].map(workload).into();
        let services = workloads
            .iter()
            .map(|w| match service {
                "echo" => Service::http(service, w.address).health("/healthz"),
                _ => Service::grpc(service, w.address),
            })
            .collect();
        let (app, nodes) = app_and_endpoints(services);
        eventually(Duration::from_secs(10), || {
            let routes = app.admin_json("/routes");
            let healthy = |r: &&serde_json::Value| r["healthy"] == true;
            let n = routes
                .as_array()
                .map_or(0, |r| r.iter().filter(healthy).count());
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} healthy routes to {service}: {routes}"))
            }
        });
        Pair {
            app,
            nodes,
            workloads,
        }
    }

    /// Which workload a slow HTTP call reached: the one whose `/seen` has `path`.
    fn serving_http(&self, path: &str) -> usize {
        eventually(Duration::from_secs(10), || {
            let seen: Vec<bool> = self
                .workloads
                .iter()
                .map(|w| get(w.address, "x", "/seen").is_ok_and(|r| r.body.contains(path)))
                .collect();
            seen.iter()
                .position(|&s| s)
                .ok_or(format!("no workload has seen {path} yet"))
        })
    }

    /// Which workload a slow gRPC call reached: the one that logged it.
    fn serving_grpc(&self) -> usize {
        eventually(Duration::from_secs(10), || {
            let started = format!("SLOW {SLOW_MS}");
            self.workloads
                .iter()
                .position(|w| w.log().contains(&started))
                .ok_or("no workload has started the slow call yet")
        })
    }
}

/// A POST of `size` bytes ending in a 16-byte mark to `/slow` of `echo`, in a thread.
fn slow_post(pair: &Pair, dir: &TempDir, size: usize) -> thread::JoinHandle<Response> {
    let mut body = vec![b'x'; size - 16];
    body.extend_from_slice(b"end-of-the-body!");
    let file = dir.join("body");
    std::fs::write(&file, body).expect("write the body");
    let url = format!("http://{}/slow?ms={SLOW_MS}", pair.app.outbound);
    thread::spawn(move || {
        let data = format!("@{}", file.display());
        curl(&[
            "-X",
            "POST",
            "--data-binary",
            &data,
            "-H",
            "Host: echo",
            &url,
        ])
    })
}

fn assert_served_whole_by(response: &Response, workload: &str, size: usize) {
    assert_eq!(response.status, 200, "{response:?}");
    let expected = format!("slow done by {workload}\nbytes: {size}\nends: end-of-the-body!\n");
    assert_eq!(response.body, expected);
}

#[test]
fn a_post_that_meets_a_killed_workload_is_sent_whole_to_the_other() {
    let mut pair = Pair::start("echo", Backend::http);
    let dir = TempDir::new("retry-post");
    let size = 60 * 1024;
    let call = slow_post(&pair, &dir, size);
    let serving = pair.serving_http("/slow?ms=");
    pair.workloads[serving].kill();
    let response = call.join().expect("the caller thread");
    let other = &pair.workloads[1 - serving].name;
    assert_served_whole_by(&response, other, size);
}

#[test]
fn a_post_whose_node_dies_is_sent_whole_to_the_other() {
    let pair = Pair::start("echo", Backend::http);
    let dir = TempDir::new("retry-post-node");
    let size = 10 * 1024;
    let call = slow_post(&pair, &dir, size);
    let serving = pair.serving_http("/slow?ms=");
    pair.nodes[serving].kill();
    let response = call.join().expect("the caller thread");
    let other = &pair.workloads[1 - serving].name;
    assert_served_whole_by(&response, other, size);
}

#[test]
fn a_body_over_64_kib_is_not_sent_twice() {
    let mut pair = Pair::start("echo", Backend::http);
    let dir = TempDir::new("retry-big");
    let call = slow_post(&pair, &dir, 100 * 1024);
    let serving = pair.serving_http("/slow?ms=");
    pair.workloads[serving].kill();
    let response = call.join().expect("the caller thread");
    assert_eq!(response.status, 502, "failed, not retried: {response:?}");
    // The other workload never saw it.
    let seen = get(pair.workloads[1 - serving].address, "x", "/seen").expect("/seen");
    assert!(!seen.body.contains("/slow"), "{}", seen.body);
}

#[test]
fn a_grpc_unary_call_that_meets_a_killed_workload_is_answered_by_the_other() {
    let mut pair = Pair::start("greeter", Backend::grpc);
    let outbound = pair.app.outbound;
    let call = thread::spawn(move || grpc_call(outbound, "greeter", "Slow", &[SLOW_MS]));
    let serving = pair.serving_grpc();
    pair.workloads[serving].kill();
    let outcome = call.join().expect("the caller thread");
    let other = &pair.workloads[1 - serving].name;
    assert_eq!(outcome.code, "OK", "{outcome:?}");
    assert_eq!(
        outcome.replies,
        [format!("slow done by {other}")],
        "{outcome:?}"
    );
}
