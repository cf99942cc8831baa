//! Bad files: every error found in one pass, each at its line and under its dotted key.

use std::path::Path;

use super::{at, errors, full_errors, message_of, parse, KEY_A, KEY_B};
use crate::config::*;

#[test]
fn every_unknown_key_in_every_table_is_reported() {
    let text = r#"colour = "blue"
[node]
nmae = "x"
[tunnel]
listen = "0.0.0.0:7700"
peers = [{ address = "a.example:7700", kye = "x" }]
[registry]
knd = "mesh"
[[service]]
name = "a"
address = "127.0.0.1:1"
health = { http = "/h", intervall = "1s" }
[[service]]
name = "b"
address = "127.0.0.1:2"
port = 8080
[[outbound]]
kind = "http"
listen = "127.0.0.1:7701"
protocol = "http"
[admin]
address = "127.0.0.1:7702"
[deadlines]
timeout = "1s"
[log]
level = "debug"
"#;
    assert_eq!(
        errors(text),
        vec![
            at(1, "colour"),
            at(3, "node.nmae"),
            at(6, "tunnel.peers[0].kye"),
            at(8, "registry.knd"),
            at(12, "service[0].health.intervall"),
            at(16, "service[1].port"),
            at(20, "outbound[0].protocol"),
            at(22, "admin.address"),
            at(24, "deadlines.timeout"),
            at(26, "log.level"),
        ]
    );
    let message = message_of(&full_errors(text), "node.nmae");
    assert_eq!(
        message,
        "unknown key; expected one of: name, datacenter, key_file, workers"
    );
}

#[test]
fn bad_addresses_name_their_key_and_line() {
    let text = r#"[tunnel]
listen = "0.0.0.0"
advertise = "::1:7700"
peers = [
  { address = "gw.example" },
  { address = "gw.example:7700" },
]
[[service]]
name = "a"
address = "localhost:8080"
[[outbound]]
kind = "http"
listen = "127.0.0.1:99999"
[admin]
listen = 7702
"#;
    assert_eq!(
        errors(text),
        vec![
            at(2, "tunnel.listen"),
            at(3, "tunnel.advertise"),
            at(5, "tunnel.peers[0].address"),
            at(10, "service[0].address"),
            at(13, "outbound[0].listen"),
            at(15, "admin.listen"),
        ]
    );
    let errs = full_errors(text);
    assert_eq!(
        message_of(&errs, "admin.listen"),
        "expected a string such as \"127.0.0.1:7701\", found an integer"
    );
    assert!(message_of(&errs, "tunnel.listen").contains("IP:PORT"));
}

#[test]
fn bad_keys_are_reported_each() {
    // Changing one character of a good key to URL-safe base64 makes it a bad one.
    let url_safe = KEY_A.replace('8', "_");
    let text = format!(
        "[tunnel]\npeers = [{{ address = \"a.example:1\", key = \"abc\" }}]\n\
         trust = [\"{KEY_A}\", \"{url_safe}\", \"{KEY_B}\"]\n"
    );
    assert_eq!(
        errors(&text),
        vec![at(2, "tunnel.peers[0].key"), at(3, "tunnel.trust[1]")]
    );
    let errs = full_errors(&text);
    assert!(message_of(&errs, "tunnel.peers[0].key").contains("44 characters"));
    assert!(message_of(&errs, "tunnel.trust[1]").contains("not standard base64"));
}

#[test]
fn bad_durations_name_their_key() {
    let text = r#"[[service]]
name = "a"
address = "127.0.0.1:1"
health = { interval = "1", timeout = "0s" }

[deadlines]
default = "15 s"
per_service = { greeter = "2x", "bad.name" = "1s", ok = "250ms" }
"#;
    assert_eq!(
        errors(text),
        vec![
            at(4, "service[0].health.interval"),
            at(4, "service[0].health.timeout"),
            at(7, "deadlines.default"),
            at(8, "deadlines.per_service.bad.name"),
            at(8, "deadlines.per_service.greeter"),
        ]
    );
    let errs = full_errors(text);
    assert_eq!(
        message_of(&errs, "service[0].health.interval"),
        "\"1\" has no unit; write e.g. \"1s\" or \"1ms\""
    );
}

