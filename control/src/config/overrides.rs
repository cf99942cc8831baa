//! The `ferry run` flags that override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::values;
use super::{
    tcp_clashes, Config, ConfigError, ConfigErrors, HealthConfig, LogFormat, OutboundConfig,
    OutboundKind, PeerConfig, Protocol, RegistryConfig, RegistryKind, ServiceConfig,
};

/// `ferry run` flags, as the command line gave them. `None`, `false` or empty leaves the file's
/// value alone; `peers`, `trust` and `services` add to the file's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--name`
    pub name: Option<String>,
    /// `--datacenter`
    pub datacenter: Option<String>,
    /// `--key FILE`, relative to the working directory (made absolute when applied).
    pub key: Option<PathBuf>,
    /// `--listen ADDR`: the tunnel's UDP address.
    pub listen: Option<SocketAddr>,
    /// `--gateway`
    pub gateway: bool,
    /// `--peer ADDR#PUBKEY`, repeatable. A peer without its key is taken here, and refused when
    /// the node starts.
    pub peers: Vec<String>,
    /// `--trust PUBKEY`, repeatable: a key allowed to open links to this node, so that two
    /// nodes started with flags alone can talk.
    pub trust: Vec<String>,
    /// `--service NAME=HOST:PORT[/http|/grpc|/tcp]`, repeatable.
    pub services: Vec<String>,
    /// `--outbound ADDR`: the node's one HTTP outbound listener; replaces those of the file.
    pub outbound: Option<SocketAddr>,
    /// `--admin ADDR`
    pub admin: Option<SocketAddr>,
    /// `--api ADDR`: the application API.
    pub api: Option<SocketAddr>,
    /// `--registry KIND`
    pub registry: Option<String>,
    /// `--log-format text|json`
    pub log_format: Option<String>,
}

/// Applies `overrides` to `config`; every bad flag is reported, each under its flag's name.
pub(super) fn apply(mut config: Config, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();

    if let Some(name) = &overrides.name {
        if let Some(name) = check(&mut errors, "--name", name, values::node_name(name)) {
            config.node.name = name;
        }
    }
    if let Some(dc) = &overrides.datacenter {
        if let Some(dc) = check(&mut errors, "--datacenter", dc, values::datacenter_name(dc)) {
            config.node.datacenter = dc;
        }
    }
    if let Some(key) = &overrides.key {
        // Absolute, like the file's paths, so the effective config reads the same anywhere.
        config.node.key_file = std::path::absolute(key).unwrap_or_else(|_| key.clone());
    }
    if let Some(listen) = overrides.listen {
        config.tunnel.listen = listen;
    }
    config.tunnel.gateway |= overrides.gateway;
    for spec in &overrides.peers {
        if let Some(peer) = check(&mut errors, "--peer", spec, peer_spec(spec)) {
            config.tunnel.peers.push(peer);
        }
    }
    for key in &overrides.trust {
        if let Some(key) = check(&mut errors, "--trust", key, values::public_key(key)) {
            if !config.tunnel.trust.contains(&key) {
                config.tunnel.trust.push(key);
            }
        }
    }
    let from_file = config.services.len();
    for spec in &overrides.services {
        let Some(service) = check(&mut errors, "--service", spec, service_spec(spec)) else {
            continue;
        };
        let existing = config
            .services
            .iter()
            .position(|other| other.name.eq_ignore_ascii_case(&service.name));
        match existing {
            Some(i) if i < from_file => {
                let message = format!(
                    "service \"{}\" is already defined by service[{i}]",
                    service.name
                );
                errors.push(ConfigError::flag("--service", message));
            }
            Some(_) => {
                let message = format!("service \"{}\" is given twice", service.name);
                errors.push(ConfigError::flag("--service", message));
            }
            None => config.services.push(service),
        }
    }
    let mut outbound_from_flag = None;
    if let Some(listen) = overrides.outbound {
        // Put it where the file's first HTTP outbound was, so the order stays the file's.
        let at = config
            .outbounds
            .iter()
            .position(|o| o.kind == OutboundKind::Http)
            .unwrap_or(config.outbounds.len());
        config.outbounds.retain(|o| o.kind != OutboundKind::Http);
        let outbound = OutboundConfig {
            kind: OutboundKind::Http,
            listen,
            service: None,
        };
        config.outbounds.insert(at, outbound);
        outbound_from_flag = Some(at);
    }
    if let Some(admin) = overrides.admin {
        config.admin.listen = admin;
    }
    if let Some(api) = overrides.api {
        config.api.listen = api;
    }
    if let Some(kind) = &overrides.registry {
        if let Some(kind) = check(
            &mut errors,
            "--registry",
            kind,
            values::keyword::<RegistryKind>(kind),
        ) {
            set_registry_kind(&mut config.registry, kind, &mut errors);
        }
    }
    if let Some(format) = &overrides.log_format {
        let format = check(
            &mut errors,
            "--log-format",
            format,
            values::keyword::<LogFormat>(format),
        );
        if let Some(format) = format {
            config.log.format = format;
        }
    }
    check_listeners(&config, overrides, outbound_from_flag, &mut errors);

    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors.into())
    }
}

