//! Three datacenters in network namespaces: dc1, dc2 and dc3, each a LAN with two gateways and
//! sidecars; only the gateways join the WAN. In each datacenter a sidecar `svcN` fronts a
//! `greeter` that says which one it is, so a test can tell where a call was served; svc3 also
//! fronts `ledger`, which only dc3 has. dc1 has `app`, whose HTTP outbound the clients use, from
//! app's namespace. The WAN is either one network that every gateway joins (each datacenter
//! linked to the other two), or two, `wan12` and `wan23`, so that dc1 and dc3 can only talk
//! through dc2. Needs root and `ip` (iproute2): without them every test here fails saying so.

mod support;

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use support::lab::{Host, Lab};
use support::mesh::{
    assert_served_again_within_2_s, assert_served_by, assert_withdrawn_within_2_s, holds_session,
    one_at_a_time, relayed_via, served_by, time_until, MeshPlan,
};
use support::{assert_ferry_error, wait_ready, wait_routable, Backend, Node, Response, Service};

/// What each datacenter's greeter answers `/hello` with (`hello from NAME`), dc1's first.
const GREETERS: [&str; 3] = ["greeter-dc1", "greeter-dc2", "greeter-dc3"];
/// What dc3's ledger answers.
const LEDGER: &str = "ledger-dc3";
/// The node that fronts ledger (and dc3's greeter).
const SVC3: &str = "dc3-svc3";

/// The name of datacenter `n` (1, 2 or 3), and of its LAN.
fn dc(n: usize) -> String {
    format!("dc{n}")
}

fn lan(n: usize) -> String {
    format!("lan{n}")
}

/// How the gateways of the three datacenters meet.
#[derive(Clone, Copy, Debug)]
enum Wan {
    /// One WAN that every gateway joins: each datacenter peers with the other two.
    FullMesh,
    /// `wan12` joined by dc1's and dc2's gateways, `wan23` by dc2's and dc3's: dc1 and dc3
    /// share no network, so what they exchange must transit through dc2.
    Chain,
}

impl Wan {
    /// Each WAN network, with the datacenters whose gateways join it.
    fn networks(self) -> &'static [(&'static str, &'static [usize])] {
        match self {
            Wan::FullMesh => &[("wan", &[1, 2, 3])],
            Wan::Chain => &[("wan12", &[1, 2]), ("wan23", &[2, 3])],
        }
    }
}

/// The three datacenters, every node ready and every service routable from app.
/// Fields drop in order: nodes and backends are killed before the lab's namespaces go.
struct Mesh {
    app: Node,
    /// svc1, svc2, svc3: the sidecar fronting each datacenter's greeter.
    svcs: Vec<Node>,
    /// Two a datacenter: dc1-gw-a, dc1-gw-b, dc2-gw-a, dc2-gw-b, dc3-gw-a, dc3-gw-b.
    gateways: Vec<Node>,
    /// Each datacenter's greeter, in the order of [`GREETERS`].
    greeters: Vec<Backend>,
    _ledger: Backend,
    /// How long after the nodes were started app could reach every service.
    converged: Duration,
    hosts: Hosts,
    lab: Lab,
    _serial: MutexGuard<'static, ()>,
}

/// The hosts of [`Mesh`]'s sidecars and gateways, in the order of its nodes.
struct Hosts {
    svcs: Vec<Host>,
    gateways: Vec<Host>,
}