#[test]
fn duplicate_tcp_listeners_are_reported_on_the_later_one() {
    let text = r#"[admin]
listen = "127.0.0.1:7701"

[tunnel]
listen = "127.0.0.1:7701"     # UDP: no clash

[[outbound]]
kind = "http"
listen = "127.0.0.1:7701"

[[outbound]]
kind = "tcp"
listen = "127.0.0.1:7701"
service = "redis"
"#;
    let errs = full_errors(text);
    let found: Vec<_> = errs.iter().map(|e| (e.line, e.key.clone())).collect();
    assert_eq!(
        found,
        vec![at(9, "outbound[0].listen"), at(13, "outbound[1].listen")]
    );
    assert_eq!(
        errs[0].message,
        "127.0.0.1:7701 is already used by admin.listen (line 2)"
    );
}

#[test]
fn an_outbound_on_the_default_admin_address_clashes() {
    let errs = full_errors("[[outbound]]\nkind = \"http\"\nlisten = \"127.0.0.1:7702\"\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (3, "outbound[0].listen")
    );
    assert!(errs[0].message.contains("admin.listen (its default)"));
    // Port 0 asks the OS for a port: two of them are fine.
    parse("[admin]\nlisten = \"127.0.0.1:0\"\n[[outbound]]\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n");
}

#[test]
fn duplicate_service_names_are_reported() {
    let text = r#"[[service]]
name = "greeter"
address = "127.0.0.1:1"
[[service]]
name = "redis"
address = "127.0.0.1:2"
[[service]]
name = "Greeter"
address = "127.0.0.1:3"
"#;
    let errs = full_errors(text);
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].key.as_str()), (8, "service[2].name"));
    assert_eq!(
        errs[0].message,
        "service \"Greeter\" is already defined by service[0] (line 2)"
    );
}

#[test]
fn bad_service_names_are_reported() {
    let text = "[[service]]\nname = \"greeter.eu\"\naddress = \"127.0.0.1:1\"\n\
                [[service]]\nname = \"\"\naddress = \"127.0.0.1:1\"\nprotocol = \"udp\"\n";
    assert_eq!(
        errors(text),
        vec![
            at(2, "service[0].name"),
            at(5, "service[1].name"),
            at(7, "service[1].protocol")
        ]
    );
}

#[test]
fn outbound_service_is_required_for_tcp_and_forbidden_for_http() {
    let text = r#"[[outbound]]
kind = "tcp"
listen = "127.0.0.1:6380"

[[outbound]]
kind = "http"
listen = "127.0.0.1:7701"
service = "greeter"

[[outbound]]
kind = "tcp"
listen = "127.0.0.1:6381"
service = "redis.eu-west"
"#;
    assert_eq!(
        errors(text),
        vec![at(1, "outbound[0].service"), at(8, "outbound[1].service")]
    );
}

#[test]
fn missing_required_keys_are_reported_at_the_table_header() {
    let text = "[[service]]\naddress = \"127.0.0.1:1\"\n\n[[service]]\nname = \"b\"\n\n\
                [[outbound]]\nlisten = \"127.0.0.1:1\"\n[[outbound]]\nkind = \"http\"\n\
                [tunnel]\npeers = [{ key = \"";
    let text = format!("{text}{KEY_A}\" }}]\n");
    assert_eq!(
        errors(&text),
        vec![
            at(1, "service[0].name"),
            at(4, "service[1].address"),
            at(7, "outbound[0].kind"),
            at(9, "outbound[1].listen"),
            at(12, "tunnel.peers[0].address"),
        ]
    );
}

