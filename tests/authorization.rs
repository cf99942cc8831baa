//! Authorization and rate limits on the node that fronts a service (issue 18, points 5 and 6):
//! decided from the caller's authenticated identity, answered as the reference says to curl
//! (403 `forbidden`, 429 `rate-limited` with `retry-after`), to grpcio (PERMISSION_DENIED,
//! RESOURCE_EXHAUSTED) and to redis-cli (the TCP stream cut); audit mode serves and counts;
//! rules reload; and across datacenters the rule sees the caller, not the gateways. The
//! serving node and its workloads run in one network namespace, the callers and their
//! clients in another, joined by a veth pair; across datacenters, a LAN each and a WAN that
//! only the gateways touch. Needs root and `ip` (iproute2).

mod support;

use std::fs;
use std::time::Duration;

use support::ca::Ca;
use support::lab::Lab;
use support::mesh::{one_at_a_time, MeshPlan};
use support::netns::NetnsPair;
use support::{
    eventually, get_in, grpc_call_in, metric, redis_cli_in, wait_ready, wait_routable, Backend,
    GrpcOutcome, Node, NodeBuilder, Response, Service,
};

/// The serving node's host (`b`) with its workloads, HTTP, gRPC and redis, and the callers'
/// host (`a`). Declared first, so that it outlives (and is removed after) what runs in it.
struct Hosts {
    pair: NetnsPair,
    http: Backend,
    grpc: Backend,
    redis: Backend,
}

impl Hosts {
    fn new() -> Hosts {
        let pair = NetnsPair::new();
        let b = pair.b.netns();
        Hosts {
            http: Backend::http_in(b, "greeter-guarded"),
            grpc: Backend::grpc_in(b, "grpc-guarded"),
            redis: Backend::redis_in(b, "redis-guarded"),
            pair,
        }
    }
}

/// In `a`'s namespace, as its application would: `GET /hello` to greeter through `node`.
fn get(node: &Node) -> Result<Response, String> {
    get_in(node.netns.as_deref(), node.outbound, "greeter", "/hello")
}

fn grpc_hello(node: &Node) -> GrpcOutcome {
    grpc_call_in(
        node.netns.as_deref(),
        node.outbound,
        "hello",
        "SayHello",
        &["hi"],
    )
}

fn redis_ping(node: &Node) -> Result<String, String> {
    redis_cli_in(node.netns.as_deref(), node.tcp_outbound("redis"), &["PING"])
}

/// A node in `b` trusting `ca`, fronting the workloads under a certificate that names them,
/// with `policy` (TOML sections) appended to its config.
fn server(ca: &Ca, hosts: &Hosts, policy: &str) -> Node {
    let b = Node::builder("guarded")
        .netns(&hosts.pair.b.name)
        .tunnel_ip(hosts.pair.b.ip)
        .ca(&ca.certificate())
        .service(Service::http("greeter", hosts.http.address).health("/healthz"))
        .service(Service::grpc("hello", hosts.grpc.address))
        .service(Service::tcp("redis", hosts.redis.address))
        .raw(policy);
    let cert = ca.sign(&b, &["greeter", "hello", "redis"]);
    let b = b.certificate(cert).start();
    wait_ready(&b);
    b
}

/// A caller in `a` named `name`, signed by `ca`, dialing `b`, with a TCP outbound to redis.
fn caller(name: &str, ca: &Ca, hosts: &Hosts, b: &Node) -> Node {
    let a = Node::builder(name)
        .netns(&hosts.pair.a.name)
        .tunnel_ip(hosts.pair.a.ip)
        .ca(&ca.certificate())
        .peer(b.tunnel, &b.public_key)
        .tcp_outbound("redis");
    let cert = ca.sign(&a, &[]);
    let a = a.certificate(cert).start();
    wait_ready(&a);
    a
}

