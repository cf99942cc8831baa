//! Registry plugins against real backends (issue 5): a static file edited under a running
//! node, a real DNS server (dnsmasq) whose records change, a real etcd server stopped and
//! restarted mid-test, and mDNS between two hosts (network namespaces joined by a veth pair,
//! whose link carries multicast as a LAN does; root only).

mod support;

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::netns::NetnsPair;
use support::registry::{Dnsmasq, Etcd};
use support::{
    eventually, eventually_every, get, get_in, wait_ready, wait_routable, Backend, Node, Service,
};

/// Waits until calls for `host` through `node` are answered by `backend`.
fn wait_answered_by(node: &Node, host: &str, backend: &str, within: Duration) {
    eventually(within, || match node.answered_by(host)? {
        name if name == backend => Ok(()),
        other => Err(format!("answered by {other}, want {backend}")),
    });
}

/// `GET PATH` on a node's admin API on this host's loopback, without curl (fast polls):
/// the status and body, or status 0 while it cannot connect.
fn admin(address: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn readyz(node: &Node) -> (u16, String) {
    admin(node.admin, "/readyz")
}

/// `GET /registry`, parsed.
fn registry_status(address: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&admin(address, "/registry").1).unwrap_or(serde_json::Value::Null)
}

/// The value of a metric line that starts with `prefix` (name and labels).
fn metric(node: &Node, prefix: &str) -> Option<f64> {
    let body = node.admin_get("/metrics").body;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn static_file(services: &[(&str, SocketAddr)]) -> String {
    services
        .iter()
        .map(|(name, address)| {
            format!("[[service]]\nname = \"{name}\"\nendpoints = [\"{address}\"]\nprotocol = \"http\"\n\n")
        })
        .collect()
}

#[test]
fn static_file_routes_follows_edits_and_keeps_the_last_good_set_on_a_bad_one() {
    let one = Backend::http("static-one");
    let two = Backend::http("static-two");
    let node = Node::builder("static-node");
    let file = node.dir().join("services.toml");
    fs::write(&file, static_file(&[("greeter", one.address)])).unwrap();
    let node = node
        .raw("[registry]\nkind = \"static\"\nfile = \"services.toml\"\n")
        .start();
    wait_ready(&node);
    assert_eq!(node.answered_by("greeter").unwrap(), "static-one");
    assert_eq!(node.answered_by("greeter.dc1").unwrap(), "static-one");

    fs::write(&file, static_file(&[("greeter", two.address)])).unwrap();
    wait_answered_by(&node, "greeter", "static-two", Duration::from_secs(10));

    // A bad edit: the node says why, stays ready, and keeps routing by the last good file.
    fs::write(
        &file,
        "[[service]]\nname = \"greeter\"\nendpoints = [\"not-an-address\"]\n",
    )
    .unwrap();
    let body = eventually(Duration::from_secs(10), || match readyz(&node) {
        (200, body) if body.contains("registry static unavailable") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert!(body.contains("not-an-address"), "{body}");
    assert_eq!(node.answered_by("greeter").unwrap(), "static-two");
    assert_eq!(
        metric(&node, "ferry_registry_up{kind=\"static\"}"),
        Some(0.0)
    );
    assert!(metric(&node, "ferry_registry_errors_total{kind=\"static\"}").unwrap_or(0.0) >= 1.0);

    fs::write(&file, static_file(&[("greeter", one.address)])).unwrap();
    wait_answered_by(&node, "greeter", "static-one", Duration::from_secs(10));
    let (status, body) = readyz(&node);
    assert_eq!((status, body.contains("warning")), (200, false), "{body}");
    assert_eq!(
        metric(&node, "ferry_registry_up{kind=\"static\"}"),
        Some(1.0)
    );
}

#[test]
fn a_static_file_that_never_parsed_keeps_the_node_unready_and_says_why() {
    let node = Node::builder("static-missing")
        .raw("[registry]\nkind = \"static\"\nfile = \"missing.toml\"\n")
        .start();
    let body = eventually(Duration::from_secs(20), || match readyz(&node) {
        (503, body) if body.contains("missing.toml") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert!(body.contains("registry static not synced"), "{body}");
    fs::write(node.dir().join("missing.toml"), "").unwrap();
    wait_ready(&node);
}

fn srv(service: &str, target: &str, port: u16, priority: u16, weight: u16) -> String {
    format!("_{service}._tcp.svc.test,{target},{port},{priority},{weight}")
}

#[test]
fn dns_srv_and_a_records_route_and_changed_records_are_followed() {
    let first = Backend::http("dns-first");
    let fallback = Backend::http("dns-fallback");
    let second = Backend::http("dns-second");
    // Two hosts on one port, for A records, whose answers carry no port.
    let port = support::free_tcp_port();
    let plain_one = Backend::http_at("plain-one", SocketAddr::from(([127, 0, 0, 1], port)));
    let plain_two = Backend::http_at("plain-two", SocketAddr::from(([127, 0, 0, 2], port)));
    let hosts = "127.0.0.1 g.svc.test\n127.0.0.1 plain.svc.test\n";
    let dns = Dnsmasq::start(
        "svc.test",
        hosts,
        &[
            srv("greeter", "g.svc.test", first.address.port(), 10, 10),
            srv("greeter", "g.svc.test", fallback.address.port(), 20, 10),
        ],
    );
    let node = Node::builder("dns-node")
        .raw(&format!(
            "[registry]\nkind = \"dns\"\ndomain = \"svc.test.\"\nnameservers = [\"{}\"]\nport = {port}\n",
            dns.address
        ))
        .start();
    wait_ready(&node);

    // SRV: the lowest priority only, on the port the record names.
    for _ in 0..5 {
        assert_eq!(node.answered_by("greeter").unwrap(), "dns-first");
    }
    // A: the configured port.
    assert_eq!(node.answered_by("plain").unwrap(), "plain-one");
    let missing = get(node.outbound, "nowhere", "/hello").unwrap();
    assert_eq!(missing.status, 503, "{missing:?}");
    assert_eq!(missing.header("ferry-error"), Some("no-route"));

    // Records change; TTLs are 1 s, so the node follows within seconds.
    dns.set_hosts("127.0.0.1 g.svc.test\n127.0.0.2 plain.svc.test\n");
    wait_answered_by(&node, "plain", "plain-two", Duration::from_secs(10));
    dns.restart(&[srv("greeter", "g.svc.test", second.address.port(), 10, 10)]);
    wait_answered_by(&node, "greeter", "dns-second", Duration::from_secs(10));

    // The server goes away: the last answers keep serving, and the node says so.
    dns.stop();
    let body = eventually(Duration::from_secs(15), || match readyz(&node) {
        (200, body) if body.contains("registry dns unavailable") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert!(body.contains("warning"), "{body}");
    assert_eq!(node.answered_by("greeter").unwrap(), "dns-second");
    assert_eq!(node.answered_by("plain").unwrap(), "plain-two");
    assert_eq!(metric(&node, "ferry_registry_up{kind=\"dns\"}"), Some(0.0));
    drop((plain_one, plain_two, fallback));
}

const PREFIX: &str = "/ferry-test/";

fn etcd_node(name: &str, etcd: &Etcd) -> support::NodeBuilder {
    Node::builder(name).raw(&format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\n",
        etcd.url
    ))
}

fn registered(etcd: &Etcd) -> usize {
    etcd.keys(&format!("{PREFIX}nodes/"))
        .map(|k| k.len())
        .unwrap_or(0)
}

#[test]
fn etcd_nodes_find_each_other_under_leases_and_ride_out_an_etcd_restart() {
    let etcd = Etcd::start();
    let greeter = Backend::http("greeter-on-b");
    let b = etcd_node("etcd-b", &etcd)
        .service(Service::http("greeter", greeter.address).health("/healthz"))
        .start();
    // A knows B by nothing but the registry: no peers, no trust entry.
    let a = etcd_node("etcd-a", &etcd).start();
    wait_ready(&a);
    wait_ready(&b);
    wait_routable(&a, "greeter");
    assert_eq!(a.answered_by("greeter").unwrap(), "greeter-on-b");
    assert_eq!(registered(&etcd), 2);

    // A change in etcd reaches the node within 200 ms: a record written by hand appears.
    let record = r#"{"name":"by-hand","datacenter":"dc1","key":"mNyU/LvDr3hbQbg5V+RalDBiv1l/00K0Ty9HrkBWTVQ=","address":"127.0.0.1:9","services":[]}"#;
    let put = etcd.etcdctl(&["put", &format!("{PREFIX}nodes/by-hand"), record]);
    assert!(put.success(), "{}", put.stderr);
    let written = Instant::now();
    eventually_every(Duration::from_millis(5), Duration::from_millis(200), || {
        let status = registry_status(a.admin);
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.iter().any(|n| n["name"] == "by-hand") {
            Ok(())
        } else {
            Err(format!("after {:?}: {status}", written.elapsed()))
        }
    });
    let del = etcd.etcdctl(&["del", &format!("{PREFIX}nodes/by-hand")]);
    assert!(del.success(), "{}", del.stderr);

    // etcd dies: calls keep working from what the nodes know, and they say etcd is down.
    etcd.stop();
    let body = eventually(Duration::from_secs(10), || match readyz(&a) {
        (200, body) if body.contains("registry etcd unavailable") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert!(body.contains("warning"), "{body}");
    for _ in 0..5 {
        assert_eq!(a.answered_by("greeter").unwrap(), "greeter-on-b");
    }
    assert_eq!(metric(&a, "ferry_registry_up{kind=\"etcd\"}"), Some(0.0));

    // etcd returns: the nodes catch up, and a node registered after it returned is found.
    etcd.restart();
    eventually(Duration::from_secs(15), || match readyz(&a) {
        (200, body) if !body.contains("warning") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let hello = Backend::http("hello-on-c");
    let c = etcd_node("etcd-c", &etcd)
        .service(Service::http("hello", hello.address).health("/healthz"))
        .start();
    wait_ready(&c);
    wait_routable(&a, "hello");
    assert_eq!(a.answered_by("hello").unwrap(), "hello-on-c");
    assert_eq!(a.answered_by("greeter").unwrap(), "greeter-on-b");
    eventually(Duration::from_secs(10), || match registered(&etcd) {
        3 => Ok(()),
        n => Err(format!("{n} nodes registered, want 3")),
    });

    // C dies without a word: its lease runs out and it leaves the registry and A's view.
    c.kill();
    eventually(Duration::from_secs(15), || {
        let status = registry_status(a.admin);
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        match (
            registered(&etcd),
            nodes.iter().any(|n| n["name"] == "etcd-c"),
        ) {
            (2, false) => Ok(()),
            other => Err(format!("{other:?}: {status}")),
        }
    });
}

#[test]
fn a_stopping_node_deregisters_at_once() {
    let etcd = Etcd::start();
    let node = etcd_node("etcd-leaving", &etcd).start();
    wait_ready(&node);
    eventually(Duration::from_secs(10), || match registered(&etcd) {
        1 => Ok(()),
        n => Err(format!("{n} registered")),
    });
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));
    // Revoked on the way out: well before the 5 s lease would have run out.
    eventually(Duration::from_secs(2), || match registered(&etcd) {
        0 => Ok(()),
        n => Err(format!("{n} still registered")),
    });
}

#[test]
fn mdns_nodes_on_a_lan_find_each_other_and_the_first_call_does_not_wait_for_a_timeout() {
    let pair = NetnsPair::new();
    // The LAN is up before the nodes start, as a host's network would be.
    for (ns, link) in [(&pair.a.name, "veth-a"), (&pair.b.name, "veth-b")] {
        eventually(Duration::from_secs(10), || {
            let ran = support::run(
                std::process::Command::new("ip").args(["-n", ns, "link", "show", link]),
                Duration::from_secs(5),
            );
            if ran.stdout.contains("state UP") {
                Ok(())
            } else {
                Err(format!("{link} in {ns} not up yet: {}", ran.stdout))
            }
        });
    }
    let greeter = Backend::http_in(pair.b.netns(), "greeter-on-b");
    let mdns = "[registry]\nkind = \"mdns\"\n";
    let a = Node::builder("mdns-a")
        .netns(&pair.a.name)
        .tunnel_ip(pair.a.ip)
        .raw(mdns)
        .start();
    wait_ready(&a);
    let b = Node::builder("mdns-b")
        .netns(&pair.b.name)
        .tunnel_ip(pair.b.ip)
        .service(Service::http("greeter", greeter.address).health("/healthz"))
        .raw(mdns)
        .start();
    wait_ready(&b);
    // The very first call, the moment B is up: answered once B is found and linked, not
    // refused because nothing was known yet. A hears B's announcement at once, but B may
    // only hear A up to a second later (a responder multicasts a record at most once a
    // second, RFC 6762 §6, and A announced as it started) and until then cannot take A's
    // link: the call waits for that, and no longer.
    let started = Instant::now();
    let first = a.answered_by("greeter");
    let took = started.elapsed();
    assert_eq!(first, Ok("greeter-on-b".to_owned()), "after {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "the first call took {took:?}"
    );
    // Once every node found is linked, a name nobody has is refused at once.
    let started = Instant::now();
    let missing = get_in(a.netns.as_deref(), a.outbound, "nowhere", "/").unwrap();
    assert_eq!(
        missing.header("ferry-error"),
        Some("no-route"),
        "{missing:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let status = a.admin_get("/registry").body;
    assert!(status.contains("mdns-b"), "{status}");

    // B stops: its goodbye withdraws it from A's registry view.
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(20)), Some(0));
    eventually(Duration::from_secs(5), || {
        let status = a.admin_get("/registry").body;
        if status.contains("mdns-b") {
            Err(status)
        } else {
            Ok(())
        }
    });
}

#[test]
fn check_validates_the_static_registry_file() {
    let dir = support::TempDir::new("check-static");
    let config = dir.join("ferry.toml");
    fs::write(
        &config,
        "[node]\nname = \"n\"\n\n[registry]\nkind = \"static\"\nfile = \"services.toml\"\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    fs::write(
        dir.join("services.toml"),
        "[[service]]\nname = \"greeter\"\nendpoints = [\"10.0.0.5\"]\n",
    )
    .unwrap();
    let ran = support::ferry(&["check", "--config", config_arg], dir.path());
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(
        ran.stderr.contains(":6: registry.file:") && ran.stderr.contains("\"10.0.0.5\""),
        "{}",
        ran.stderr
    );
    fs::write(
        dir.join("services.toml"),
        "[[service]]\nname = \"greeter\"\nendpoints = [\"10.0.0.5:8080\"]\n",
    )
    .unwrap();
    let ran = support::ferry(&["check", "--config", config_arg], dir.path());
    assert!(ran.success(), "{ran:?}");
}