#[test]
fn registry_kind_and_its_keys_are_checked() {
    let unknown = full_errors("\n[registry]\nkind = \"consul\"\n");
    assert_eq!(unknown.len(), 1);
    assert_eq!(
        (unknown[0].line, unknown[0].key.as_str()),
        (3, "registry.kind")
    );
    assert_eq!(
        unknown[0].message,
        "unknown registry kind \"consul\"; expected one of: mesh, static, dns, mdns, etcd"
    );
    assert_eq!(
        errors("[registry]\nkind = \"static\"\n"),
        vec![at(2, "registry.file")]
    );
    assert_eq!(
        errors("[registry]\nkind = \"dns\"\nport = 0\n"),
        vec![at(2, "registry.domain"), at(3, "registry.port")]
    );
    // A key of another kind is a mistake: the file says mesh but configures a static file.
    assert_eq!(
        errors("[registry]\nfile = \"services.toml\"\nendpoints = [\"ftp://x\"]\n"),
        vec![
            at(2, "registry.file"),
            at(3, "registry.endpoints[0]"),
            at(3, "registry.endpoints")
        ]
    );
}

#[test]
fn wrong_value_types_are_reported() {
    let text = "node = 5\n[service]\nname = \"a\"\n[tunnel]\ngateway = \"yes\"\ntrust = \"k\"\n";
    assert_eq!(
        errors(text),
        vec![
            at(1, "node"),
            at(2, "service"),
            at(5, "tunnel.gateway"),
            at(6, "tunnel.trust"),
        ]
    );
    let errs = full_errors(text);
    assert!(message_of(&errs, "service").contains("write [[service]]"));
}

#[test]
fn workers_must_be_a_sensible_number_of_threads() {
    assert_eq!(parse("[node]\nworkers = 4\n").node.workers, 4);
    for (value, message) in [
        ("0", "0 is not a number of threads (1-1024)"),
        ("-2", "-2 is not a number of threads (1-1024)"),
        ("100000", "100000 is not a number of threads (1-1024)"),
        ("\"4\"", "expected a number of threads, found a string"),
    ] {
        let errs = full_errors(&format!("[node]\nworkers = {value}\n"));
        assert_eq!(
            message_of(&errs, "node.workers"),
            message,
            "workers = {value}"
        );
    }
}

#[test]
fn a_syntax_error_is_one_error_with_its_line_and_best_guess_key() {
    let errs = full_errors("[node]\nname = \"a\"\n\n[tunnel]\nlisten = 0.0.0.0:7700\n[admin]\n");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].key.as_str()), (5, "tunnel.listen"));
    assert!(
        errs[0].message.starts_with("invalid TOML: "),
        "{}",
        errs[0].message
    );
    assert!(errs[0].message.ends_with("(a string value must be quoted)"));

    let in_array =
        "[[service]]\nname = \"a\"\n[[service]]\nname = \"b\"\n[service.health]\nhttp = /h\n";
    assert_eq!(errors(in_array), vec![at(6, "service[1].health.http")]);
    assert_eq!(errors("[node\nname = \"a\"\n"), vec![at(1, "")]);
    assert_eq!(
        errors("[node]\nname = \"a\"\nname = \"b\"\n"),
        vec![at(3, "node.name")]
    );
    assert_eq!(errors("a = \"unterminated\n"), vec![at(1, "a")]);
}

#[test]
fn errors_print_as_file_line_key_message() {
    let errs = Config::parse(
        "[admin]\nlisten = \"x\"\nport = 1\n",
        Path::new("ferry.toml"),
    )
    .expect_err("bad file");
    assert_eq!(
        errs.to_string(),
        "ferry.toml:2: admin.listen: \"x\" is not IP:PORT (e.g. 127.0.0.1:7701 or [::1]:7701)\n\
         ferry.toml:3: admin.port: unknown key; expected one of: listen"
    );
}
