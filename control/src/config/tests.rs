use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod overrides;

const FILE: &str = "/etc/ferry/ferry.toml";
// WireGuard's documentation keys: real, canonical base64 of 32 bytes.
const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const KEY_B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn parse(text: &str) -> Config {
    match Config::parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

/// The errors of a bad file as `(line, key)`, in the order reported.
fn errors(text: &str) -> Vec<(usize, String)> {
    full_errors(text)
        .into_iter()
        .map(|e| (e.line, e.key))
        .collect()
}

fn full_errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text, Path::new(FILE)) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => {
            assert!(errors.iter().all(|e| e.file == Path::new(FILE)));
            errors.errors
        }
    }
}

fn at(line: usize, key: &str) -> (usize, String) {
    (line, key.to_string())
}

fn message_of(errors: &[ConfigError], key: &str) -> String {
    match errors.iter().find(|e| e.key == key) {
        Some(error) => error.message.clone(),
        None => panic!("no error for {key} in {errors:#?}"),
    }
}

/// The SPEC's example file, with real keys and its commented-out lines kept commented.
const SPEC_EXAMPLE: &str = r#"[node]
name = "billing-1"            # default: hostname
datacenter = "eu-west"        # default: "dc1"
key_file = "node.key"         # relative paths are relative to this file

