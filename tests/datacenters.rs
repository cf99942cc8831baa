//! Two datacenters in network namespaces (issue 4, points 3, 4 and 7): dc1 and dc2, each a
//! LAN with two gateways and sidecars; only the gateways also join the WAN. dc1 has `app`
//! (whose HTTP outbound the clients use, from app's namespace) and `svc1` fronting `greeter`;
//! dc2 has `svc2` fronting another `greeter`. Each greeter says which one it is, so a test can
//! tell where a call was served. Needs root and `ip` (iproute2): without them every test here
//! fails saying so.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::lab::{Host, Lab};
use support::{
    assert_ferry_error, command_in, eventually, eventually_every, get_in, python_script,
    wait_ready, wait_routable, without_proxy, Backend, Node, NodeBuilder, Response, Service,
    TempDir,
};

/// Between polls when a test times how soon something happens.
const POLL: Duration = Duration::from_millis(20);

/// What each greeter answers `/hello` with: `hello from NAME`.
const DC1_GREETER: &str = "greeter-dc1";
const DC2_GREETER: &str = "greeter-dc2";

/// The tests here each run seven nodes on a small machine, and time what they see: one at a
/// time, so that they do not slow each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

        let app = sidecar(&hosts.app, "dc1");
        let svc1 = sidecar(&hosts.svc1, "dc1")
            .service(Service::http("greeter", greeter1.address).health("/healthz"));
        let svc2 = sidecar(&hosts.svc2, "dc2")
            .service(Service::http("greeter", greeter2.address).health("/healthz"));
        // Gateways listen on all their addresses (LAN and WAN) and advertise none: their
        // datacenter's nodes learn the address they were seen at.
        let builders: Vec<NodeBuilder> = hosts
            .gateways
            .iter()
            .map(|host| {
                Node::builder(&host.label)
                    .netns(&host.name)
                    .tunnel_ip([0, 0, 0, 0].into())
                    .datacenter(&host.label[..3])
                    .gateway()
            })
            .collect();
        let keys: Vec<String> = builders.iter().map(|b| b.public_key().to_owned()).collect();
        // Gateway j as dialed from gateway or sidecar i: on their LAN in the same datacenter,
        // else on the WAN.
        let address = |j: usize, i: usize| {
            let network = match (i / 2 == j / 2, j < 2) {
                (false, _) => "wan",
                (true, true) => "lan1",
                (true, false) => "lan2",
            };
            SocketAddr::new(hosts.gateways[j].ip(network), builders[j].tunnel().port())
        };
        // Sidecars dial both gateways of their datacenter (dc1: 0 and 1, dc2: 2 and 3).
        let (mut app, mut svc1, mut svc2) = (app, svc1, svc2);
        for j in 0..2 {
            app = app.peer(address(j, 0), &keys[j]);
            svc1 = svc1.peer(address(j, 0), &keys[j]);
            svc2 = svc2.peer(address(j + 2, 2), &keys[j + 2]);
        }
        // Each gateway dials the other three, and trusts the sidecars that dial it.
        let addresses: Vec<Vec<SocketAddr>> = (0..4)
            .map(|i| (0..4).map(|j| address(j, i)).collect())
            .collect();
        let dialers = [
            vec![app.public_key().to_owned(), svc1.public_key().to_owned()],
            vec![svc2.public_key().to_owned()],
        ];
        let gateways: Vec<Node> = builders
            .into_iter()
            .enumerate()
            .map(|(i, mut gateway)| {
                for j in (0..4).filter(|&j| j != i) {
                    gateway = gateway.peer(addresses[i][j], &keys[j]);
                }
                for key in &dialers[i / 2] {
                    gateway = gateway.trust(key);
                }
                gateway.start()
            })
            .collect();
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
        self.try_call(host)
            .unwrap_or_else(|e| panic!("Host: {host} from app: {e}"))
    }

    fn try_call(&self, host: &str) -> Result<Response, String> {
        self.app.assert_alive();
        get_in(self.hosts.app.netns(), self.app.outbound, host, "/hello")
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
        let peers = json(&self.app, "/peers");
        let path = peer_named(&peers, &self.svc2.name)
            .and_then(|p| p["path"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("app's /peers lists no session to svc2: {peers}"));
        path.strip_prefix("via ")
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("app's session to svc2 is {path:?}, not `via GATEWAY`"))
    }
}