/// Waits until a call to greeter through `a` gets an answer with `status` (the route known).
fn wait_answered(a: &Node, status: u16) -> Response {
    let mut last = None;
    eventually(Duration::from_secs(20), || {
        let response = get(a)?;
        let got = response.status;
        last = Some(response);
        (got == status)
            .then_some(())
            .ok_or_else(|| format!("answered {got}, want {status}: {last:?}"))
    });
    last.expect("answered")
}

fn decisions(node: &Node, service: &str, decision: &str) -> f64 {
    let labels = [
        format!("service=\"{service}\""),
        format!("decision=\"{decision}\""),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    metric(node, "ferry_authorization_decisions_total", &labels).unwrap_or(0.0)
}

const DENY_BUT_TRUSTED_CALLER: &str = r#"
[authorization]
default = "deny"

[[authorization.rule]]
service = "*"
from = ["node:trusted-caller"]
"#;

#[test]
fn under_deny_a_caller_no_rule_allows_is_refused_by_curl_grpc_and_tcp() {
    let hosts = Hosts::new();
    let ca = Ca::new("mesh");
    let b = server(&ca, &hosts, DENY_BUT_TRUSTED_CALLER);
    let trusted = caller("trusted-caller", &ca, &hosts, &b);
    let stranger = caller("stranger", &ca, &hosts, &b);

    wait_routable(&trusted, "greeter");
    let served = get(&trusted).expect("answered");
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(grpc_hello(&trusted).code, "OK");
    assert_eq!(redis_ping(&trusted).as_deref(), Ok("PONG"));

    let refused = wait_answered(&stranger, 403);
    assert_eq!(
        refused.header("ferry-error"),
        Some("forbidden"),
        "{refused:?}"
    );
    let line = refused.body.trim();
    assert!(
        line.contains("stranger") && line.contains("greeter") && !line.contains('\n'),
        "one line naming the caller and the service: {line:?}"
    );
    let grpc = grpc_hello(&stranger);
    assert_eq!(grpc.code, "PERMISSION_DENIED", "{grpc:?}");
    let cut = redis_ping(&stranger);
    assert!(cut.is_err(), "the TCP stream is closed at once: {cut:?}");

    assert!(decisions(&b, "greeter", "allow") >= 1.0);
    assert!(decisions(&b, "greeter", "deny") >= 1.0);
    assert!(decisions(&b, "redis", "deny") >= 1.0);
    assert!(b.log().contains("no authorization rule allows this call"));
}

#[test]
fn audit_serves_what_deny_would_refuse_and_counts_it() {
    let hosts = Hosts::new();
    let ca = Ca::new("mesh");
    let policy = DENY_BUT_TRUSTED_CALLER.replace("\"deny\"", "\"audit\"");
    let b = server(&ca, &hosts, &policy);
    let stranger = caller("stranger", &ca, &hosts, &b);
    wait_answered(&stranger, 200);
    assert!(decisions(&b, "greeter", "audit-deny") >= 1.0);
    assert_eq!(decisions(&b, "greeter", "deny"), 0.0);
    assert!(
        b.log().contains("audit-deny"),
        "the served call is logged as a denial"
    );
}

#[test]
fn rules_reload_with_the_config() {
    let hosts = Hosts::new();
    let ca = Ca::new("mesh");
    let allow = DENY_BUT_TRUSTED_CALLER.replace("\"deny\"", "\"allow\"");
    let b = server(&ca, &hosts, &allow);
    let stranger = caller("stranger", &ca, &hosts, &b);
    wait_answered(&stranger, 200);

    let text = fs::read_to_string(b.config_path()).expect("reads");
    let denying = text.replace("default = \"allow\"", "default = \"deny\"");
    assert_ne!(text, denying);
    fs::write(b.config_path(), &denying).expect("writes");
    b.signal("HUP");
    wait_answered(&stranger, 403);

    // A bad edit keeps the last good rules.
    let broken = denying.replace("node:trusted-caller", "nobody");
    fs::write(b.config_path(), broken).expect("writes");
    b.signal("HUP");
    eventually(Duration::from_secs(10), || {
        let ready = b.admin_get("/readyz").body;
        ready
            .contains("warning")
            .then_some(())
            .ok_or_else(|| format!("no warning yet: {ready}"))
    });
    assert_eq!(get(&stranger).map(|r| r.status), Ok(403));
}

#[test]
fn over_its_rate_a_service_answers_429_with_retry_after_and_grpc_resource_exhausted() {
    let hosts = Hosts::new();
    let ca = Ca::new("mesh");
    let limits = r#"
[[rate_limit]]
service = "greeter"
requests_per_second = 1
burst = 2

[[rate_limit]]
service = "hello"
requests_per_second = 1
burst = 1
"#;
    let b = server(&ca, &hosts, limits);
    let a = caller("busy-caller", &ca, &hosts, &b);
    wait_routable(&a, "greeter");
    let mut limited = None;
    for _ in 0..6 {
        let response = get(&a).expect("answered");
        if response.status == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status, 200, "{response:?}");
    }
    let limited = limited.expect("a 429 within six calls at 1/s");
    assert_eq!(limited.header("ferry-error"), Some("rate-limited"));
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after in seconds");
    assert!((1..=2).contains(&retry_after), "{limited:?}");

    let codes: Vec<String> = (0..3).map(|_| grpc_hello(&a).code).collect();
    assert!(
        codes.iter().any(|c| c == "RESOURCE_EXHAUSTED"),
        "three gRPC calls at 1/s: {codes:?}"
    );
    let counted = metric(&b, "ferry_rate_limited_total", &["service=\"greeter\""]);
    assert!(counted >= Some(1.0), "{counted:?}");
}

