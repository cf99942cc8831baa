//! Interception (issue 19): Ferry's DNS answers the mesh's names with addresses of its virtual
//! network and sends every other query to the resolvers the system had, unchanged. The node
//! and its clients run in network namespace `a`, whose `resolv.conf` names a dnsmasq there;
//! the service's node runs in `b`. `ferry intercept install` and `uninstall` change the
//! packet filter of `a` only. Needs root, `ip`, `dig`, `dnsmasq`, `iptables` and `runuser`.

mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use support::lab::Lab;
use support::mesh::{one_at_a_time, MeshPlan};
use support::netns::{Netns, NetnsPair};
use support::registry::Dnsmasq;
use support::{
    command_in, eventually, ferry_bin, require_tool, run, wait_ready, wait_routable, Backend, Node,
    Service,
};

/// `/etc/netns/NAME/resolv.conf`, which `ip netns exec NAME` mounts over `/etc/resolv.conf`:
/// the system resolver as everything in that namespace sees it. Removed on drop.
struct Resolvconf(PathBuf);

impl Resolvconf {
    fn naming(host: &Netns, server: Ipv4Addr) -> Resolvconf {
        let dir = PathBuf::from("/etc/netns").join(&host.name);
        fs::create_dir_all(&dir).expect("can make /etc/netns/NAME");
        fs::write(dir.join("resolv.conf"), format!("nameserver {server}\n"))
            .expect("can write resolv.conf");
        Resolvconf(dir)
    }
}