/// A sidecar on `host`'s LAN, in datacenter `dc`, its tunnel on its LAN address.
fn sidecar(host: &Host, dc: &str) -> NodeBuilder {
    let lan = if dc == "dc1" { "lan1" } else { "lan2" };
    Node::builder(&format!("{dc}-{}", host.label))
        .netns(&host.name)
        .tunnel_ip(host.ip(lan))
        .datacenter(dc)
}

fn json(node: &Node, path: &str) -> serde_json::Value {
    let response = node.admin_get(path);
    serde_json::from_str(&response.body).unwrap_or_else(|e| {
        panic!(
            "{path} of node {} is not JSON ({e}): {response:?}",
            node.name
        )
    })
}

/// The entry of a `/peers` list for the node named `name`.
fn peer_named<'a>(peers: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    peers.as_array()?.iter().find(|p| p["name"] == name)
}

/// Asserts a 200 whose body says `hello from GREETER`.
fn assert_served_by(response: &Response, greeter: &str) {
    assert!(
        response.status == 200 && response.body.contains(&format!("hello from {greeter}")),
        "expected 200 from {greeter}: {response:?}"
    );
}

/// Whether `response` is a 200 from `greeter`.
fn served_by(response: &Response, greeter: &str) -> bool {
    response.status == 200 && response.body.contains(&format!("hello from {greeter}"))
}

/// Polls (every [`POLL`], at most 10 s) until a call from app with `Host: host` is answered
/// as `wanted` says; returns how long after `since` that was. Prints what the calls before
/// got (status and `ferry-error`, or curl's failure), one line per change.
fn time_until(
    mesh: &Mesh,
    host: &str,
    since: Instant,
    what: &str,
    wanted: impl Fn(&Response) -> bool,
) -> (Duration, Response) {
    let mut last_seen = String::new();
    let response = eventually_every(POLL, Duration::from_secs(10), || {
        let called = mesh.try_call(host);
        let seen = match &called {
            Ok(r) => format!(
                "{} {:?} {}",
                r.status,
                r.header("ferry-error"),
                r.body.lines().next().unwrap_or("")
            ),
            Err(e) => e.clone(),
        };
        if seen != last_seen {
            println!(
                "  {:>7.3} s  Host: {host} -> {seen}",
                since.elapsed().as_secs_f64()
            );
            last_seen = seen;
        }
        let response = called?;
        match wanted(&response) {
            true => Ok(response),
            false => Err(format!(
                "Host: {host} not yet {what} after {:?}: {response:?}",
                since.elapsed()
            )),
        }
    });
    (since.elapsed(), response)
}

/// The bound for withdrawing and restoring a datacenter's routes, plus a few polls:
/// each poll is a curl through `ip netns exec` (~20–50 ms here) and the pause between them.
const TWO_SECONDS_AND_POLLS: Duration = Duration::from_millis(2000 + 4 * 20 + 150);

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
        let services = json(&mesh.svc1, "/services");
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
    let (failback, _) = time_until(&mesh, "greeter", restarted, "served by dc1", |r| {
        served_by(r, DC1_GREETER)
    });
    println!("svc1's greeter restarted: first answer from dc1 again after {failback:?}");
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
    }
    mesh.svc1.assert_alive();
}

/// One call made by `call_loop.py`.
#[derive(Debug, Clone)]
struct Call {
    thread: u32,
    /// When it started, in seconds since the epoch.
    started: f64,
    took_ms: u64,
    /// The status, or `ERR`, then the body's first line or the error.
    outcome: String,
}

impl Call {
    fn parse(line: &str) -> Option<Call> {
        let mut words = line.strip_prefix("CALL ")?.splitn(4, ' ');
        Some(Call {
            thread: words.next()?.parse().ok()?,
            started: words.next()?.parse().ok()?,
            took_ms: words.next()?.parse().ok()?,
            outcome: words.next()?.to_owned(),
        })
    }