[tunnel]
listen = "0.0.0.0:7700"       # QUIC over UDP
advertise = "198.51.100.7:7700"   # what peers dial; default: the listen address
gateway = false               # true: carries traffic between this datacenter and others
peers = [ { address = "gw-a.us-east.example:7700", key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=" } ]
trust = ["HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="]      # keys allowed to connect, besides those in peers
# trust_file = "trusted.keys" # one key a line, reloaded on change

[registry]
kind = "mesh"                 # mesh (default) | static | dns | mdns | etcd
# static: file = "services.toml" (reloaded on change; format below)
# dns:    domain = "svc.example.", nameservers = ["127.0.0.1:53"], port = 80
# etcd:   endpoints = ["http://127.0.0.1:2379"], prefix = "/ferry/"

[[service]]                   # local workloads this node fronts (inbound side)
name = "greeter"
address = "127.0.0.1:8080"
protocol = "http"             # http (HTTP/1.1 and h2c) | grpc | tcp
health = { http = "/healthz", interval = "1s" }   # optional; default: TCP connect check

[[outbound]]                  # entry points for the local application
kind = "http"                 # routed by Host / :authority; also an HTTP proxy and CONNECT
listen = "127.0.0.1:7701"

[[outbound]]
kind = "tcp"                  # opaque TCP to one service
listen = "127.0.0.1:6380"
service = "redis"

[admin]
listen = "127.0.0.1:7702"
"#;

#[test]
fn defaults_are_the_spec_embedded_defaults() {
    let env = Environment {
        hostname: Some("node-7".into()),
        state_dir: Some("/var/state".into()),
        home: Some("/home/me".into()),
    };
    let config = Config::defaults_in(&env);
    assert_eq!(config.node.name, "node-7");
    assert_eq!(config.node.datacenter, "dc1");
    assert_eq!(config.node.key_file, Path::new("/var/state/node.key"));
    assert_eq!(config.node.workers, 1);
    assert_eq!(config.tunnel.listen, addr("0.0.0.0:7700"));
    assert_eq!(config.tunnel.advertise, None);
    assert!(!config.tunnel.gateway);
    assert!(config.tunnel.peers.is_empty() && config.tunnel.trust.is_empty());
    assert_eq!(config.registry, RegistryConfig::default());
    assert_eq!(config.registry.kind, RegistryKind::Mesh);
    assert!(config.services.is_empty());
    assert_eq!(
        config.outbounds,
        vec![OutboundConfig {
            kind: OutboundKind::Http,
            listen: addr("127.0.0.1:7701"),
            service: None,
        }]
    );
    assert_eq!(config.admin.listen, addr("127.0.0.1:7702"));
    assert_eq!(config.deadlines.default, Duration::from_secs(15));
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.source, None);
}

#[test]
fn default_key_file_falls_back_to_home_then_a_system_path() {
    let home = Environment {
        home: Some("/home/me".into()),
        ..Environment::default()
    };
    assert_eq!(
        Config::defaults_in(&home).node.key_file,
        Path::new("/home/me/.local/share/ferry/node.key")
    );
    let bare = Config::defaults_in(&Environment::default());
    assert_eq!(bare.node.key_file, Path::new("/var/lib/ferry/node.key"));
    assert_eq!(bare.node.name, "ferry");
}

#[test]
fn spec_example_parses() {
    let config = parse(SPEC_EXAMPLE);
    assert_eq!(config.source.as_deref(), Some(Path::new(FILE)));
    assert_eq!(config.node.name, "billing-1");
    assert_eq!(config.node.datacenter, "eu-west");
    assert_eq!(config.node.key_file, Path::new("/etc/ferry/node.key"));
    assert_eq!(config.tunnel.listen, addr("0.0.0.0:7700"));
    assert_eq!(
        config.tunnel.advertise.as_deref(),
        Some("198.51.100.7:7700")
    );
    assert!(!config.tunnel.gateway);
    assert_eq!(
        config.tunnel.peers,
        vec![PeerConfig {
            address: "gw-a.us-east.example:7700".into(),
            key: Some(KEY_A.into()),
        }]
    );
    assert_eq!(config.tunnel.trust, vec![KEY_B.to_string()]);
    assert_eq!(config.tunnel.trust_file, None);
    assert_eq!(config.registry.kind, RegistryKind::Mesh);
    assert_eq!(
        config.services,
        vec![ServiceConfig {
            name: "greeter".into(),
            address: addr("127.0.0.1:8080"),
            protocol: Protocol::Http,
            health: HealthConfig {
                http: Some("/healthz".into()),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
            },
        }]
    );
    assert_eq!(config.outbounds.len(), 2);
    assert_eq!(config.outbounds[0].kind, OutboundKind::Http);
    assert_eq!(config.outbounds[1].kind, OutboundKind::Tcp);
    assert_eq!(config.outbounds[1].listen, addr("127.0.0.1:6380"));
    assert_eq!(config.outbounds[1].service.as_deref(), Some("redis"));
    assert_eq!(config.admin.listen, addr("127.0.0.1:7702"));
}

#[test]
fn spec_registry_examples_parse() {
    let dns = parse(
        "[registry]\nkind = \"dns\"\ndomain = \"svc.example.\"\n\
         nameservers = [\"127.0.0.1:53\", \"10.0.0.2\"]\nport = 80\n",
    );
    assert_eq!(dns.registry.domain.as_deref(), Some("svc.example."));
    assert_eq!(
        dns.registry.nameservers,
        vec![addr("127.0.0.1:53"), addr("10.0.0.2:53")]
    );
    assert_eq!(dns.registry.port, Some(80));
    let etcd = parse(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/ferry/\"\n",
    );
    assert_eq!(etcd.registry.endpoints, vec!["http://127.0.0.1:2379"]);
    assert_eq!(etcd.registry.prefix.as_deref(), Some("/ferry/"));
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let config = parse(
        "[node]\nkey_file = \"keys/node.key\"\n\
         [tunnel]\ntrust_file = \"/srv/trusted.keys\"\n\
         [registry]\nkind = \"static\"\nfile = \"../services.toml\"\n",
    );
    assert_eq!(config.node.key_file, Path::new("/etc/ferry/keys/node.key"));
    assert_eq!(
        config.tunnel.trust_file.as_deref(),
        Some(Path::new("/srv/trusted.keys"))
    );
    assert_eq!(
        config.registry.file.as_deref(),
        Some(Path::new("/etc/ferry/../services.toml"))
    );
}

#[test]
fn a_relative_config_path_is_made_absolute() {
    let config = Config::parse(
        "[node]\nkey_file = \"node.key\"\n",
        Path::new("conf/f.toml"),
    )
    .expect("valid");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(config.node.key_file, cwd.join("conf/node.key"));
    assert_eq!(config.source, Some(cwd.join("conf/f.toml")));
}

#[test]
fn sections_left_out_take_defaults_but_services_and_outbounds_do_not() {
    let defaults = Config::defaults();
    let config = parse("[node]\ndatacenter = \"eu-west\"\n");
    assert_eq!(config.node.name, defaults.node.name);
    assert_eq!(config.node.key_file, defaults.node.key_file);
    assert_eq!(config.tunnel, defaults.tunnel);
    assert_eq!(config.admin, defaults.admin);
    assert_eq!(config.deadlines, defaults.deadlines);
    assert!(config.outbounds.is_empty());
    assert!(config.services.is_empty());
    assert!(parse("").outbounds.is_empty());
}

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

#[test]
fn load_reads_the_file_and_reports_an_unreadable_one() {
    let dir = std::env::temp_dir().join(format!("ferry-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ferry.toml");
    std::fs::write(&path, "[node]\nkey_file = \"node.key\"\n").expect("write");
    let config = Config::load(&path).expect("valid file");
    assert_eq!(config.node.key_file, dir.join("node.key"));
    assert_eq!(config.source.as_deref(), Some(path.as_path()));

    let missing = dir.join("missing.toml");
    let errs = Config::load(&missing).expect_err("no such file");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.errors[0].file, missing);
    assert!(errs.errors[0]
        .message
        .starts_with("cannot read the config file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn to_toml_round_trips() {
    let text = format!(
        "{SPEC_EXAMPLE}\n[deadlines]\ndefault = \"10s\"\nper_service = {{ greeter = \"1.5s\" }}\n\
         [log]\nformat = \"json\"\n"
    );
    let text = text.replace(
        "# trust_file = \"trusted.keys\"",
        "trust_file = \"trusted.keys\"",
    );
    let config = parse(&text);
    assert_eq!(config.log.format, LogFormat::Json);
    let rendered = config.to_toml();
    assert_eq!(parse(&rendered), config, "rendered:\n{rendered}");
    // In another directory too: the paths in it are absolute.
    let elsewhere = Config::parse(&rendered, Path::new("/tmp/other.toml")).expect("valid");
    assert_eq!(elsewhere.node, config.node);
    assert_eq!(elsewhere.tunnel, config.tunnel);

    let mut defaults = Config::defaults();
    let rendered = defaults.to_toml();
    defaults.source = Some(PathBuf::from(FILE));
    assert_eq!(parse(&rendered), defaults, "rendered:\n{rendered}");
}

#[test]
fn to_toml_uses_the_file_key_names() {
    let rendered = parse(SPEC_EXAMPLE).to_toml();
    for needle in [
        "[[service]]",
        "[[outbound]]",
        "[service.health]",
        "http = \"/healthz\"",
        "interval = \"1s\"",
        "kind = \"tcp\"",
        "key_file = \"/etc/ferry/node.key\"",
        "default = \"15s\"",
        "format = \"text\"",
    ] {
        assert!(
            rendered.contains(needle),
            "{needle} missing from:\n{rendered}"
        );
    }
    let json = serde_json::to_value(parse(SPEC_EXAMPLE)).expect("json");
    assert_eq!(json["service"][0]["health"]["interval"], "1s");
    assert_eq!(json["registry"]["kind"], "mesh");
}

#[test]
fn deadlines_per_service_override_the_default() {
    let config = parse("[deadlines]\ndefault = \"3s\"\nper_service = { greeter = \"250ms\" }\n");
    assert_eq!(
        config.deadlines.for_service("greeter"),
        Duration::from_millis(250)
    );
    assert_eq!(
        config.deadlines.for_service("Greeter"),
        Duration::from_millis(250)
    );
    assert_eq!(
        config.deadlines.for_service("redis"),
        Duration::from_secs(3)
    );
    assert_eq!(
        Config::defaults().deadlines.for_service("any"),
        Duration::from_secs(15)
    );
}