impl Mesh {
    /// Builds the lab with `wan` between the datacenters, starts the workloads and the ten
    /// nodes, and waits until app reaches every service and each is served where it should be.
    fn start(wan: Wan) -> Mesh {
        let serial = one_at_a_time();
        let mut lab = Lab::new();
        for n in 1..=3 {
            lab.network(&lan(n));
        }
        for (network, _) in wan.networks() {
            lab.network(network);
        }
        let gateways = (1..=3)
            .flat_map(|n| ["a", "b"].map(|side| (n, side)))
            .map(|(n, side)| {
                let mut networks = vec![lan(n)];
                for (network, dcs) in wan.networks() {
                    if dcs.contains(&n) {
                        networks.push(network.to_string());
                    }
                }
                let networks: Vec<&str> = networks.iter().map(String::as_str).collect();
                lab.host(&format!("{}-gw-{side}", dc(n)), &networks)
            })
            .collect();
        let app_host = lab.host("app", &["lan1"]);
        let hosts = Hosts {
            svcs: (1..=3)
                .map(|n| lab.host(&format!("svc{n}"), &[&lan(n)]))
                .collect(),
            gateways,
        };
        let greeters: Vec<Backend> = hosts
            .svcs
            .iter()
            .zip(GREETERS)
            .map(|(host, name)| Backend::http_in(host.netns(), name))
            .collect();
        let ledger = Backend::http_in(hosts.svcs[2].netns(), LEDGER);

        let mut plan = MeshPlan::new();
        for (i, host) in hosts.gateways.iter().enumerate() {
            plan.gateway(host, &dc(i / 2 + 1), &lan(i / 2 + 1));
        }
        let app = plan.sidecar(&app_host, "dc1");
        let mut svcs: Vec<_> = hosts
            .svcs
            .iter()
            .zip(&greeters)
            .enumerate()
            .map(|(i, (host, greeter))| {
                plan.sidecar(host, &dc(i + 1))
                    .service(Service::http("greeter", greeter.address).health("/healthz"))
            })
            .collect();
        if let Some(svc3) = svcs.pop() {
            svcs.push(svc3.service(Service::http("ledger", ledger.address).health("/healthz")));
        }
        let started = Instant::now();
        let gateways = plan.start_gateways();
        let app = app.start();
        let svcs: Vec<Node> = svcs.into_iter().map(|svc| svc.start()).collect();
        for node in gateways.iter().chain([&app]).chain(&svcs) {
            wait_ready(node);
        }
        for service in ["greeter", "greeter.dc2", "greeter.dc3", "ledger"] {
            wait_routable(&app, service);
        }
        let converged = started.elapsed();
        let mesh = Mesh {
            app,
            svcs,
            gateways,
            greeters,
            _ledger: ledger,
            converged,
            hosts,
            lab,
            _serial: serial,
        };
        mesh.assert_each_served_at_home();
        mesh
    }

    /// `GET /hello` with `Host: HOST` through app's outbound, from app's namespace.
    fn call(&self, host: &str) -> Response {
        call_from(&self.app, host)
    }

    /// Each greeter answers for its datacenter (dc1's for app's own), and dc3 for ledger.
    fn assert_each_served_at_home(&self) {
        for (host, greeter) in ["greeter", "greeter.dc2", "greeter.dc3"]
            .iter()
            .zip(GREETERS)
        {
            assert_served_by(&self.call(host), greeter);
        }
        assert_served_by(&self.call("ledger"), LEDGER);
    }

    /// Cuts both gateways of datacenter `n` from every WAN they joined: `n` is partitioned.
    fn cut_off_the_wan(&self, n: usize) {
        for (host, network) in self.wan_links(n) {
            self.lab.cut(host, &network);
        }
    }

    /// Heals what [`Mesh::cut_off_the_wan`] cut.
    fn heal_the_wan(&self, n: usize) {
        for (host, network) in self.wan_links(n) {
            self.lab.heal(host, &network);
        }
    }

    /// (gateway host, WAN) for each WAN a gateway of datacenter `n` joined.
    fn wan_links(&self, n: usize) -> Vec<(&Host, String)> {
        let lan = lan(n);
        self.hosts.gateways[2 * (n - 1)..2 * n]
            .iter()
            .flat_map(|host| {
                host.networks()
                    .filter(|network| **network != *lan)
                    .map(move |network| (host, network.to_owned()))
            })
            .collect()
    }
}

/// `GET /hello` with `Host: HOST` through `node`'s outbound, from its namespace.
fn call_from(node: &Node, host: &str) -> Response {
    node.outbound_get(host, "/hello")
        .unwrap_or_else(|e| panic!("Host: {host} from {}: {e}", node.name))
}

/// The greeter that served `response`, which must be a 200 from one of `candidates`; else
/// panics saying what came instead (`what` says which call it was).
fn greeter_among<'a>(response: &Response, candidates: &[&'a str], what: &str) -> &'a str {
    let served = served_by(response);
    candidates
        .iter()
        .find(|greeter| served == Some(**greeter))
        .copied()
        .unwrap_or_else(|| {
            panic!("{what}: expected a 200 from one of {candidates:?}: {response:?}")
        })
}