/// Switches the registry kind, dropping the settings only the old kind used: the effective
/// config then shows what is in force, and still reads back as a valid file.
fn set_registry_kind(
    registry: &mut RegistryConfig,
    kind: RegistryKind,
    errors: &mut Vec<ConfigError>,
) {
    if registry.kind == kind {
        return;
    }
    *registry = RegistryConfig {
        kind,
        ..RegistryConfig::default()
    };
    let needs = match kind {
        RegistryKind::Static => Some("the static registry needs registry.file from a config file"),
        RegistryKind::Dns => Some("the dns registry needs registry.domain from a config file"),
        _ => None,
    };
    if let Some(message) = needs {
        errors.push(ConfigError::flag("--registry", message));
    }
}

/// The value of a flag, or `None` with the error recorded, quoting the flag's value since a
/// repeated flag has many.
fn check<T>(
    errors: &mut Vec<ConfigError>,
    flag: &str,
    value: &str,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|message| {
            let quoted = format!("\"{value}\"");
            let message = if message.starts_with(&quoted) {
                message
            } else {
                format!("{quoted}: {message}")
            };
            errors.push(ConfigError::flag(flag, message));
        })
        .ok()
}

/// Two TCP listeners on one address after the flags applied. The file was checked when read, so
/// any clash involves a flag; flags count as later than the file and take the error.
fn check_listeners(
    config: &Config,
    overrides: &Overrides,
    outbound_from_flag: Option<usize>,
    errors: &mut Vec<ConfigError>,
) {
    let mut listeners: Vec<(String, SocketAddr, bool)> = config
        .outbounds
        .iter()
        .enumerate()
        .map(|(i, outbound)| match outbound_from_flag {
            Some(flag) if flag == i => ("--outbound".to_string(), outbound.listen, true),
            _ => (format!("outbound[{i}].listen"), outbound.listen, false),
        })
        .collect();
    listeners.push(match overrides.admin {
        Some(admin) => ("--admin".to_string(), admin, true),
        None => ("admin.listen".to_string(), config.admin.listen, false),
    });
    listeners.push(match overrides.api {
        Some(api) => ("--api".to_string(), api, true),
        None => ("api.listen".to_string(), config.api.listen, false),
    });
    listeners.sort_by_key(|(_, _, from_flag)| *from_flag);
    let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, addr, _)| *addr).collect();
    for (later, earlier) in tcp_clashes(&addrs) {
        let (flag, addr, _) = &listeners[later];
        let message = format!("{addr} is already used by {}", listeners[earlier].0);
        errors.push(ConfigError::flag(flag, message));
    }
}

/// `ADDR[#PUBKEY]`
fn peer_spec(spec: &str) -> Result<PeerConfig, String> {
    let (address, key) = match spec.split_once('#') {
        Some((address, key)) => (address, Some(key)),
        None => (spec, None),
    };
    Ok(PeerConfig {
        address: values::host_port(address)?,
        key: key.map(values::public_key).transpose()?,
        certificate: None,
    })
}

/// `NAME=HOST:PORT[/http|/grpc|/tcp]`, HOST an IP address.
fn service_spec(spec: &str) -> Result<ServiceConfig, String> {
    let Some((name, rest)) = spec.split_once('=') else {
        return Err("expected NAME=IP:PORT[/http|/grpc|/tcp], as in greeter=127.0.0.1:8080".into());
    };
    let (address, protocol) = match rest.rsplit_once('/') {
        Some((address, protocol)) => (address, values::keyword::<Protocol>(protocol)?),
        None => (rest, Protocol::default()),
    };
    Ok(ServiceConfig {
        name: values::service_name(name)?,
        address: values::service_address(address)?,
        protocol,
        health: HealthConfig::default(),
    })
}
