//! Rotation without downtime (issue 18, point 4), each under steady load that must lose no
//! call: a node's certificate renewed by replacing its file; a new CA added beside the old,
//! nodes re-signed, the old CA removed (after which a node still on the old CA is refused);
//! a node's key replaced, with a certificate for the new key, and no other node's config
//! touched. Real `ferry` processes on loopback; needs no root.

mod support;

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::ca::Ca;
use support::load::Load;
use support::{
    eventually, get, metric, wait_ready, wait_routable, Backend, Node, NodeBuilder, Service,
};

/// A node trusting `ca` only, fronting `service` on `backend` under a certificate of `ca`.
fn server(name: &str, ca: &Ca, service: &str, backend: &Backend) -> NodeBuilder {
    let b = Node::builder(name)
        .ca(&ca.certificate())
        .service(Service::http(service, backend.address).health("/healthz"));
    let cert = ca.sign(&b, &[service]);
    b.certificate(cert)
}

/// Every call the load made failed none; says which did.
fn assert_no_call_lost(load: &Load) {
    let answers = load.answers();
    let failed: Vec<_> = answers.iter().filter(|a| a.by.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, first: {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );
    assert!(answers.len() > 20, "the load ran: {} calls", answers.len());
}

/// The issuer of `node`'s own certificate, as `/status` shows it.
fn issuer(node: &Node) -> String {
    let status = node.admin_json("/status");
    status["certificates"][0]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Replaces `from` by `to` in `node`'s config file and reloads it.
fn edit_config(node: &Node, from: &str, to: &str) {
    let text = fs::read_to_string(node.config_path()).expect("reads");
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    fs::write(node.config_path(), text.replace(from, to)).expect("writes");
    node.signal("HUP");
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn a_certificate_renewed_under_load_is_presented_by_the_next_handshake() {
    let ca = Ca::new("mesh");
    let (web, later_web) = (Backend::http("web"), Backend::http("later-web"));
    let s1 = server("first", &ca, "greeter", &web).start();
    let s2 = server("later", &ca, "farewell", &later_web);
    // The caller's certificate runs out 8 seconds from now.
    let a = Node::builder("caller")
        .ca(&ca.certificate())
        .peer(s1.tunnel, &s1.public_key)
        .peer(s2.tunnel(), s2.public_key());
    let started = SystemTime::now() - Duration::from_secs(60);
    let short = ca.sign_window(&a, started, Duration::from_secs(68));
    let ends = now_seconds() + 8;
    let a = a.certificate(short).start();
    wait_ready(&s1);
    wait_routable(&a, "greeter");
    let load = Load::start(a.outbound, "greeter", 2);

    let renewed = (a.name.as_str(), a.public_key.as_str(), "dc1");
    ca.sign_into(renewed, &a.dir().join("node.crt"), &[]);
    eventually(Duration::from_secs(10), || {
        let status = a.admin_json("/status");
        match status["certificates"][0]["expires_in_seconds"].as_i64() {
            Some(left) if left > 86_400 => Ok(()),
            other => Err(format!("not renewed yet: {other:?}")),
        }
    });
    // Only once the old certificate has run out does a new handshake prove the renewal.
    eventually(Duration::from_secs(15), || {
        (now_seconds() > ends)
            .then_some(())
            .ok_or("the old certificate is still valid")
    });
    let s2 = s2.start();
    wait_ready(&s2);
    wait_routable(&a, "farewell");
    assert_eq!(
        metric(
            &s2,
            "ferry_tunnel_handshakes_total",
            &["result=\"expired\""]
        ),
        None,
        "the later node saw only the renewed certificate"
    );
    assert_no_call_lost(&load);
}

#[test]
fn a_ca_replaced_under_load_leaves_its_old_certificates_refused() {
    let (old, new) = (Ca::new("old"), Ca::new("new"));
    let web = Backend::http("web");
    let s = server("server", &old, "greeter", &web).start();
    let a = Node::builder("caller")
        .ca(&old.certificate())
        .peer(s.tunnel, &s.public_key);
    let cert = old.sign(&a, &[]);
    let a = a.certificate(cert).start();
    wait_ready(&s);
    wait_routable(&a, "greeter");
    let load = Load::start(a.outbound, "greeter", 2);

    // 1. Trust the new CA beside the old, everywhere.
    let only_old = format!("ca = [\"{}\"]", old.certificate());
    let both = format!(
        "ca = [\"{}\", \"{}\"]",
        old.certificate(),
        new.certificate()
    );
    for node in [&s, &a] {
        edit_config(node, &only_old, &both);
    }
    // 2. Re-sign every node with the new CA.
    new.sign_into(
        ("server", &s.public_key, "dc1"),
        &s.dir().join("node.crt"),
        &["greeter"],
    );
    new.sign_into(
        ("caller", &a.public_key, "dc1"),
        &a.dir().join("node.crt"),
        &[],
    );
    for node in [&s, &a] {
        eventually(Duration::from_secs(10), || match issuer(node) {
            key if key == new.key() => Ok(()),
            key => Err(format!("{} still presents {key}", node.name)),
        });
    }
    // 3. Stop trusting the old CA.
    let only_new = format!("ca = [\"{}\"]", new.certificate());
    for node in [&s, &a] {
        edit_config(node, &both, &only_new);
        eventually(Duration::from_secs(10), || {
            let cas = node.admin_json("/status")["certificates"]
                .as_array()
                .map_or(0, |c| c.iter().filter(|c| c["kind"] == "ca").count());
            (cas == 1)
                .then_some(())
                .ok_or("the old CA is still trusted")
        });
    }

    // A node still on the old CA is refused; one on the new joins.
    let stale = Node::builder("stale")
        .ca(&old.certificate())
        .peer(s.tunnel, &s.public_key);
    let cert = old.sign(&stale, &[]);
    let stale = stale.certificate(cert).start();
    eventually(Duration::from_secs(10), || {
        let refused = metric(
            &s,
            "ferry_tunnel_handshakes_total",
            &["result=\"untrusted\""],
        );
        refused
            .filter(|n| *n >= 1.0)
            .map(|_| ())
            .ok_or("the stale node is not refused yet")
    });
    assert_eq!(
        get(stale.outbound, "greeter", "/hello").map(|r| r.status),
        Ok(503)
    );
    let fresh = Node::builder("fresh")
        .ca(&new.certificate())
        .peer(s.tunnel, &s.public_key);
    let cert = new.sign(&fresh, &[]);
    let fresh = fresh.certificate(cert).start();
    wait_routable(&fresh, "greeter");
    assert_no_call_lost(&load);
}

#[test]
fn a_nodes_key_is_replaced_under_load_with_no_other_config_touched() {
    let ca = Ca::new("mesh");
    let (web1, web2) = (Backend::http("web-1"), Backend::http("web-2"));
    let gateway = Node::builder("gateway").gateway().ca(&ca.certificate());
    let cert = ca.sign(&gateway, &[]);
    let gateway = gateway.certificate(cert).start();
    wait_ready(&gateway);
    let sidecar = |name: &str, web: &Backend| {
        server(name, &ca, "greeter", web)
            .peer(gateway.tunnel, &gateway.public_key)
            .start()
    };
    let (s1, s2) = (sidecar("one", &web1), sidecar("two", &web2));
    let a = Node::builder("caller")
        .ca(&ca.certificate())
        .peer(gateway.tunnel, &gateway.public_key);
    let cert = ca.sign(&a, &[]);
    let a = a.certificate(cert).start();
    for node in [&s1, &s2, &a] {
        wait_ready(node);
    }
    let load = Load::start(a.outbound, "greeter", 2);
    let served_by_both = |since| {
        let shares = load.shares(since, std::time::Instant::now());
        let names: Vec<&str> = shares.iter().map(|(by, _)| by.as_str()).collect();
        (names.contains(&"web-1") && names.contains(&"web-2"))
            .then_some(())
            .ok_or_else(|| format!("answered by {shares:?}"))
    };
    let start = std::time::Instant::now();
    eventually(Duration::from_secs(20), || served_by_both(start));

    // Node two drains, gets a new key and a certificate for it, and comes back.
    s2.signal("TERM");
    s2.wait_exit(Duration::from_secs(20));
    let config = fs::read_to_string(s2.config_path()).expect("reads");
    let key_file = s2.dir().join("node.key");
    fs::remove_file(&key_file).expect("removes the old key");
    let new_key = support::keygen(&key_file);
    assert_ne!(new_key, s2.public_key);
    ca.sign_into(
        ("two", &new_key, "dc1"),
        &s2.dir().join("node.crt"),
        &["greeter"],
    );
    s2.restart();
    let back = std::time::Instant::now();
    eventually(Duration::from_secs(20), || served_by_both(back));
    assert_eq!(
        fs::read_to_string(s2.config_path()).expect("reads"),
        config,
        "not even its own config changed"
    );
    let status = s2.admin_json("/status");
    assert_eq!(status["key"], new_key.as_str(), "{status}");
    assert_no_call_lost(&load);
}
