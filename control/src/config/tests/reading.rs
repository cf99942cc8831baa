//! Good files, and what they read as: the example, paths, deadlines, reading from disk.

use std::path::Path;
use std::time::Duration;

use super::{addr, parse, FILE, KEY_A, KEY_B, REFERENCE_EXAMPLE};
use crate::config::*;

#[test]
fn reference_example_parses() {
    let config = parse(REFERENCE_EXAMPLE);
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
            certificate: None,
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
fn documented_registry_keys_parse() {
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

/// The example config of `docs/reference.md` ("Config file") is one `ferry check` accepts.
#[test]
fn the_reference_example_parses() {
    let page = include_str!("../../../../docs/reference.md");
    let section = page
        .split("\n## Config file\n")
        .nth(1)
        .expect("the reference has a Config file section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the section opens with a TOML example");
    let config = parse(&example.replace("BASE64PUBKEY", KEY_A));
    assert_eq!(config.subscriptions.len(), 1);
    assert_eq!(config.api.listen, addr("127.0.0.1:7703"));
}

#[test]
fn a_peer_named_by_its_certificate_is_dialed_with_the_key_it_vouches_for() {
    use ferry_tunnel::certificate::{CaKey, Kind, Subject};
    let dir = std::env::temp_dir().join(format!("ferry-peer-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = CaKey::generate().expect("CA key");
    let key = ferry_tunnel::Identity::generate()
        .expect("node key")
        .public();
    let subject = Subject {
        kind: Kind::Node,
        key: key.0,
        name: "gw-a".into(),
        datacenter: "dc1".into(),
        services: vec![],
        groups: vec![],
    };
    let now = std::time::SystemTime::now();
    let certificate = ca.sign(subject, now, Duration::from_secs(3600));
    let certificate = certificate.expect("signed");
    std::fs::write(dir.join("gw-a.crt"), certificate.to_pem()).expect("write");
    std::fs::write(dir.join("junk.crt"), "not a certificate").expect("write");

    let peer = |spec: &str| format!("[tunnel]\npeers = [{{ address = \"gw-a:7700\", {spec} }}]\n");
    let config = Config::parse(&peer("certificate = \"gw-a.crt\""), &dir.join("f.toml"));
    let config = config.expect("valid");
    assert_eq!(config.tunnel.peers[0].key, Some(key.to_string()));
    assert_eq!(
        config.tunnel.peers[0].certificate,
        Some(dir.join("gw-a.crt"))
    );

    for (spec, says) in [
        ("certificate = \"junk.crt\"", "is not a certificate"),
        ("certificate = \"none.crt\"", "cannot read the certificate"),
        (
            &format!("certificate = \"gw-a.crt\", key = \"{KEY_A}\"") as &str,
            "not both",
        ),
    ] {
        let errors = Config::parse(&peer(spec), &dir.join("f.toml")).expect_err(spec);
        let error = &errors.errors[0];
        assert_eq!(
            (error.line, error.key.as_str()),
            (2, "tunnel.peers[0].certificate")
        );
        assert!(error.message.contains(says), "{spec}: {}", error.message);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