/// Asserts that app's `/routes` holds a healthy route to each service abroad — dc2's greeter,
/// dc3's greeter and ledger — learned through a dc1 gateway, the only nodes app links to
/// outside its LAN; and one to dc1's own greeter.
fn assert_routes_abroad_via_dc1_gateways(app: &Node) {
    let routes = app.admin_json("/routes");
    let route = |service: &str, datacenter: &str| {
        routes
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["service"] == service && r["datacenter"] == datacenter)
            })
            .unwrap_or_else(|| panic!("app has no route to {service} in {datacenter}: {routes}"))
    };
    let home = route("greeter", "dc1");
    assert_eq!(home["node"], "dc1-svc1", "dc1's greeter: {home}");
    assert_eq!(home["healthy"], true, "dc1's greeter: {home}");
    for (service, datacenter, node) in [
        ("greeter", "dc2", "dc2-svc2"),
        ("greeter", "dc3", SVC3),
        ("ledger", "dc3", SVC3),
    ] {
        let row = route(service, datacenter);
        assert_eq!(row["node"], node, "{service} in {datacenter}: {row}");
        assert_eq!(row["healthy"], true, "{service} in {datacenter}: {row}");
        let via = row["via"].as_str().unwrap_or_default();
        assert!(
            via.starts_with("dc1-gw-"),
            "app's route to {service} in {datacenter} is via {via:?}, not a dc1 gateway: {row}"
        );
    }
}

#[test]
fn routes_converge_across_three_datacenters() {
    let mesh = Mesh::start(Wan::FullMesh);
    println!(
        "three datacenters: app reached every service {:?} after the nodes started",
        mesh.converged
    );
    // Mesh::start checked each service once; a few more, as a balancer may pick anew each time.
    for _ in 0..3 {
        mesh.assert_each_served_at_home();
    }
    // A datacenter named in the host is where the call must go: dc1 and dc2 have no ledger.
    for host in ["ledger.dc1", "ledger.dc2"] {
        assert_ferry_error(&mesh.call(host), 503, "no-route", host);
    }
    assert_routes_abroad_via_dc1_gateways(&mesh.app);
}

#[test]
fn failover_goes_down_the_datacenters_and_comes_back_to_dc1() {
    let mut mesh = Mesh::start(Wan::FullMesh);
    let addresses: Vec<_> = mesh.greeters.iter().map(|g| g.address).collect();

    // The first call after a kill meets the dead greeter: its sidecar flags the call as never
    // delivered and app sends it on at once to the nearest datacenter that has a greeter.
    // Which one is nearer (lowest RTT) is up to the machine, so either may answer.
    mesh.greeters[0].kill();
    let killed = Instant::now();
    let first = mesh.call("greeter");
    let took = killed.elapsed();
    let abroad = [GREETERS[1], GREETERS[2]];
    let nearest = greeter_among(&first, &abroad, "first call after dc1's greeter was killed");
    println!("dc1's greeter killed: first call answered by {nearest} after {took:?}");
    // Later calls stay abroad; the nearest may change with RTT samples, so either will do,
    // and the one that answered last is the one to kill next.
    let mut last = nearest;
    for _ in 0..5 {
        last = greeter_among(
            &mesh.call("greeter"),
            &abroad,
            "after dc1's greeter was killed",
        );
    }

    let second = GREETERS
        .iter()
        .position(|g| *g == last)
        .expect("greeter_among answers one of GREETERS");
    let remaining = abroad
        .into_iter()
        .find(|g| *g != last)
        .expect("two greeters abroad");
    mesh.greeters[second].kill();
    let killed = Instant::now();
    let first = mesh.call("greeter");
    let took = killed.elapsed();
    let answered = greeter_among(
        &first,
        &[remaining],
        &format!("first call after {last} died"),
    );
    println!("{last} killed too: first call answered by {answered} after {took:?}");
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), remaining);
    }
    // A call for the dead greeter's own datacenter stays there: it fails, it does not move
    // (503 once the greeter's sidecar has taken it out).
    let pinned = format!("greeter.{}", dc(second + 1));
    let (_, response) = time_until(&mesh.app, &pinned, killed, "refused", |r| {
        let served = served_by(r);
        assert!(
            served.is_none(),
            "{pinned} was served by {served:?} while {last} was dead: {r:?}"
        );
        r.status == 503
    });
    assert_ferry_error(&response, 503, "no-healthy-endpoint", &pinned);

    // Restarted where they were, the greeters pass their next health check (every second)
    // and dc1's takes its calls back.
    for i in [0, second] {
        mesh.greeters[i] =
            Backend::http_at_in(mesh.hosts.svcs[i].netns(), GREETERS[i], addresses[i]);
    }
    let restarted = Instant::now();
    let (back, _) = time_until(&mesh.app, "greeter", restarted, "served by dc1", |r| {
        served_by(r) == Some(GREETERS[0])
    });
    println!("both greeters restarted: first answer from dc1 again after {back:?}");
    let (back_abroad, _) = time_until(&mesh.app, &pinned, restarted, "served at home", |r| {
        served_by(r) == Some(last)
    });
    println!("{pinned} answered by {last} again after {back_abroad:?}");
    for _ in 0..3 {
        mesh.assert_each_served_at_home();
    }
}

