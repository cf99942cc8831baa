use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_tunnel::certificate::{CaKey, Kind, Subject};

use super::*;

fn caller(key: u8, name: &str, services: &[&str], groups: &[&str]) -> PeerIdentity {
    let ca = CaKey::generate().expect("random");
    let subject = Subject {
        kind: Kind::Node,
        key: [key; 32],
        name: name.into(),
        datacenter: "eu-west".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    };
    let cert = ca
        .sign(subject, SystemTime::now(), Duration::from_secs(3600))
        .expect("signs");
    PeerIdentity {
        key: PublicKey([key; 32]),
        certificate: Some(Arc::new(cert)),
    }
}

fn bare(key: u8) -> PeerIdentity {
    PeerIdentity {
        key: PublicKey([key; 32]),
        certificate: None,
    }
}

fn rule(service: &str, from: &[&str]) -> Rule {
    Rule {
        service: service.into(),
        from: from
            .iter()
            .map(|s| Selector::parse(s).expect("a selector"))
            .collect(),
        methods: vec![],
        paths: vec![],
    }
}

fn http<'a>(service: &'a str, method: &'a Method, path: &'a str) -> Call<'a> {
    Call {
        service,
        method: Some(method),
        path: Some(path),
    }
}

fn tcp(service: &str) -> Call<'_> {
    Call {
        service,
        method: None,
        path: None,
    }
}

#[test]
fn under_allow_every_call_is_served_and_the_rules_are_not_consulted() {
    let policy = Policy {
        default: Unmatched::Allow,
        rules: vec![rule("billing", &["node:nobody"])],
    };
    assert!(!policy.is_active());
    assert_eq!(
        policy.decide(&bare(1), &http("billing", &Method::GET, "/")),
        Decision::Allow
    );
}

#[test]
fn each_kind_of_caller_is_matched_from_the_certificate_or_the_key() {
    let web = caller(1, "web-1", &["frontend"], &["payments"]);
    let get = Method::GET;
    let call = http("billing", &get, "/invoices/7");
    for (selector, allowed) in [
        ("service:frontend", true),
        ("service:Frontend", true),
        ("service:billing", false),
        ("group:payments", true),
        ("group:ops", false),
        ("node:web-1", true),
        ("node:web-2", false),
        ("datacenter:eu-west", true),
        ("datacenter:us-east", false),
    ] {
        let policy = Policy {
            default: Unmatched::Deny,
            rules: vec![rule("billing", &[selector])],
        };
        let want = if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        };
        assert_eq!(policy.decide(&web, &call), want, "{selector}");
    }
    let by_key = Policy {
        default: Unmatched::Deny,
        rules: vec![rule("*", &[&format!("key:{}", PublicKey([2; 32]))])],
    };
    assert_eq!(by_key.decide(&bare(2), &call), Decision::Allow);
    assert_eq!(by_key.decide(&web, &call), Decision::Deny);
    let needs_certificate = Policy {
        default: Unmatched::Deny,
        rules: vec![rule("billing", &["node:web-1"])],
    };
    assert_eq!(
        needs_certificate.decide(&bare(1), &call),
        Decision::Deny,
        "a caller without a certificate has no name"
    );
}

#[test]
fn methods_and_paths_narrow_a_rule_and_keep_tcp_out() {
    let web = caller(1, "web-1", &[], &[]);
    let mut narrow = rule("billing", &["node:web-1"]);
    narrow.methods = vec![Method::GET];
    narrow.paths = vec!["/invoices/*".into(), "/healthz".into()];
    let policy = Policy {
        default: Unmatched::Deny,
        rules: vec![narrow],
    };
    let (get, post) = (Method::GET, Method::POST);
    for (call, want) in [
        (http("billing", &get, "/invoices/7"), Decision::Allow),
        (http("billing", &get, "/healthz"), Decision::Allow),
        (http("billing", &get, "/healthz/deep"), Decision::Deny),
        (http("billing", &get, "/admin"), Decision::Deny),
        (http("billing", &post, "/invoices/7"), Decision::Deny),
        (http("greeter", &get, "/invoices/7"), Decision::Deny),
        (tcp("billing"), Decision::Deny),
    ] {
        assert_eq!(policy.decide(&web, &call), want, "{call:?}");
    }
    let whole = Policy {
        default: Unmatched::Deny,
        rules: vec![rule("billing", &["node:web-1"])],
    };
    assert_eq!(whole.decide(&web, &tcp("billing")), Decision::Allow);
}

#[test]
fn audit_serves_what_deny_would_refuse() {
    let policy = Policy {
        default: Unmatched::Audit,
        rules: vec![rule("billing", &["node:web-1"])],
    };
    let get = Method::GET;
    assert_eq!(
        policy.decide(&bare(9), &http("billing", &get, "/")),
        Decision::AuditDeny
    );
    assert_eq!(
        policy.decide(&caller(1, "web-1", &[], &[]), &http("billing", &get, "/")),
        Decision::Allow
    );
}

#[test]
fn bad_selectors_say_what_a_caller_is() {
    for bad in ["web-1", "node:", "user:alice", "key:not-a-key"] {
        assert!(Selector::parse(bad).is_err(), "{bad}");
    }
    assert!(Selector::parse("node:web-1")
        .expect("valid")
        .needs_certificate());
    let key = format!("key:{}", PublicKey([3; 32]));
    assert!(!Selector::parse(&key).expect("valid").needs_certificate());
}

#[test]
fn callers_are_named_by_their_certificate_or_their_key() {
    let named = caller(1, "web-1", &[], &[]);
    assert!(CallerName(&named)
        .to_string()
        .starts_with("web-1 of eu-west (key "));
    assert!(CallerName(&bare(1)).to_string().starts_with("key "));
}