    fn ok_from(&self, greeter: &str) -> bool {
        self.outcome == format!("200 hello from {greeter}")
    }
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[test]
fn losing_one_gateway_under_load_loses_no_request() {
    let mesh = Mesh::start();
    let in_use = mesh.gateway_toward_svc2();
    let (victim, _) = mesh.gateway(&in_use);

    // Four threads in app's namespace call greeter.dc2 back to back until `stop` exists.
    let dir = TempDir::new("call-loop");
    let stop = dir.join("stop");
    let mut command = command_in(mesh.hosts.app.netns(), "python3");
    command
        .arg(python_script("call_loop.py"))
        .arg(mesh.app.outbound.to_string())
        .arg("greeter.dc2")
        .arg("4")
        .arg(&stop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = without_proxy(&mut command)
        .spawn()
        .expect("python3 call_loop.py starts");
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = {
        let calls = calls.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(call) = Call::parse(&line) {
                    calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
                }
            }
        })
    };
    let count = || calls.lock().unwrap_or_else(|e| e.into_inner()).len();

    // Under load first: some calls made and answered.
    eventually(Duration::from_secs(20), || match count() {
        n if n >= 40 => Ok(()),
        n => Err(format!("only {n} calls made by call_loop.py so far")),
    });
    victim.kill();
    let killed_at = epoch_seconds();
    let killed = Instant::now();
    println!("killed {in_use} (app's gateway toward svc2) with SIGKILL under load");
    // Calls go on for 3 s after the kill: wait until one started that late.
    eventually(Duration::from_secs(30), || {
        let calls = calls.lock().unwrap_or_else(|e| e.into_inner());
        match calls.iter().any(|c| c.started >= killed_at + 3.0) {
            true => Ok(()),
            false => Err(format!(
                "no call started 3 s after the kill yet ({:?} since; {} calls)",
                killed.elapsed(),
                calls.len()
            )),
        }
    });
    std::fs::write(&stop, b"").expect("can write the stop file");
    eventually(Duration::from_secs(30), || match child.try_wait() {
        Ok(Some(_)) => Ok(()),
        _ => Err("call_loop.py still running after the stop file".to_owned()),
    });
    reader.join().expect("the reader thread ends");

    let calls = calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
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
    let (withdrawn, response) = time_until(&mesh, "greeter.dc2", cut, "a 503", |r| r.status == 503);
    println!("dc2 cut off the WAN: greeter.dc2 answered 503 after {withdrawn:?}");
    assert_ferry_error(&response, 503, "no-route", "greeter");
    assert!(
        withdrawn <= TWO_SECONDS_AND_POLLS,
        "dc2's routes were withdrawn only {withdrawn:?} after the cut (issue 4: within 2 s)"
    );
    // The answer is fast, not a wait on the lost datacenter.
    let asked = Instant::now();
    let again = mesh.call("greeter.dc2");
    let took = asked.elapsed();
    assert_ferry_error(&again, 503, "no-route", "greeter");
    assert!(took < Duration::from_secs(1), "the next 503 took {took:?}");
    // Each side keeps serving what it can serve locally.
    for _ in 0..5 {
        assert_served_by(&mesh.call("greeter"), DC1_GREETER);
        let local = get_in(
            mesh.hosts.svc2.netns(),
            mesh.svc2.outbound,
            "greeter",
            "/hello",
        )
        .unwrap_or_else(|e| panic!("greeter from svc2 during the partition: {e}"));
        assert_served_by(&local, DC2_GREETER);
    }

    for host in &dc2_gateways {
        mesh.lab.heal(host, "wan");
    }
    let healed = Instant::now();
    let (back, _) = time_until(&mesh, "greeter.dc2", healed, "served by dc2", |r| {
        served_by(r, DC2_GREETER)
    });
    println!("WAN healed: greeter.dc2 answered from dc2 after {back:?}");
    assert!(
        back <= TWO_SECONDS_AND_POLLS,
        "dc2's routes came back only {back:?} after healing (issue 4: within 2 s)"
    );
}

#[test]
fn a_gateway_relays_without_terminating_the_inner_session() {
    let mesh = Mesh::start();
    // Mesh::start made calls to greeter.dc2, so app holds a session to svc2.
    let via = mesh.gateway_toward_svc2();
    let peers = json(&mesh.app, "/peers");
    println!("app reaches svc2 via {via}: {peers}");
    assert!(
        via.starts_with("dc1-gw-"),
        "app's session to svc2 goes through a dc1 gateway, not {via:?}: {peers}"
    );
    let svc2_key = &mesh.svc2.public_key;
    for name in ["dc1-gw-a", "dc1-gw-b"] {
        let (gateway, _) = mesh.gateway(name);
        let peers = json(gateway, "/peers");
        let holds_svc2 = peers.as_array().is_some_and(|list| {
            list.iter()
                .any(|p| p["name"] == mesh.svc2.name || p["key"] == svc2_key.as_str())
        });
        assert!(
            !holds_svc2,
            "{name} holds a session with svc2 (it should only forward datagrams): {peers}"
        );
    }
    // And the relayed session carries calls.
    assert_served_by(&mesh.call("greeter.dc2"), DC2_GREETER);
}