impl Drop for Resolvconf {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `dig` in `host` asking `server` for `name`'s A record: the status and the addresses.
fn dig(host: &Netns, server: SocketAddr, name: &str, tcp: bool) -> (String, Vec<String>) {
    require_tool("dig");
    let mut command = command_in(host.netns(), "dig");
    command
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([
            name,
            "A",
            "+noall",
            "+comments",
            "+answer",
            "+tries=1",
            "+time=3",
        ]);
    if tcp {
        command.arg("+tcp");
    }
    let ran = run(&mut command, Duration::from_secs(15));
    let status = ran
        .stdout
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("none")
        .to_owned();
    let addresses = ran
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tA\t"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    (status, addresses)
}

const FERRY_DNS: &str = "127.0.0.1:53";
/// The upstream resolver `a`'s resolv.conf names: a dnsmasq in `a`.
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// Node `svc` in `b` fronting greeter; node `app` in `a`, linked to it, with interception's
/// DNS on `dns`; `a`'s system resolver a dnsmasq that knows `www.outside.example`. Declared
/// in the order they must be dropped in: the nodes first, the namespaces last.
struct Setup {
    a: Node,
    b: Node,
    _web: Backend,
    _dnsmasq: Dnsmasq,
    _resolvconf: Resolvconf,
    hosts: NetnsPair,
}

fn setup(dns: &str) -> Setup {
    setup_in(NetnsPair::new(), dns, Vec::new())
}

/// [`setup`] in `hosts`, `svc` fronting `services` besides greeter.
fn setup_in(hosts: NetnsPair, dns: &str, services: Vec<Service>) -> Setup {
    let resolvconf = Resolvconf::naming(&hosts.a, UPSTREAM);
    let dnsmasq = Dnsmasq::start_at(
        hosts.a.netns(),
        SocketAddr::from((UPSTREAM, 53)),
        "outside.example",
        "10.1.2.3 www.outside.example\n",
        &[],
    );
    let web = Backend::http_in(hosts.b.netns(), "greeter-b");
    let mut b = Node::builder("svc")
        .netns(&hosts.b.name)
        .tunnel_ip(hosts.b.ip)
        .service(Service::http("greeter", web.address).health("/healthz"));
    for service in services {
        b = b.service(service);
    }
    let a = Node::builder("app")
        .netns(&hosts.a.name)
        .tunnel_ip(hosts.a.ip)
        .peer(b.tunnel(), b.public_key())
        .raw(&format!(
            "[intercept]\nenabled = true\ndns = \"{dns}\"\nvirtual_network = \"240.0.0.0/16\"\n"
        ));
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
    Setup {
        a,
        b,
        _web: web,
        _dnsmasq: dnsmasq,
        _resolvconf: resolvconf,
        hosts,
    }
}

#[test]
fn service_names_resolve_to_virtual_addresses_and_other_names_go_to_the_system_resolver() {
    let setup = setup(FERRY_DNS);
    let (hosts, b) = (&setup.hosts, &setup.b);
    let ferry: SocketAddr = FERRY_DNS.parse().expect("an address");

    let mut seen = Vec::new();
    for name in ["greeter", "greeter.mesh", "Greeter.dc1", "greeter.dc1.mesh"] {
        for tcp in [false, true] {
            let (status, addresses) = dig(&hosts.a, ferry, name, tcp);
            assert_eq!(status, "NOERROR", "{name} (tcp: {tcp})");
            let [address] = addresses.as_slice() else {
                panic!("{name} (tcp: {tcp}): one address, got {addresses:?}");
            };
            assert!(address.starts_with("240.0."), "{name}: {address}");
            seen.push((
                name.to_ascii_lowercase().replace(".mesh", ""),
                address.clone(),
            ));
        }
    }
    for (name, address) in &seen {
        for (other, other_address) in &seen {
            assert_eq!(name == other, address == other_address, "{seen:?}");
        }
    }

    // Names outside the mesh: the system resolver's answer, through Ferry, unchanged.
    for tcp in [false, true] {
        let (status, addresses) = dig(&hosts.a, ferry, "www.outside.example", tcp);
        assert_eq!(
            (status.as_str(), addresses),
            ("NOERROR", vec!["10.1.2.3".to_owned()])
        );
        let (status, _) = dig(&hosts.a, ferry, "nothing.outside.example", tcp);
        assert_eq!(status, "NXDOMAIN", "NXDOMAIN stays NXDOMAIN (tcp: {tcp})");
    }
    // An unknown service is a name like any other: the upstream's answer, whatever it is.
    let direct = SocketAddr::from((UPSTREAM, 53));
    let upstream_says = dig(&hosts.a, direct, "billing", false);
    assert_ne!(upstream_says.0, "none", "the upstream answers");
    assert_eq!(dig(&hosts.a, ferry, "billing", false), upstream_says);

    // The service goes away: its name is the upstream's again.
    b.kill();
    eventually(Duration::from_secs(10), || {
        let answer = dig(&hosts.a, ferry, "greeter", false);
        (answer == dig(&hosts.a, direct, "greeter", false))
            .then_some(())
            .ok_or_else(|| format!("greeter still resolves: {answer:?}"))
    });
}

/// The namespace's packet filter rules, as `iptables-save` prints them: each rule, and each
/// chain that is not built in (a table shows up empty once anything looked at it).
fn rules(host: &Netns) -> String {
    let ran = run(
        &mut command_in(host.netns(), "iptables-save"),
        Duration::from_secs(10),
    );
    assert!(ran.success(), "iptables-save: {}", ran.stderr);
    let built_in = ["PREROUTING", "INPUT", "OUTPUT", "FORWARD", "POSTROUTING"];
    ran.stdout
        .lines()
        .filter(|l| {
            l.starts_with("-A")
                || l.strip_prefix(':').is_some_and(|chain| {
                    !built_in.iter().any(|b| chain.starts_with(&format!("{b} ")))
                })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ferry intercept ARGS` in `host`.
fn intercept(host: &Netns, args: &[&str]) {
    require_tool("iptables");
    let ran = run(
        command_in(host.netns(), ferry_bin())
            .arg("intercept")
            .args(args),
        Duration::from_secs(20),
    );
    assert!(ran.success(), "ferry intercept {args:?}: {ran:?}");
}

/// `dig NAME` as an application in `host` runs it: as another user than Ferry (root), asking
/// the resolver of `resolv.conf`.
fn dig_as_app(host: &Netns, name: &str) -> Vec<String> {
    let mut command = command_in(host.netns(), "runuser");
    command.args([
        "-u", "nobody", "--", "dig", name, "A", "+short", "+tries=1", "+time=3",
    ]);
    let ran = run(&mut command, Duration::from_secs(15));
    ran.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn install_captures_dns_idempotently_and_uninstall_removes_exactly_what_it_added() {
    let setup = setup("127.0.0.1:5353");
    let host = &setup.hosts.a;
    let config = setup.a.config_path().to_str().expect("UTF-8").to_owned();
    // A rule of someone else's, which must outlive install and uninstall untouched.
    let theirs = [
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "192.0.2.1",
        "-j",
        "RETURN",
    ];
    let added = run(
        command_in(host.netns(), "iptables").args(theirs),
        Duration::from_secs(10),
    );
    assert!(added.success(), "{added:?}");
    let before = rules(host);
    assert!(before.contains("192.0.2.1"), "{before}");
    assert_eq!(
        dig_as_app(host, "greeter"),
        Vec::<String>::new(),
        "the system resolver knows no greeter"
    );

    intercept(
        host,
        &["install", "--config", &config, "--uid", "0", "--dns"],
    );
    let installed = rules(host);
    assert!(installed.contains(":FERRY_INTERCEPT"), "{installed}");
    assert!(
        installed.contains("-A OUTPUT -j FERRY_INTERCEPT"),
        "{installed}"
    );
    assert!(
        installed.contains("-d 240.0.0.0/16 -p tcp -j REDIRECT --to-ports 7704"),
        "{installed}"
    );
    intercept(
        host,
        &["install", "--config", &config, "--uid", "0", "--dns"],
    );
    assert_eq!(rules(host), installed, "a second install changes nothing");

    // An application asking its system resolver now gets Ferry's answer; Ferry itself, whose
    // UID is spared, still reaches the real resolver for other names.
    let answer = dig_as_app(host, "greeter");
    assert!(
        answer.len() == 1 && answer[0].starts_with("240.0."),
        "greeter through the captured resolver: {answer:?}"
    );
    assert_eq!(dig_as_app(host, "www.outside.example"), ["10.1.2.3"]);

    intercept(host, &["uninstall"]);
    assert_eq!(
        rules(host),
        before,
        "uninstall removes exactly what install added"
    );
    intercept(host, &["uninstall"]);
    assert_eq!(rules(host), before, "a second uninstall changes nothing");
    assert_eq!(dig_as_app(host, "greeter"), Vec::<String>::new());
}

/// Runs `program ARGS` in `host` as an application there would: as `nobody`, whose traffic
/// the rules send to Ferry.
fn as_app(host: &Netns, program: &str, args: &[&str]) -> support::Ran {
    let mut command = command_in(host.netns(), "runuser");
    command.args(["-u", "nobody", "--", program]).args(args);
    run(&mut command, Duration::from_secs(20))
}

/// A process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP server in `host` that speaks first: `220 banner` on connect, then closes.
fn banner_server(host: &Netns) -> (Killed, u16) {
    let port = support::free_tcp_port();
    let script = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen(16)\nprint('READY', flush=True)\n\
         while True:\n    c, _ = s.accept()\n    c.sendall(b'220 banner\\r\\n')\n    c.close()\n"
    );
    let mut child = Killed(
        command_in(host.netns(), "python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    let mut line = String::new();
    if let Some(out) = child.0.stdout.take() {
        use std::io::BufRead;
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    assert_eq!(line.trim(), "READY", "the banner server started");
    (child, port)
}

#[test]
fn applications_that_know_nothing_of_ferry_call_services_by_name() {
    let hosts = NetnsPair::new();
    let b_host = hosts.b.netns();
    let (redis, grpc) = (
        Backend::redis_in(b_host, "redis-b"),
        Backend::grpc_in(b_host, "grpc-b"),
    );
    let (_banner, banner_port) = banner_server(&hosts.b);
    let services = vec![
        Service::tcp("redis", redis.address),
        Service::grpc("hello", grpc.address),
        Service::tcp("banner", SocketAddr::from(([127, 0, 0, 1], banner_port))),
    ];
    let setup = setup_in(hosts, "127.0.0.1:5353", services);
    let (hosts, a) = (&setup.hosts, &setup.a);
    // What a pod has: a default route (the redirect happens after routing).
    let routed = run(
        command_in(hosts.a.netns(), "ip").args(["route", "add", "default", "dev", "veth-a"]),
        Duration::from_secs(10),
    );
    assert!(routed.success(), "{routed:?}");
    let config = a.config_path().to_str().expect("UTF-8").to_owned();
    intercept(
        &hosts.a,
        &["install", "--config", &config, "--uid", "0", "--dns"],
    );

    // curl, by name, with no proxy and no Host header of Ferry's.
    for url in ["http://greeter/hello", "http://greeter.dc1/hello"] {
        let ran = as_app(&hosts.a, "curl", &["-sS", "--max-time", "10", url]);
        assert!(
            ran.success() && ran.stdout.contains("hello from greeter-b"),
            "{url}: {ran:?}"
        );
    }
    // redis-cli, by name.
    let ran = as_app(
        &hosts.a,
        "redis-cli",
        &["-h", "redis", "-p", "6379", "PING"],
    );
    assert_eq!(ran.stdout.trim(), "PONG", "{ran:?}");
    // A gRPC client dialing a service's name on the gRPC port, with the system's Python (the
    // application's user cannot read root's).
    require_tool("/usr/bin/python3");
    let ran = as_app(
        &hosts.a,
        "/usr/bin/python3",
        &[
            support::python_script("grpc_client.py")
                .to_str()
                .expect("UTF-8"),
            "hello:50051",
            "SayHello",
            "intercepted",
        ],
    );
    assert!(ran.success(), "grpcio through interception: {ran:?}");
    // A server that speaks first is not kept waiting for the client.
    let read_banner = "import socket\ns = socket.create_connection(('banner', 25), timeout=5)\n\
                       print(s.recv(64).decode().strip())\n";
    let ran = as_app(&hosts.a, "python3", &["-c", read_banner]);
    assert_eq!(ran.stdout.trim(), "220 banner", "{ran:?}");
    // A virtual address no name was given: refused at once.
    let refused_at_once = |url: &str| {
        let started = std::time::Instant::now();
        let ran = as_app(&hosts.a, "curl", &["-sS", "--max-time", "5", url]);
        assert!(!ran.success() && ran.stdout.is_empty(), "{url}: {ran:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: refused, not timed out"
        );
    };
    refused_at_once("http://240.0.255.254/");
    // The address of a service that went away: refused too, not answered 503.
    let ferry_dns: SocketAddr = "127.0.0.1:5353".parse().expect("an address");
    let (_, addresses) = dig(&hosts.a, ferry_dns, "greeter", false);
    let [gone] = addresses.as_slice() else {
        panic!("greeter's address: {addresses:?}");
    };
    setup.b.kill();
    eventually(Duration::from_secs(10), || {
        let answer = dig(&hosts.a, ferry_dns, "greeter", false);
        answer
            .1
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("greeter still resolves: {answer:?}"))
    });
    refused_at_once(&format!("http://{gone}/hello"));

    intercept(&hosts.a, &["uninstall"]);
}

/// Across datacenters, in a lab of two LANs joined by a WAN that only the gateways touch: an
/// intercepted client calls `greeter` (its own datacenter's) and `greeter.dc2` by name, and
/// when dc1's greeter dies its next call by the same name is served by dc2's.
#[test]
fn an_intercepted_client_reaches_other_datacenters_and_fails_over_by_name() {
    let _serial = one_at_a_time();
    let mut lab = Lab::new();
    for network in ["lan1", "lan2", "wan"] {
        lab.network(network);
    }
    let app_host = lab.host("app", &["lan1"]);
    let svc1_host = lab.host("svc1", &["lan1"]);
    let svc2_host = lab.host("svc2", &["lan2"]);
    let gw1 = lab.host("dc1-gw", &["lan1", "wan"]);
    let gw2 = lab.host("dc2-gw", &["lan2", "wan"]);
    let mut greeter1 = Backend::http_in(svc1_host.netns(), "dc1-greeter");
    let greeter2 = Backend::http_in(svc2_host.netns(), "dc2-greeter");

    let mut plan = MeshPlan::new();
    plan.gateway(&gw1, "dc1", "lan1");
    plan.gateway(&gw2, "dc2", "lan2");
    let app = plan
        .sidecar(&app_host, "dc1")
        .raw("[intercept]\nenabled = true\ndns = \"127.0.0.1:5353\"\n");
    let svc1 = plan
        .sidecar(&svc1_host, "dc1")
        .service(Service::http("greeter", greeter1.address).health("/healthz"));
    let svc2 = plan
        .sidecar(&svc2_host, "dc2")
        .service(Service::http("greeter", greeter2.address).health("/healthz"));
    let gateways = plan.start_gateways();
    let (app, svc1, svc2) = (app.start(), svc1.start(), svc2.start());
    for node in gateways.iter().chain([&app, &svc1, &svc2]) {
        wait_ready(node);
    }
    wait_routable(&app, "greeter.dc2");
    let netns = app_host.netns().expect("a namespace");
    let routed = run(
        command_in(Some(netns), "ip").args(["route", "add", "default", "dev", "lan1"]),
        Duration::from_secs(10),
    );
    assert!(routed.success(), "{routed:?}");
    let config = app.config_path().to_str().expect("UTF-8").to_owned();
    let install = ["install", "--config", &config, "--uid", "0", "--dns"];
    let ran = run(
        command_in(Some(netns), ferry_bin())
            .arg("intercept")
            .args(install),
        Duration::from_secs(20),
    );
    assert!(ran.success(), "{ran:?}");
    let call = |url: &str| {
        let mut command = command_in(Some(netns), "runuser");
        command.args(["-u", "nobody", "--", "curl", "-sS", "--max-time", "10", url]);
        run(&mut command, Duration::from_secs(20))
    };
    let by_name = call("http://greeter/hello");
    assert!(
        by_name.stdout.contains("hello from dc1-greeter"),
        "{by_name:?}"
    );
    let pinned = call("http://greeter.dc2/hello");
    assert!(
        pinned.stdout.contains("hello from dc2-greeter"),
        "{pinned:?}"
    );

    greeter1.kill();
    let failed_over = call("http://greeter/hello");
    assert!(
        failed_over.stdout.contains("hello from dc2-greeter"),
        "the first call after dc1's greeter died: {failed_over:?}"
    );
}

#[test]
fn without_iptables_the_rules_are_one_nft_table_and_work_the_same() {
    require_tool("nft");
    let setup = setup("127.0.0.1:5353");
    let host = &setup.hosts.a;
    let config = setup.a.config_path().to_str().expect("UTF-8").to_owned();
    // A PATH with nft and without iptables, as on a node that has only nftables.
    let bin = support::TempDir::new("nft-only");
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nft is installed");
    std::os::unix::fs::symlink(nft, bin.join("nft")).expect("can link nft");
    let ferry_nft_only = |args: &[&str]| {
        let ran = run(
            command_in(host.netns(), "env")
                .arg(format!("PATH={}", bin.path().display()))
                .arg(ferry_bin())
                .arg("intercept")
                .args(args),
            Duration::from_secs(20),
        );
        assert!(ran.success(), "ferry intercept {args:?}: {ran:?}");
    };
    let table = || {
        run(
            command_in(host.netns(), "nft").args(["list", "table", "ip", "ferry_intercept"]),
            Duration::from_secs(10),
        )
    };
    assert!(!table().success(), "no table before install");
    ferry_nft_only(&["install", "--config", &config, "--uid", "0", "--dns"]);
    let listed = table();
    assert!(
        listed.success() && listed.stdout.contains("240.0.0.0/16"),
        "{listed:?}"
    );
    ferry_nft_only(&["install", "--config", &config, "--uid", "0", "--dns"]);
    assert_eq!(
        table().stdout,
        listed.stdout,
        "a second install changes nothing"
    );
    let answer = dig_as_app(host, "greeter");
    assert!(
        answer.len() == 1 && answer[0].starts_with("240.0."),
        "greeter through the captured resolver: {answer:?}"
    );
    ferry_nft_only(&["uninstall"]);
    assert!(!table().success(), "uninstall removes the table");
    ferry_nft_only(&["uninstall"]);
}
