//! Authorization and rate limits on the node that fronts a service (issue 18, points 5 and 6):
//! decided from the caller's authenticated identity, answered as the reference says to curl
//! (403 `forbidden`, 429 `rate-limited` with `retry-after`), to grpcio (PERMISSION_DENIED,
//! RESOURCE_EXHAUSTED) and to redis-cli (the TCP stream cut); audit mode serves and counts;
//! rules reload; and across datacenters the rule sees the caller, not the gateways. The
//! loopback tests need no root; the one across datacenters needs root and `ip`.

mod support;

use std::fs;
use std::time::Duration;

use support::ca::Ca;
use support::lab::Lab;
use support::mesh::{one_at_a_time, MeshPlan};
use support::{
    eventually, get, get_in, grpc_call, metric, redis_cli, wait_ready, wait_routable, Backend,
    Node, NodeBuilder, Response, Service,
};

/// The workloads of the serving node: HTTP, gRPC and redis.
struct Workloads {
    http: Backend,
    grpc: Backend,
    redis: Backend,
}

impl Workloads {
    fn new() -> Workloads {
        Workloads {
            http: Backend::http("greeter-guarded"),
            grpc: Backend::grpc("grpc-guarded"),
            redis: Backend::redis("redis-guarded"),
        }
    }
}

/// A node trusting `ca`, fronting the workloads under a certificate that names them, with
/// `policy` (TOML sections) appended to its config.
fn server(ca: &Ca, workloads: &Workloads, policy: &str) -> Node {
    let b = Node::builder("guarded")
        .ca(&ca.certificate())
        .service(Service::http("greeter", workloads.http.address).health("/healthz"))
        .service(Service::grpc("hello", workloads.grpc.address))
        .service(Service::tcp("redis", workloads.redis.address))
        .raw(policy);
    let cert = ca.sign(&b, &["greeter", "hello", "redis"]);
    let b = b.certificate(cert).start();
    wait_ready(&b);
    b
}

/// A caller named `name`, signed by `ca`, dialing `b`, with a TCP outbound to redis.
fn caller(name: &str, ca: &Ca, b: &Node) -> Node {
    let a = Node::builder(name)
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
        let response = get(a.outbound, "greeter", "/hello")?;
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
    let ca = Ca::new("mesh");
    let workloads = Workloads::new();
    let b = server(&ca, &workloads, DENY_BUT_TRUSTED_CALLER);
    let trusted = caller("trusted-caller", &ca, &b);
    let stranger = caller("stranger", &ca, &b);

    wait_routable(&trusted, "greeter");
    let served = get(trusted.outbound, "greeter", "/hello").expect("answered");
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(
        grpc_call(trusted.outbound, "hello", "SayHello", &["hi"]).code,
        "OK"
    );
    let pong = redis_cli(trusted.tcp_outbound("redis"), &["PING"]);
    assert_eq!(pong.as_deref(), Ok("PONG"));

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
    let grpc = grpc_call(stranger.outbound, "hello", "SayHello", &["hi"]);
    assert_eq!(grpc.code, "PERMISSION_DENIED", "{grpc:?}");
    let cut = redis_cli(stranger.tcp_outbound("redis"), &["PING"]);
    assert!(cut.is_err(), "the TCP stream is closed at once: {cut:?}");

    assert!(decisions(&b, "greeter", "allow") >= 1.0);
    assert!(decisions(&b, "greeter", "deny") >= 1.0);
    assert!(decisions(&b, "redis", "deny") >= 1.0);
    assert!(b.log().contains("no authorization rule allows this call"));
}

#[test]
fn audit_serves_what_deny_would_refuse_and_counts_it() {
    let ca = Ca::new("mesh");
    let workloads = Workloads::new();
    let policy = DENY_BUT_TRUSTED_CALLER.replace("\"deny\"", "\"audit\"");
    let b = server(&ca, &workloads, &policy);
    let stranger = caller("stranger", &ca, &b);
    wait_answered(&stranger, 200);
    assert!(decisions(&b, "greeter", "audit-deny") >= 1.0);
    assert_eq!(decisions(&b, "greeter", "deny"), 0.0);
    assert!(b.log().contains("decision=audit-deny") || b.log().contains("audit-deny"));
}

#[test]
fn rules_reload_with_the_config() {
    let ca = Ca::new("mesh");
    let workloads = Workloads::new();
    let allow = DENY_BUT_TRUSTED_CALLER.replace("\"deny\"", "\"allow\"");
    let b = server(&ca, &workloads, &allow);
    let stranger = caller("stranger", &ca, &b);
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
    assert_eq!(
        get(stranger.outbound, "greeter", "/hello").map(|r| r.status),
        Ok(403)
    );
}

#[test]
fn over_its_rate_a_service_answers_429_with_retry_after_and_grpc_resource_exhausted() {
    let ca = Ca::new("mesh");
    let workloads = Workloads::new();
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
    let b = server(&ca, &workloads, limits);
    let a = caller("busy-caller", &ca, &b);
    wait_routable(&a, "greeter");
    let mut limited = None;
    for _ in 0..6 {
        let response = get(a.outbound, "greeter", "/hello").expect("answered");
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

    let codes: Vec<String> = (0..3)
        .map(|_| grpc_call(a.outbound, "hello", "SayHello", &["hi"]).code)
        .collect();
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
    let answer = |node: &Node| get_in(node.netns.as_deref(), node.outbound, "greeter", "/hello");
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
