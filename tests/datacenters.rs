//! Two datacenters in network namespaces (issue 4, points 3, 4 and 7): dc1 and dc2, each a
//! LAN with two gateways and sidecars; only the gateways also join the WAN. dc1 has `app`
//! (whose HTTP outbound the clients use, from app's namespace) and `svc1` fronting `greeter`;
//! dc2 has `svc2` fronting another `greeter`. Each greeter says which one it is, so a test can
//! tell where a call was served. Needs root and `ip` (iproute2): without them every test here
//! fails saying so.

mod support;

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use support::call_loop::{epoch_seconds, Call, CallLoop};

use support::lab::{Host, Lab};
use support::mesh::{
    assert_served_again_within_2_s, assert_served_by, assert_withdrawn_within_2_s, holds_session,
    one_at_a_time, relayed_via, served_by, time_until, MeshPlan, POLL,
};
use support::{
    assert_ferry_error, eventually_every, wait_ready, wait_routable, Backend, Node, Response,
    Service,
};

/// What each greeter answers `/hello` with: `hello from NAME`.
const DC1_GREETER: &str = "greeter-dc1";
const DC2_GREETER: &str = "greeter-dc2";

/// The two datacenters, every node ready and `greeter` routable from app in both.
/// Fields drop in order: nodes and backends are killed before the lab's namespaces go.
struct Mesh {
    app: Node,
    svc1: Node,
    svc2: Node,
    /// dc1's gateways, then dc2's: dc1-gw-a, dc1-gw-b, dc2-gw-a, dc2-gw-b.
    gateways: Vec<Node>,
    greeter1: Backend,
    _greeter2: Backend,
    hosts: Hosts,
    lab: Lab,
    _serial: MutexGuard<'static, ()>,
}

/// The hosts of [`Mesh`], by role.
struct Hosts {
    app: Host,
    svc1: Host,
    svc2: Host,
    /// In the order of [`Mesh::gateways`].
    gateways: Vec<Host>,
}

impl Mesh {
    /// Builds the lab, starts the greeters and the seven nodes, and waits until app reaches
    /// `greeter` (dc1's) and `greeter.dc2`, and svc2 reaches its own greeter.
    fn start() -> Mesh {
        let serial = one_at_a_time();
        let mut lab = Lab::new();
        for network in ["lan1", "lan2", "wan"] {
            lab.network(network);
        }
        let hosts = Hosts {
            app: lab.host("app", &["lan1"]),
            svc1: lab.host("svc1", &["lan1"]),
            svc2: lab.host("svc2", &["lan2"]),
            gateways: vec![
                lab.host("dc1-gw-a", &["lan1", "wan"]),
                lab.host("dc1-gw-b", &["lan1", "wan"]),
                lab.host("dc2-gw-a", &["lan2", "wan"]),
                lab.host("dc2-gw-b", &["lan2", "wan"]),
            ],
        };
        let greeter1 = Backend::http_in(hosts.svc1.netns(), DC1_GREETER);
        let greeter2 = Backend::http_in(hosts.svc2.netns(), DC2_GREETER);

        let mut plan = MeshPlan::new();
        for (i, host) in hosts.gateways.iter().enumerate() {
            let (dc, lan) = if i < 2 {
                ("dc1", "lan1")
            } else {
                ("dc2", "lan2")
            };
            plan.gateway(host, dc, lan);
        }
        let app = plan.sidecar(&hosts.app, "dc1");
        let svc1 = plan
            .sidecar(&hosts.svc1, "dc1")
            .service(Service::http("greeter", greeter1.address).health("/healthz"));
        let svc2 = plan
            .sidecar(&hosts.svc2, "dc2")
            .service(Service::http("greeter", greeter2.address).health("/healthz"));
        let gateways = plan.start_gateways();
        let (app, svc1, svc2) = (app.start(), svc1.start(), svc2.start());
        for node in gateways.iter().chain([&app, &svc1, &svc2]) {
            wait_ready(node);
        }
        wait_routable(&app, "greeter");
        wait_routable(&app, "greeter.dc2");
        wait_routable(&svc2, "greeter");
        let mesh = Mesh {
            app,
            svc1,
            svc2,
            gateways,
            greeter1,
            _greeter2: greeter2,
            hosts,
            lab,
            _serial: serial,
        };
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
        mesh
    }

    /// `GET /hello` with `Host: HOST` through app's outbound, from app's namespace.
    fn call(&self, host: &str) -> Response {
        self.app
            .outbound_get(host, "/hello")
            .unwrap_or_else(|e| panic!("Host: {host} from app: {e}"))
    }

    /// The gateway node named `name`.
    fn gateway(&self, name: &str) -> (&Node, &Host) {
        let i = self
            .gateways
            .iter()
            .position(|g| g.name == name)
            .unwrap_or_else(|| panic!("no gateway named {name:?}"));
        (&self.gateways[i], &self.hosts.gateways[i])
    }

    /// The dc1 gateway app's relayed session to svc2 goes through, from app's `/peers`.
    fn gateway_toward_svc2(&self) -> String {
        relayed_via(&self.app, &self.svc2.name)
    }
}

