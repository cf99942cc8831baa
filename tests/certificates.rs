//! Certificates in the tunnel's handshake (issue 18, points 2 and 3): a node the mesh CA
//! signed is trusted with no list naming its key; expired, not-yet-valid, wrongly signed and
//! tampered certificates are refused and counted; a node announces only the services its
//! certificate names; a renewed certificate file is taken without a restart. Real `ferry`
//! processes; the first two tests run the server and its clients in two network namespaces
//! joined by a veth pair (root and `ip`), the others on loopback.

mod support;

use std::fs;
use std::time::{Duration, SystemTime};

use ferry_tunnel::certificate::Certificate;
use support::ca::{write_certificate, Ca};
use support::netns::NetnsPair;
use support::{
    eventually, ferry, get, get_in, metric, wait_ready, wait_routable, Backend, Node, NodeBuilder,
    Response, Service,
};

const DAY: Duration = Duration::from_secs(86_400);

/// A node that trusts `ca` and no key, fronting greeter under a certificate naming it.
fn server(ca: &Ca, greeter: &Backend) -> NodeBuilder {
    let b = Node::builder("cert-server")
        .ca(&ca.certificate())
        .service(Service::http("greeter", greeter.address).health("/healthz"));
    let cert = ca.sign(&b, &["greeter"]);
    b.certificate(cert)
}

/// A node that trusts `ca`, holds a certificate of it naming no service, and dials `b`.
fn client(ca: &Ca, b: &Node) -> Node {
    let a = Node::builder("cert-client")
        .ca(&ca.certificate())
        .peer(b.tunnel, &b.public_key);
    let cert = ca.sign(&a, &[]);
    a.certificate(cert).start()
}

/// [`server`] in the namespace `b` of `hosts`, started.
fn server_in(hosts: &NetnsPair, ca: &Ca, greeter: &Backend) -> Node {
    server(ca, greeter)
        .netns(&hosts.b.name)
        .tunnel_ip(hosts.b.ip)
        .start()
}

/// A node in the namespace `a` of `hosts` that dials `b`.
fn client_builder_in(hosts: &NetnsPair, b: &Node) -> NodeBuilder {
    Node::builder("cert-client")
        .netns(&hosts.a.name)
        .tunnel_ip(hosts.a.ip)
        .peer(b.tunnel, &b.public_key)
}

/// `GET /hello` to greeter through `node`, in its namespace.
fn hello(node: &Node) -> Response {
    get_in(node.netns.as_deref(), node.outbound, "greeter", "/hello").expect("answered")
}

fn handshakes(node: &Node, result: &str) -> f64 {
    metric(
        node,
        "ferry_tunnel_handshakes_total",
        &[&format!("result=\"{result}\"")],
    )
    .unwrap_or(0.0)
}

