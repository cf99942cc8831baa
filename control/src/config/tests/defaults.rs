//! The embedded defaults, and what a file's missing sections take.

use std::path::Path;
use std::time::Duration;

use super::{addr, parse};
use crate::config::defaults::Environment;
use crate::config::*;

#[test]
fn defaults_are_the_documented_embedded_defaults() {
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
