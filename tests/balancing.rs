//! How calls spread over the endpoints of a service within a datacenter, as workloads fail and
//! come back under steady load: a recovered endpoint gets its share back within seconds, and a
//! rolling restart leaves the load evenly spread. Needs no root.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::load::Load;
use support::{eventually, wait_ready, Backend, Node, Service};

/// Calls in flight at once from the application's side, through a node that fronts nothing.
const CALLERS: usize = 4;

/// A service's endpoint: its workload and the node that fronts it.
struct Endpoint {
    name: String,
    address: SocketAddr,
    workload: Backend,
    node: Node,
}

impl Endpoint {
    /// Kills the workload (SIGKILL), as a crash does.
    fn kill(&mut self) {
        self.workload.kill();
    }

    /// Starts the workload again where it was.
    fn restart(&mut self) {
        self.workload = Backend::http_at(&self.name, self.address);
    }
}

/// `n` nodes each fronting `greeter` (workloads `g1`…), health-checked every second, and an
/// application's node that knows them all as peers.
fn mesh(n: usize) -> (Node, Vec<Endpoint>) {
    let app = Node::builder("app");
    let mut endpoints = Vec::new();
    let mut builders = Vec::new();
    for i in 1..=n {
        let name = format!("g{i}");
        let workload = Backend::http(&name);
        let node = Node::builder(&format!("s{i}"))
            .service(Service::http("greeter", workload.address).health("/healthz"))
            .trust(app.public_key());
        builders.push((name, workload, node));
    }
    let mut app = app;
    for (_, _, node) in &builders {
        app = app.peer(node.tunnel(), node.public_key());
    }
    for (name, workload, node) in builders {
        let node = node.start();
        endpoints.push(Endpoint {
            address: workload.address,
            name,
            workload,
            node,
        });
    }
    let app = app.start();
    wait_ready(&app);
    (app, endpoints)
}

/// How many healthy routes to `greeter` the node knows, by the nodes that front them.
fn healthy_on(app: &Node) -> Vec<String> {
    let routes = app.admin_json("/routes");
    let mut nodes: Vec<String> = routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["service"] == "greeter" && r["healthy"] == true)
        .filter_map(|r| r["node"].as_str().map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

/// Waits until the application's node sees `node`'s greeter as `healthy`; returns when it did.
fn wait_health(app: &Node, node: &Node, healthy: bool) -> Instant {
    eventually(Duration::from_secs(20), || {
        match healthy_on(app).contains(&node.name) == healthy {
            true => Ok(Instant::now()),
            false => Err(format!("{} not yet healthy={healthy}", node.name)),
        }
    })
}

/// Waits until the load has answers from after `until`: the window before it is complete.
fn wait_answers_after(load: &Load, until: Instant) {
    eventually(Duration::from_secs(30), || {
        match load.answers().last().is_some_and(|a| a.at >= until) {
            true => Ok(()),
            false => Err("the window is still open"),
        }
    });
}

/// The share of the calls in `[from, to)` that `name` answered, and every count.
fn share(load: &Load, name: &str, from: Instant, to: Instant) -> (f64, Vec<(String, usize)>) {
    let shares = load.shares(from, to);
    let total: usize = shares.iter().map(|(_, n)| n).sum();
    let mine = shares
        .iter()
        .find(|(by, _)| by == name)
        .map_or(0, |(_, n)| *n);
    (mine as f64 / total.max(1) as f64, shares)
}

/// Asserts that no more calls failed than could have been in flight when `kills` workloads
/// were killed: a call whose answer had begun when its workload died cannot go elsewhere (the
/// caller already has its head); every other one is retried.
fn few_errors(load: &Load, kills: usize) {
    let errors: Vec<_> = load
        .answers()
        .into_iter()
        .filter(|a| a.by.is_err())
        .collect();
    assert!(
        errors.len() <= kills * CALLERS,
        "{} calls failed: {errors:?}",
        errors.len()
    );
}

/// Waits until `app` calls every endpoint healthy, then starts the steady load on `greeter`.
fn load_once_all_healthy(app: &Node, endpoints: &[Endpoint]) -> Load {
    let nodes: Vec<String> = endpoints.iter().map(|e| e.node.name.clone()).collect();
    eventually(Duration::from_secs(20), || match healthy_on(app) == nodes {
        true => Ok(()),
        false => Err(format!("healthy: {:?}", healthy_on(app))),
    });
    Load::start(app.outbound, "greeter", CALLERS)
}

#[test]
fn a_restarted_workload_gets_its_share_back_within_5_s_of_passing_its_health_check() {
    let (app, mut endpoints) = mesh(2);
    let load = load_once_all_healthy(&app, &endpoints);
    let started = Instant::now();
    eventually(Duration::from_secs(10), || {
        let shares = load.shares(started, Instant::now());
        match shares.len() == 2 {
            true => Ok(()),
            false => Err(format!("not both answering yet: {shares:?}")),
        }
    });

    endpoints[0].kill();
    wait_health(&app, &endpoints[0].node, false);
    endpoints[0].restart();
    let healthy = wait_health(&app, &endpoints[0].node, true);
    let window = healthy + Duration::from_secs(5);
    wait_answers_after(&load, window);
    let (share, shares) = share(&load, "g1", healthy, window);
    println!(
        "g1 served {:.0}% of the calls in the 5 s after its health check passed: {shares:?}",
        share * 100.0
    );
    assert!(
        share >= 0.2,
        "g1 served {share:.2} of the calls: {shares:?}"
    );
    drop(load);
}

#[test]
fn after_a_rolling_restart_of_four_workloads_each_serves_a_fair_share() {
    let (app, mut endpoints) = mesh(4);
    let load = load_once_all_healthy(&app, &endpoints);
    let t0 = Instant::now();
    for endpoint in &mut endpoints {
        endpoint.kill();
        println!("{:?} killed {}", t0.elapsed(), endpoint.name);
        wait_health(&app, &endpoint.node, false);
        println!("{:?} unhealthy {}", t0.elapsed(), endpoint.name);
        endpoint.restart();
        wait_health(&app, &endpoint.node, true);
        println!("{:?} healthy {}", t0.elapsed(), endpoint.name);
    }
    let from = Instant::now();
    let to = from + Duration::from_secs(10);
    wait_answers_after(&load, to);
    for endpoint in &endpoints {
        println!(
            "{}: median call {:?}",
            endpoint.name,
            load.median_took(&endpoint.name, from, to)
        );
    }
    println!(
        "shares after the rolling restart: {:?}",
        load.shares(from, to)
    );
    let mut at = t0;
    while at < to {
        println!(
            "{:?}: {:?}",
            at - t0,
            load.shares(at, at + Duration::from_secs(1))
        );
        at += Duration::from_secs(1);
    }
    for endpoint in &endpoints {
        let (share, shares) = share(&load, &endpoint.name, from, to);
        assert!(
            (0.15..=0.35).contains(&share),
            "{} served {share:.2} of the calls in the 10 s after the restarts: {shares:?}",
            endpoint.name
        );
    }
    println!(
        "shares after the rolling restart: {:?}",
        load.shares(from, to)
    );
    few_errors(&load, endpoints.len());
}