/// A sidecar of the mesh plan holding a certificate of `ca` for its name and datacenter.
fn signed(builder: NodeBuilder, ca: &Ca, services: &[&str]) -> NodeBuilder {
    let builder = builder.ca(&ca.certificate());
    let cert = ca.sign(&builder, services);
    builder.certificate(cert)
}

#[test]
fn across_datacenters_the_rule_sees_the_caller_not_the_gateways() {
    let _serial = one_at_a_time();
    let ca = Ca::new("mesh");
    let mut lab = Lab::new();
    for network in ["lan1", "lan2", "wan"] {
        lab.network(network);
    }
    let app_host = lab.host("app", &["lan1"]);
    let other_host = lab.host("other", &["lan1"]);
    let server_host = lab.host("srv", &["lan2"]);
    let gw1 = lab.host("dc1-gw", &["lan1", "wan"]);
    let gw2 = lab.host("dc2-gw", &["lan2", "wan"]);
    let greeter = Backend::http_in(server_host.netns(), "greeter-dc2");

    let mut plan = MeshPlan::new();
    plan.gateway(&gw1, "dc1", "lan1");
    plan.gateway(&gw2, "dc2", "lan2");
    let app = signed(plan.sidecar(&app_host, "dc1"), &ca, &[]);
    let other = signed(plan.sidecar(&other_host, "dc1"), &ca, &[]);
    let policy = "[authorization]\ndefault = \"deny\"\n\n[[authorization.rule]]\n\
                  service = \"greeter\"\nfrom = [\"node:dc1-app\"]\n";
    let server = signed(plan.sidecar(&server_host, "dc2"), &ca, &["greeter"])
        .service(Service::http("greeter", greeter.address).health("/healthz"))
        .raw(policy);
    let gateways = plan.start_gateways();
    let (app, other, server) = (app.start(), other.start(), server.start());
    for node in gateways.iter().chain([&app, &other, &server]) {
        wait_ready(node);
    }
    let answer = get;
    eventually(Duration::from_secs(30), || match answer(&app)?.status {
        200 => Ok(()),
        status => Err(format!("dc1-app got {status}")),
    });
    eventually(Duration::from_secs(30), || {
        let response = answer(&other)?;
        match (response.status, response.header("ferry-error")) {
            (403, Some("forbidden")) if response.body.contains("dc1-other") => Ok(()),
            _ => Err(format!("dc1-other got {response:?}")),
        }
    });
    assert!(decisions(&server, "greeter", "allow") >= 1.0);
}