#[test]
fn local_first_then_failover_to_dc2_and_back() {
    let mut mesh = Mesh::start();
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
    }

    let address = mesh.greeter1.address;
    mesh.greeter1.kill();
    let killed = Instant::now();
    // The first call after the kill meets the dead greeter: svc1 answers in its place, flagged
    // as never delivered, and app sends the call on to dc2 (health checks run every second
    // here; without this the call would get a 502 and failover would wait for them).
    let first = mesh.call("greeter");
    let failover = killed.elapsed();
    println!("svc1's greeter killed: first call answered after {failover:?}");
    assert_served_by(&first, DC2_GREETER);
    // The refused call also woke svc1's health check, which takes the greeter out at once
    // rather than after two failed checks a second apart.
    let taken_out = eventually_every(POLL, Duration::from_secs(5), || {
        let services = mesh.svc1.admin_json("/services");
        match services[0]["healthy"].as_bool() {
            Some(false) => Ok(killed.elapsed()),
            _ => Err(format!("svc1 still calls its greeter healthy: {services}")),
        }
    });
    println!("svc1 took its greeter out {taken_out:?} after the kill");
    assert!(
        taken_out < Duration::from_millis(800),
        "passive detection took {taken_out:?}; the 1 s checks alone take 1-2 s"
    );
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC2_GREETER);
        assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
    }

    mesh.greeter1 = Backend::http_at_in(mesh.hosts.svc1.netns(), DC1_GREETER, address);
    let restarted = Instant::now();
    let (failback, _) = time_until(&mesh.app, "greeter", restarted, "served by dc1", |r| {
        served_by(r) == Some(DC1_GREETER)
    });
    println!("svc1's greeter restarted: first answer from dc1 again after {failback:?}");
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
    }
    mesh.svc1.assert_alive();
}

#[test]
fn losing_one_gateway_under_load_loses_no_request() {
    let mesh = Mesh::start();
    let in_use = mesh.gateway_toward_svc2();
    let (victim, _) = mesh.gateway(&in_use);

    // Four threads in app's namespace call greeter.dc2 back to back.
    let outbound = mesh.app.outbound.to_string();
    let load = CallLoop::start(mesh.hosts.app.netns(), &outbound, "greeter.dc2", 4);
    // Under load first: some calls made and answered.
    load.wait_for_calls(40);
    victim.kill();
    let killed_at = epoch_seconds();
    println!("killed {in_use} (app's gateway toward svc2) with SIGKILL under load");
    // Calls go on for 3 s after the kill.
    load.wait_for_a_call_after(killed_at + 3.0);
    let calls = load.stop();
    let failed: Vec<&Call> = calls.iter().filter(|c| !c.ok_from(DC2_GREETER)).collect();
    let after: Vec<&Call> = calls.iter().filter(|c| c.started >= killed_at).collect();
    // Calls in flight when the gateway died: they waited for the switch to the other one.
    let in_flight: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started < killed_at && c.started + c.took_ms as f64 / 1000.0 >= killed_at)
        .collect();
    let slowest_in_flight = in_flight.iter().map(|c| c.took_ms).max().unwrap_or(0);
    let slowest_after = after.iter().map(|c| c.took_ms).max().unwrap_or(0);
    let now_path = mesh.gateway_toward_svc2();
    println!(
        "{} calls, {} in flight at the kill (slowest {slowest_in_flight} ms), {} after it \
         (slowest {slowest_after} ms); {} not 200 from {DC2_GREETER}; app now reaches svc2 \
         via {now_path}",
        calls.len(),
        in_flight.len(),
        after.len(),
        failed.len()
    );
    for call in &failed {
        println!(
            "  failed: thread {} started {:+.3} s from the kill, took {} ms: {}",
            call.thread,
            call.started - killed_at,
            call.took_ms,
            call.outcome
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {} calls to greeter.dc2 failed when {in_use} was killed: {:?}",
        failed.len(),
        calls.len(),
        failed
    );
    assert!(after.len() >= 8, "calls went on after the kill: {after:?}");
    assert_ne!(now_path, in_use, "app moved to the other gateway");
}

#[test]
fn a_partitioned_datacenter_is_withdrawn_within_2_s_and_returns_within_2_s_of_healing() {
    let mesh = Mesh::start();
    let dc2_gateways = ["dc2-gw-a", "dc2-gw-b"].map(|name| mesh.gateway(name).1.clone());

    for host in &dc2_gateways {
        mesh.lab.cut(host, "wan");
    }
    let cut = Instant::now();
    assert_withdrawn_within_2_s(&mesh.app, "greeter.dc2", cut, "dc2 cut off the WAN");
    // The answer is fast, not a wait on the lost datacenter.
    let asked = Instant::now();
    let again = mesh.call("greeter.dc2");
    let took = asked.elapsed();
    assert_ferry_error(&again, 503, "no-route", "greeter");
    assert!(took < Duration::from_secs(1), "the next 503 took {took:?}");
    // Each side keeps serving what it can serve locally.
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        let local = mesh
            .svc2
            .outbound_get("greeter", "/hello")
            .unwrap_or_else(|e| panic!("greeter from svc2 during the partition: {e}"));
        assert_served_by(&local, DC2_GREETER);
    }

    for host in &dc2_gateways {
        mesh.lab.heal(host, "wan");
    }
    let healed = Instant::now();
    assert_served_again_within_2_s(&mesh.app, "greeter.dc2", DC2_GREETER, healed, "WAN healed");
}

#[test]
fn a_gateway_relays_without_terminating_the_inner_session() {
    let mesh = Mesh::start();
    // Mesh::start made calls to greeter.dc2, so app holds a session to svc2.
    let via = mesh.gateway_toward_svc2();
    let peers = mesh.app.admin_json("/peers");
    println!("app reaches svc2 via {via}: {peers}");
    assert!(
        via.starts_with("dc1-gw-"),
        "app's session to svc2 goes through a dc1 gateway, not {via:?}: {peers}"
    );
    for name in ["dc1-gw-a", "dc1-gw-b"] {
        let (gateway, _) = mesh.gateway(name);
        let (holds_svc2, peers) = holds_session(gateway, &mesh.svc2);
        assert!(
            !holds_svc2,
            "{name} holds a session with svc2 (it should only forward datagrams): {peers}"
        );
    }
    // And the relayed session carries calls.
    assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
}