#[test]
fn dc1_reaches_dc3_through_dc2_and_loses_it_while_dc2_is_off_the_wan() {
    let mesh = Mesh::start(Wan::Chain);
    for _ in 0..3 {
        assert_served_by(&mesh.call("ledger"), LEDGER);
    }
    assert_routes_abroad_via_dc1_gateways(&mesh.app);

    // The call rides an inner session between app and svc3 themselves (end to end: only they
    // hold its keys), whose packets dc1's, dc2's and dc3's gateways forward unread.
    let svc3 = &mesh.svcs[2];
    let out = relayed_via(&mesh.app, SVC3);
    let back = relayed_via(svc3, &mesh.app.name);
    println!("app reaches {SVC3} via {out}; {SVC3} reaches app via {back}");
    assert!(out.starts_with("dc1-gw-"), "app -> {SVC3} via {out}");
    assert!(back.starts_with("dc3-gw-"), "{SVC3} -> app via {back}");
    for gateway in &mesh.gateways {
        // Each end links to its own datacenter's gateways; no gateway links to the far end.
        for end in [&mesh.app, svc3]
            .into_iter()
            .filter(|end| !same_dc(gateway, end))
        {
            let (holds, peers) = holds_session(gateway, end);
            assert!(
                !holds,
                "{} holds a session with {} (it should only forward datagrams): {peers}",
                gateway.name, end.name
            );
        }
    }

    mesh.cut_off_the_wan(2);
    let cut = Instant::now();
    assert_withdrawn_within_2_s(&mesh.app, "ledger", cut, "dc2 cut off both WANs");
    // dc1 still serves itself.
    assert_served_by(&mesh.call("greeter"), GREETERS[0]);

    mesh.heal_the_wan(2);
    let healed = Instant::now();
    assert_served_again_within_2_s(&mesh.app, "ledger", LEDGER, healed, "dc2 back on both WANs");
}

/// Whether two nodes are in the same datacenter, by the `dcN-` their names start with.
fn same_dc(a: &Node, b: &Node) -> bool {
    a.name.get(..4) == b.name.get(..4)
}

#[test]
fn a_partitioned_dc3_is_withdrawn_within_2_s_and_each_side_serves_itself() {
    let mesh = Mesh::start(Wan::FullMesh);

    mesh.cut_off_the_wan(3);
    let cut = Instant::now();
    assert_withdrawn_within_2_s(&mesh.app, "ledger", cut, "dc3 cut off the WAN");
    // Each side keeps serving what it can: dc1 and dc2 from app, dc3 from its own sidecar.
    let svc3 = &mesh.svcs[2];
    for _ in 0..3 {
        assert_served_by(&mesh.call("greeter"), GREETERS[0]);
        assert_served_by(&mesh.call("greeter.dc2"), GREETERS[1]);
        assert_ferry_error(&mesh.call("greeter.dc3"), 503, "no-route", "greeter.dc3");
        assert_served_by(&call_from(svc3, "greeter"), GREETERS[2]);
        assert_served_by(&call_from(svc3, "ledger"), LEDGER);
        assert_ferry_error(
            &call_from(svc3, "greeter.dc1"),
            503,
            "no-route",
            "greeter.dc1",
        );
    }

    mesh.heal_the_wan(3);
    let healed = Instant::now();
    assert_served_again_within_2_s(&mesh.app, "ledger", LEDGER, healed, "dc3 back on the WAN");
    mesh.assert_each_served_at_home();
}
