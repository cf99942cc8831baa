//! `ferry run` flags on top of a file.

use std::path::Path;

use super::{addr, parse, KEY_A, KEY_B, REFERENCE_EXAMPLE};
use crate::config::*;

#[test]
fn overrides_replace_and_add_to_the_file() {
    let mut config = parse(REFERENCE_EXAMPLE);
    let overrides = Overrides {
        name: Some("n2".into()),
        datacenter: Some("us-east".into()),
        key: Some("k.key".into()),
        listen: Some(addr("0.0.0.0:7800")),
        gateway: true,
        peers: vec![format!("10.0.0.1:7700#{KEY_B}"), "[::1]:7700".into()],
        trust: vec![KEY_A.into(), KEY_B.into()],
        services: vec![
            "api=127.0.0.1:9000/grpc".into(),
            "db=[::1]:5432/tcp".into(),
            "web=127.0.0.1:80".into(),
        ],
        outbound: Some(addr("127.0.0.1:8001")),
        admin: Some(addr("127.0.0.1:8002")),
        api: Some(addr("127.0.0.1:8003")),
        registry: Some("mdns".into()),
        log_format: Some("json".into()),
    };
    config.apply(&overrides).expect("valid flags");
    assert_eq!(config.node.name, "n2");
    assert_eq!(config.node.datacenter, "us-east");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(config.node.key_file, cwd.join("k.key"));
    assert_eq!(config.tunnel.listen, addr("0.0.0.0:7800"));
    assert_eq!(config.api.listen, addr("127.0.0.1:8003"));
    assert!(config.tunnel.gateway);
    assert_eq!(config.tunnel.peers.len(), 3);
    assert_eq!(config.tunnel.peers[1].key.as_deref(), Some(KEY_B));
    assert_eq!(config.tunnel.peers[2].key, None);
    // Added to the file's trust list, once each.
    assert!(config.tunnel.trust.iter().any(|k| k == KEY_A));
    assert_eq!(
        config.tunnel.trust.iter().filter(|k| *k == KEY_B).count(),
        1
    );
    let services: Vec<_> = config
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.address, s.protocol))
        .collect();
    assert_eq!(
        services,
        vec![
            ("greeter", addr("127.0.0.1:8080"), Protocol::Http),
            ("api", addr("127.0.0.1:9000"), Protocol::Grpc),
            ("db", addr("[::1]:5432"), Protocol::Tcp),
            ("web", addr("127.0.0.1:80"), Protocol::Http),
        ]
    );
    // The HTTP outbound moved; the TCP one stayed.
    assert_eq!(config.outbounds.len(), 2);
    assert_eq!(config.outbounds[0].listen, addr("127.0.0.1:8001"));
    assert_eq!(config.outbounds[1].kind, OutboundKind::Tcp);
    assert_eq!(config.admin.listen, addr("127.0.0.1:8002"));
    assert_eq!(config.registry.kind, RegistryKind::Mdns);
    assert_eq!(config.log.format, LogFormat::Json);
    // Still a valid file.
    let rendered = config.to_toml();
    assert_eq!(parse(&rendered), config);
}

#[test]
fn outbound_flag_sets_the_http_outbound_when_there_is_none() {
    let mut config = parse("");
    let overrides = Overrides {
        outbound: Some(addr("127.0.0.1:7701")),
        ..Overrides::default()
    };
    config.apply(&overrides).expect("valid");
    assert_eq!(config.outbounds.len(), 1);
    assert_eq!(config.outbounds[0].kind, OutboundKind::Http);
}

#[test]
fn bad_flags_are_all_reported_and_change_nothing() {
    let original = parse(REFERENCE_EXAMPLE);
    let mut config = original.clone();
    let overrides = Overrides {
        datacenter: Some("eu.west".into()),
        peers: vec!["10.0.0.1#short".into()],
        trust: vec!["not-a-key".into()],
        services: vec![
            "greeter".into(),
            "web=localhost:80".into(),
            "web=127.0.0.1:80/udp".into(),
            "bad.name=127.0.0.1:80".into(),
            "Greeter=127.0.0.1:81".into(),
            "x=127.0.0.1:1".into(),
            "x=127.0.0.1:2".into(),
        ],
        admin: Some(addr("127.0.0.1:7701")),
        registry: Some("static".into()),
        log_format: Some("xml".into()),
        ..Overrides::default()
    };
    let errs = config.apply(&overrides).expect_err("bad flags");
    assert_eq!(config, original);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "--datacenter",
            "--peer",
            "--trust",
            "--service",
            "--service",
            "--service",
            "--service",
            "--service",
            "--service",
            "--registry",
            "--log-format",
            "--admin",
        ]
    );
    assert!(errs
        .iter()
        .all(|e| e.line == 0 && e.file == Path::new(COMMAND_LINE)));
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages[3],
        "\"greeter\": expected NAME=IP:PORT[/http|/grpc|/tcp], as in greeter=127.0.0.1:8080"
    );
    assert!(messages[4].contains("is not IP:PORT"), "{}", messages[4]);
    assert!(
        messages[5].contains("unknown protocol \"udp\""),
        "{}",
        messages[5]
    );
    assert!(
        messages[7].contains("already defined by service[0]"),
        "{}",
        messages[7]
    );
    assert!(messages[8].contains("given twice"), "{}", messages[8]);
    assert_eq!(
        messages[11],
        "127.0.0.1:7701 is already used by outbound[0].listen"
    );
    assert_eq!(
        errs.errors[3].to_string(),
        "<command line>:0: --service: \"greeter\": expected NAME=IP:PORT[/http|/grpc|/tcp], \
         as in greeter=127.0.0.1:8080"
    );
}

#[test]
fn registry_flag_drops_the_settings_of_the_old_kind() {
    let mut config = parse("[registry]\nkind = \"static\"\nfile = \"s.toml\"\n");
    let overrides = Overrides {
        registry: Some("mesh".into()),
        ..Overrides::default()
    };
    config.apply(&overrides).expect("valid");
    assert_eq!(config.registry, RegistryConfig::default());
    // The same kind keeps the file's settings.
    let mut config = parse("[registry]\nkind = \"static\"\nfile = \"s.toml\"\n");
    let overrides = Overrides {
        registry: Some("static".into()),
        ..Overrides::default()
    };
    config.apply(&overrides).expect("valid");
    assert!(config.registry.file.is_some());
}
