//! `[authorization]`, `[[rate_limit]]` and `[intercept]`: read, checked, printed back.

use super::{addr, at, errors, full_errors, message_of, parse};
use crate::config::*;

const GUARDED: &str = r#"
[tunnel]
ca = ["ca.crt"]

[[service]]
name = "billing"
address = "127.0.0.1:8080"

[authorization]
default = "deny"

[[authorization.rule]]
service = "billing"
from = ["service:frontend", "group:payments", "node:web-1", "datacenter:eu-west",
        "key:HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="]
methods = ["GET", "POST"]
paths = ["/invoices/*"]

[[authorization.rule]]
service = "*"
from = ["group:ops"]

[[rate_limit]]
service = "billing"
requests_per_second = 100
burst = 200
"#;

#[test]
fn rules_and_rate_limits_are_read_and_printed_back() {
    let config = parse(GUARDED);
    let authorization = &config.authorization;
    assert_eq!(authorization.default, AuthorizationDefault::Deny);
    assert_eq!(authorization.rules.len(), 2);
    let rule = &authorization.rules[0];
    assert_eq!(rule.from.len(), 5);
    assert_eq!(rule.methods, ["GET", "POST"]);
    assert_eq!(rule.paths, ["/invoices/*"]);
    assert_eq!(
        config.rate_limits,
        [RateLimitConfig {
            service: "billing".into(),
            requests_per_second: 100,
            burst: 200,
        }]
    );
    let printed = config.to_toml();
    assert!(printed.contains("[[authorization.rule]]"), "{printed}");
    let again = parse(&printed);
    assert_eq!(again.authorization, config.authorization);
    assert_eq!(again.rate_limits, config.rate_limits);
}

#[test]
fn without_the_sections_every_call_is_allowed_and_none_limited() {
    let config = parse("[[service]]\nname = \"billing\"\naddress = \"127.0.0.1:8080\"\n");
    assert_eq!(config.authorization, AuthorizationConfig::default());
    assert!(config.rate_limits.is_empty());
    let limit = parse(
        "[[service]]\nname = \"billing\"\naddress = \"127.0.0.1:8080\"\n\
         [[rate_limit]]\nservice = \"billing\"\nrequests_per_second = 5\n",
    );
    assert_eq!(limit.rate_limits[0].burst, 5, "a second's worth");
}

#[test]
fn selectors_that_need_certificates_are_refused_without_a_ca() {
    let text = r#"[[service]]
name = "billing"
address = "127.0.0.1:8080"
[authorization]
default = "deny"
[[authorization.rule]]
service = "billing"
from = ["key:HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", "node:web-1"]
"#;
    assert_eq!(errors(text), [at(8, "authorization.rule[0].from[1]")]);
    let errors = full_errors(text);
    assert!(message_of(&errors, "authorization.rule[0].from[1]").contains("[tunnel] ca"));
}

#[test]
fn bad_rules_and_limits_name_their_line_and_key() {
    let text = r#"[[service]]
name = "billing"
address = "127.0.0.1:8080"
[authorization]
default = "maybe"
[[authorization.rule]]
service = "biling"
from = ["user:alice"]
methods = ["get"]
paths = ["invoices", "/a*b"]
colour = "red"
[[authorization.rule]]
service = "billing"
[[rate_limit]]
service = "billing"
requests_per_second = 0
[[rate_limit]]
service = "billing"
requests_per_second = 10
burst = "lots"
"#;
    assert_eq!(
        errors(text),
        [
            at(5, "authorization.default"),
            at(7, "authorization.rule[0].service"),
            at(8, "authorization.rule[0].from[0]"),
            at(9, "authorization.rule[0].methods[0]"),
            at(10, "authorization.rule[0].paths[0]"),
            at(10, "authorization.rule[0].paths[1]"),
            at(11, "authorization.rule[0].colour"),
            at(12, "authorization.rule[1].from"),
            at(16, "rate_limit[0].requests_per_second"),
            at(18, "rate_limit[1].service"),
            at(20, "rate_limit[1].burst"),
        ]
    );
    let errors = full_errors(text);
    assert!(message_of(&errors, "authorization.rule[0].from[0]").contains("not a kind of caller"));
    assert!(message_of(&errors, "authorization.rule[0].service").contains("no [[service]]"));
    assert!(message_of(&errors, "rate_limit[1].service").contains("a second rate limit"));
}

#[test]
fn intercept_is_off_by_default_and_its_network_is_checked() {
    let config = parse("");
    assert!(!config.intercept.enabled);
    assert_eq!(config.intercept.virtual_network.to_string(), "240.0.0.0/16");
    let on = parse(
        "[intercept]\nenabled = true\nlisten = \"127.0.0.1:7704\"\ndns = \"127.0.0.1:5353\"\n\
         virtual_network = \"10.99.0.0/24\"\nupstreams = [\"127.0.0.11\", \"10.0.0.2:5300\"]\n",
    );
    assert_eq!(on.intercept.dns.port(), 5353);
    assert_eq!(
        on.intercept.upstreams,
        [addr("127.0.0.11:53"), addr("10.0.0.2:5300")]
    );
    assert!(
        config.intercept.upstreams.is_empty(),
        "the system's by default"
    );
    assert_eq!(on.intercept.virtual_network.to_string(), "10.99.0.0/24");
    assert_eq!(parse(&on.to_toml()).intercept, on.intercept);
    let text = "[intercept]\nenabled = true\nvirtual_network = \"10.99.0.1/24\"\nport = 1\n\
                upstreams = [\"resolver\"]\n";
    assert_eq!(
        errors(text),
        [
            at(3, "intercept.virtual_network"),
            at(4, "intercept.port"),
            at(5, "intercept.upstreams[0]")
        ]
    );
    let clash = "[admin]\nlisten = \"127.0.0.1:9000\"\n[intercept]\nenabled = true\n\
                 listen = \"127.0.0.1:9000\"\n";
    assert_eq!(errors(clash), [at(5, "intercept.listen")]);
    let elsewhere = "[intercept]\nenabled = true\nlisten = \"10.0.0.1:7704\"\n";
    assert_eq!(errors(elsewhere), [at(3, "intercept.listen")]);
}