#[test]
fn between_namespaces_a_node_the_ca_signed_calls_through_a_node_whose_lists_name_no_key() {
    let hosts = NetnsPair::new();
    let ca = Ca::new("mesh");
    let greeter = Backend::http_in(hosts.b.netns(), "greeter-signed");
    let b = server_in(&hosts, &ca, &greeter);
    let a = client_builder_in(&hosts, &b).ca(&ca.certificate());
    let cert = ca.sign(&a, &[]);
    let a = a.certificate(cert).start();
    wait_ready(&b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
    let response = hello(&a);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.contains("greeter-signed"), "{response:?}");
    assert!(handshakes(&b, "ok") >= 1.0);

    let status = b.admin_json("/status");
    let kinds: Vec<_> = status["certificates"]
        .as_array()
        .map(|certs| certs.iter().map(|c| c["kind"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["node", "ca"], "{status}");
    assert!(
        status["certificates"][0]["expires_in_seconds"].as_i64() > Some(29 * 86_400),
        "{status}"
    );
    let expiry = metric(&b, "ferry_certificate_expiry_seconds", &["kind=\"node\""]);
    assert!(expiry > Some(29.0 * 86_400.0), "{expiry:?}");
}

#[test]
fn between_namespaces_expired_early_foreign_and_tampered_certificates_are_refused() {
    let hosts = NetnsPair::new();
    let ca = &Ca::new("mesh");
    let other = &Ca::new("other");
    let greeter = Backend::http_in(hosts.b.netns(), "greeter-guarded");
    let b = server_in(&hosts, ca, &greeter);
    wait_ready(&b);
    let now = SystemTime::now();
    type Make<'a> = Box<dyn Fn(&NodeBuilder) -> &'static str + 'a>;
    let cases: Vec<(&str, &str, Make<'_>)> = vec![
        (
            "expired",
            "expired",
            Box::new(move |a| ca.sign_window(a, now - DAY * 10, DAY)),
        ),
        (
            "not yet valid",
            "expired",
            Box::new(move |a| ca.sign_window(a, now + DAY, DAY * 30)),
        ),
        (
            "signed by another CA",
            "untrusted",
            Box::new(move |a| other.sign(a, &[])),
        ),
        (
            "tampered with",
            "bad-certificate",
            Box::new(move |a| {
                let good = ca.sign(a, &["greeter"]);
                let text = fs::read_to_string(a.dir().join(good)).expect("reads");
                let mut cert = Certificate::from_pem(&text).expect("a certificate");
                cert.subject.services.push("billing".into());
                write_certificate(a, &cert)
            }),
        ),
    ];
    for (what, result, make) in cases {
        let before = handshakes(&b, result);
        // The client trusts no CA, so it starts with whatever certificate it is given.
        let a = client_builder_in(&hosts, &b);
        let cert = make(&a);
        let a = a.certificate(cert).start();
        eventually(Duration::from_secs(20), || {
            a.assert_alive();
            let now = handshakes(&b, result);
            (now > before)
                .then_some(())
                .ok_or_else(|| format!("a certificate {what}: no {result} refusal counted yet"))
        });
        let response = hello(&a);
        assert_eq!(response.status, 503, "a certificate {what}: {response:?}");
        let told = match result {
            "expired" => "certificate expired or not yet valid",
            "untrusted" => "untrusted key",
            _ => "bad certificate",
        };
        assert!(
            a.log().contains(told),
            "a certificate {what}: the refused node's log says why ({told})"
        );
    }
}

#[test]
fn a_node_announces_only_the_services_its_certificate_names() {
    let ca = Ca::new("mesh");
    let greeter = Backend::http("greeter-named");
    let billing = Backend::http("billing-unnamed");
    let b = server(&ca, &greeter)
        .service(Service::http("billing", billing.address).health("/healthz"))
        .start();
    let a = client(&ca, &b);
    wait_ready(&b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
    let response = get(a.outbound, "billing", "/hello").expect("answered");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.header("ferry-error"),
        Some("no-route"),
        "{response:?}"
    );
    let refused = metric(
        &a,
        "ferry_tunnel_announcements_refused_total",
        &["reason=\"not-in-certificate\""],
    );
    assert!(refused >= Some(1.0), "{}", a.admin_get("/metrics").body);
    assert!(
        b.log()
            .contains("service billing is not named in certificate"),
        "the node warns of its own unnamed service"
    );
}

#[test]
fn a_renewed_certificate_file_is_taken_without_a_restart() {
    let ca = Ca::new("mesh");
    let greeter = Backend::http("greeter-renewed");
    let builder = server(&ca, &greeter);
    let short = ca.sign_window(&builder, SystemTime::now() - DAY, DAY * 3);
    let node_dir = builder.dir().path().to_owned();
    let b = builder.certificate(short).start();
    wait_ready(&b);
    let warned = b.admin_json("/status");
    assert!(
        warned["certificates"][0]["warning"].as_str().is_some(),
        "two days left is a warning: {warned}"
    );

    let subject = ("cert-server", b.public_key.as_str(), "dc1");
    ca.sign_into(subject, &node_dir.join("node.crt"), &["greeter"]);
    eventually(Duration::from_secs(10), || {
        let status = b.admin_json("/status");
        match status["certificates"][0]["expires_in_seconds"].as_i64() {
            Some(left) if left > 20 * 86_400 => Ok(()),
            other => Err(format!("still {other:?} seconds left: {status}")),
        }
    });
    let a = client(&ca, &b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
}

#[test]
fn ferry_check_names_a_certificate_for_another_node() {
    let ca = Ca::new("mesh");
    let node = Node::builder("cert-checked").ca(&ca.certificate());
    let stranger = Node::builder("cert-checked");
    let cert = ca.sign(&stranger, &[]);
    fs::copy(stranger.dir().join(cert), node.dir().join("node.crt")).expect("copies");
    let node = node.certificate("node.crt");
    let config = node.dir().join("ferry.toml");
    fs::write(&config, node.config_text()).expect("writes");
    let ran = ferry(
        &["check", "--config", config.to_str().expect("UTF-8")],
        node.dir().path(),
    );
    assert!(!ran.success(), "{ran:?}");
    let line = node
        .config_text()
        .lines()
        .position(|l| l.starts_with("certificate ="))
        .map(|i| i + 1)
        .expect("the line");
    assert!(
        ran.stderr
            .contains(&format!("ferry.toml:{line}: tunnel.certificate:")),
        "{ran:?}"
    );
    assert!(ran.stderr.contains("is for the key"), "{ran:?}");
}
