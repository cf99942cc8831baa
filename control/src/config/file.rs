//! Reading a config file. Walks toml's spanned document tree rather than deserializing, so that
//! one pass finds every error and each carries the line and dotted key it is about.
//!
//! This file knows the sections: their keys, what each must hold, and the checks across them
//! (two listeners on one address, two services of one name). Walking the document and recording
//! errors is in `document.rs`; turning one value into a typed one, in `convert.rs`.

mod access;
mod broker;
mod convert;
mod document;
mod intercept;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::values;
use super::{
    tcp_clashes, Config, ConfigError, ConfigErrors, HealthConfig, LogFormat, NodeConfig,
    OutboundConfig, OutboundKind, PeerConfig, Protocol, RegistryConfig, RegistryKind,
    ServiceConfig, TunnelConfig,
};
use convert::{boolean, port, quoted, text, workers};
use document::Table;

const DURATION_EXAMPLE: &str = "\"1s\"";
const ADDRESS_EXAMPLE: &str = "\"127.0.0.1:7701\"";

/// The sections of a file.
const ROOT_KEYS: [&str; 14] = [
    "node",
    "tunnel",
    "registry",
    "service",
    "outbound",
    "admin",
    "api",
    "broker",
    "subscription",
    "intercept",
    "authorization",
    "rate_limit",
    "deadlines",
    "log",
];

const TUNNEL_KEYS: [&str; 9] = [
    "listen",
    "advertise",
    "gateway",
    "peers",
    "trust",
    "trust_file",
    "ca",
    "certificate",
    "rekey",
];

/// Which registry kind uses each kind-specific `[registry]` key.
const REGISTRY_KEY_OWNERS: [(&str, RegistryKind); 6] = [
    ("file", RegistryKind::Static),
    ("domain", RegistryKind::Dns),
    ("nameservers", RegistryKind::Dns),
    ("port", RegistryKind::Dns),
    ("endpoints", RegistryKind::Etcd),
    ("prefix", RegistryKind::Etcd),
];

/// Reads `text`, the contents of `path`, on top of `defaults`.
pub(super) fn parse(text: &str, path: &Path, defaults: Config) -> Result<Config, ConfigErrors> {
    let mut reader = Reader::new(text, path);
    let config = match DeTable::parse(text) {
        Ok(document) => {
            let root = Table {
                key: String::new(),
                span: document.span(),
                entries: document.get_ref(),
            };
            reader.config(&root, defaults)
        }
        // The parser cannot recover well enough for later errors to be trusted: report one.
        Err(error) => {
            reader.syntax_error(&error);
            defaults
        }
    };
    if reader.errors.is_empty() {
        Ok(config)
    } else {
        Err(reader.errors.into())
    }
}

/// A TCP listen address, kept to find two listeners on one address.
struct Listener {
    key: String,
    addr: SocketAddr,
    /// 0 for an embedded default.
    line: usize,
}

/// A `[[service]]` name, kept to find two services of one name.
struct ServiceName {
    name: String,
    item: String,
    line: usize,
}

/// One reading of a file: its text and where it lives, the errors found so far, and what the
/// checks across sections collect on the way.
struct Reader<'a> {
    text: &'a str,
    file: &'a Path,
    /// The config file made absolute, so a later change of working directory moves nothing.
    absolute: PathBuf,
    /// Where relative paths start: the config file's directory.
    dir: PathBuf,
    /// Byte offset of the start of each line, to turn spans into line numbers.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    listeners: Vec<Listener>,
    service_names: Vec<ServiceName>,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            text,
            file,
            absolute,
            dir,
            line_starts,
            errors: Vec::new(),
            listeners: Vec::new(),
            service_names: Vec::new(),
        }
    }

    fn config(&mut self, root: &Table, defaults: Config) -> Config {
        self.known_keys(root, &ROOT_KEYS);
        let mut config = defaults;
        config.source = Some(self.absolute.clone());
        if let Some(table) = self.table(root, "node") {
            self.node(&table, &mut config.node);
        }
        if let Some(table) = self.table(root, "tunnel") {
            self.tunnel(&table, &mut config.tunnel);
        }
        if let Some(table) = self.table(root, "registry") {
            self.registry(&table, &mut config.registry);
        }
        // A file lists all its services and outbounds: none listed means none.
        let services = self.tables(root, "service");
        config.services = services.iter().filter_map(|t| self.service(t)).collect();
        let outbounds = self.tables(root, "outbound");
        config.outbounds = outbounds.iter().filter_map(|t| self.outbound(t)).collect();
        let admin_table = self.table(root, "admin");
        if let Some(table) = &admin_table {
            self.known_keys(table, &["listen"]);
            if let Some((listen, line)) = self.field_at(
                table,
                "listen",
                &quoted(values::socket_addr, ADDRESS_EXAMPLE),
            ) {
                config.admin.listen = listen;
                self.add_listener("admin.listen".into(), listen, line);
            }
        }
        if !admin_table.is_some_and(|table| table.has("listen")) {
            self.add_listener("admin.listen".into(), config.admin.listen, 0);
        }
        let api_set = match self.table(root, "api") {
            Some(table) => self.api(&table, &mut config.api),
            None => false,
        };
        if !api_set {
            self.add_listener("api.listen".into(), config.api.listen, 0);
        }
        if let Some(table) = self.table(root, "broker") {
            self.broker(&table, &mut config.broker);
        }
        let subscriptions: Vec<_> = self
            .tables(root, "subscription")
            .iter()
            .map(|t| self.subscription(t))
            .collect();
        let subscribers: Vec<_> = subscriptions.iter().filter_map(|s| s.service()).collect();
        let what = "a subscription delivers to a local service";
        self.check_local_services(&subscribers, &config.services, what);
        config.subscriptions = subscriptions
            .into_iter()
            .filter_map(|s| s.subscription)
            .collect();
        if let Some(table) = self.table(root, "intercept") {
            self.intercept(&table, &mut config.intercept);
        }
        let mut guarded = Vec::new();
        if let Some(table) = self.table(root, "authorization") {
            let has_ca = !config.tunnel.ca.is_empty();
            config.authorization = self.authorization(&table, has_ca, &mut guarded);
        }
        let what = "a rule is about a service this node fronts, or \"*\"";
        self.check_local_services(&guarded, &config.services, what);
        let mut limited = Vec::new();
        config.rate_limits = self
            .tables(root, "rate_limit")
            .iter()
            .filter_map(|t| self.rate_limit(t, &mut limited))
            .collect();
        let what = "a rate limit is on a service this node fronts";
        self.check_local_services(&limited, &config.services, what);
        self.check_rate_limits(&limited);
        if let Some(table) = self.table(root, "deadlines") {
            self.deadlines(&table, &mut config.deadlines);
        }
        if let Some(table) = self.table(root, "log") {
            self.known_keys(&table, &["format"]);
            let format = self.field(&table, "format", &text(values::keyword::<LogFormat>));
            config.log.format = format.unwrap_or_default();
        }
        self.check_listeners();
        self.check_service_names();
        config
    }

    fn node(&mut self, table: &Table, node: &mut NodeConfig) {
        self.known_keys(table, &["name", "datacenter", "key_file", "workers"]);
        if let Some(name) = self.field(table, "name", &text(values::node_name)) {
            node.name = name;
        }
        if let Some(dc) = self.field(table, "datacenter", &text(values::datacenter_name)) {
            node.datacenter = dc;
        }
        if let Some(path) = self.field(table, "key_file", &text(values::path)) {
            node.key_file = self.dir.join(path);
        }
        if let Some(workers) = self.field(table, "workers", &workers) {
            node.workers = workers;
        }
    }

    fn tunnel(&mut self, table: &Table, tunnel: &mut TunnelConfig) {
        self.known_keys(table, &TUNNEL_KEYS);
        if let Some(listen) = self.field(
            table,
            "listen",
            &quoted(values::socket_addr, ADDRESS_EXAMPLE),
        ) {
            tunnel.listen = listen;
        }
        tunnel.advertise = self.field(table, "advertise", &text(values::host_port));
        if let Some(gateway) = self.field(table, "gateway", &boolean) {
            tunnel.gateway = gateway;
        }
        let peers = self.tables(table, "peers");
        tunnel.peers = peers.iter().filter_map(|peer| self.peer(peer)).collect();
        tunnel.trust = self
            .list(table, "trust", &text(values::public_key))
            .unwrap_or_default();
        let trust_file = self.field(table, "trust_file", &text(values::path));
        tunnel.trust_file = trust_file.map(|path| self.dir.join(path));
        tunnel.ca = self
            .list(table, "ca", &text(values::path))
            .unwrap_or_default()
            .into_iter()
            .map(|path| self.dir.join(path))
            .collect();
        let certificate = self.field(table, "certificate", &text(values::path));
        tunnel.certificate = certificate.map(|path| self.dir.join(path));
        let duration = quoted(values::positive_duration, DURATION_EXAMPLE);
        if let Some(rekey) = self.field(table, "rekey", &duration) {
            tunnel.rekey = rekey;
        }
    }

    fn peer(&mut self, table: &Table) -> Option<PeerConfig> {
        self.known_keys(table, &["address", "key", "certificate"]);
        let address = self.required(table, "address", &text(values::host_port));
        let key = self.field(table, "key", &text(values::public_key));
        let dir = self.dir.clone();
        let certificate = self.field(table, "certificate", &|value| {
            let path = dir.join(text(values::path)(value)?);
            values::certified_key(&path).map(|key| (path, key))
        });
        let (certificate, key) = match (certificate, key) {
            (Some(_), Some(key)) => {
                let message = "give the peer's key or its certificate, not both";
                self.error(table.span.clone(), table.child_key("certificate"), message);
                (None, Some(key))
            }
            (Some((path, key)), None) => (Some(path), Some(key)),
            (None, key) => (None, key),
        };
        Some(PeerConfig {
            address: address?,
            key,
            certificate,
        })
    }

    fn registry(&mut self, table: &Table, registry: &mut RegistryConfig) {
        let mut known = vec!["kind"];
        known.extend(REGISTRY_KEY_OWNERS.iter().map(|(key, _)| *key));
        self.known_keys(table, &known);
        let kind = self.field(table, "kind", &text(values::keyword::<RegistryKind>));
        registry.kind = kind.unwrap_or_default();
        let file = self.field(table, "file", &text(values::path));
        registry.file = file.map(|path| self.dir.join(path));
        registry.domain = self.field(table, "domain", &text(values::dns_domain));
        registry.nameservers = self
            .list(table, "nameservers", &text(values::nameserver))
            .unwrap_or_default();
        registry.port = self.field(table, "port", &port);
        registry.endpoints = self
            .list(table, "endpoints", &text(values::etcd_endpoint))
            .unwrap_or_default();
        registry.prefix = self.field(table, "prefix", &text(values::non_empty));

        // Against a kind that did not parse, these checks would only add noise.
        if table.has("kind") && kind.is_none() {
            return;
        }
        let kind = registry.kind;
        for (key, owner) in REGISTRY_KEY_OWNERS {
            if let Some(span) = table.key_span(key).filter(|_| owner != kind) {
                let message =
                    format!("only the {owner} registry uses this key; kind is \"{kind}\"");
                self.error(span, table.child_key(key), message);
            }
        }
        // A missing key is reported where the kind that needs it was chosen.
        let kind_span = table
            .entries
            .get("kind")
            .map_or(table.span.clone(), |value| value.span());
        let needed = match kind {
            RegistryKind::Static => Some(("file", "the static registry needs its services file")),
            RegistryKind::Dns => Some(("domain", "the dns registry needs the domain to look in")),
            _ => None,
        };
        if let Some((key, message)) = needed.filter(|(key, _)| !table.has(key)) {
            self.error(kind_span, table.child_key(key), message);
        }
    }

    fn service(&mut self, table: &Table) -> Option<ServiceConfig> {
        self.known_keys(table, &["name", "address", "protocol", "health"]);
        let name = self.required_at(table, "name", &text(values::service_name));
        let address = self.required(
            table,
            "address",
            &quoted(values::service_address, ADDRESS_EXAMPLE),
        );
        let protocol = self.field(table, "protocol", &text(values::keyword::<Protocol>));
        let health = match self.table(table, "health") {
            Some(health) => self.health(&health),
            None => HealthConfig::default(),
        };
        let (name, line) = name?;
        self.service_names.push(ServiceName {
            name: name.clone(),
            item: table.key.clone(),
            line,
        });
        Some(ServiceConfig {
            name,
            address: address?,
            protocol: protocol.unwrap_or_default(),
            health,
        })
    }

    fn health(&mut self, table: &Table) -> HealthConfig {
        self.known_keys(table, &["http", "interval", "timeout"]);
        let mut health = HealthConfig {
            http: self.field(table, "http", &text(values::health_path)),
            ..HealthConfig::default()
        };
        if let Some(interval) = self.field(
            table,
            "interval",
            &quoted(values::positive_duration, DURATION_EXAMPLE),
        ) {
            health.interval = interval;
        }
        if let Some(timeout) = self.field(
            table,
            "timeout",
            &quoted(values::positive_duration, DURATION_EXAMPLE),
        ) {
            health.timeout = timeout;
        }
        health
    }

    fn outbound(&mut self, table: &Table) -> Option<OutboundConfig> {
        self.known_keys(table, &["kind", "listen", "service"]);
        let kind = self.required(table, "kind", &text(values::keyword::<OutboundKind>));
        let listen = self.required_at(
            table,
            "listen",
            &quoted(values::socket_addr, ADDRESS_EXAMPLE),
        );
        let service = self.field(table, "service", &text(values::service_target));
        match kind {
            Some(OutboundKind::Tcp) if !table.has("service") => self.error(
                table.span.clone(),
                table.child_key("service"),
                "missing; a tcp outbound carries every connection to this service",
            ),
            Some(OutboundKind::Http) => {
                if let Some(span) = table.key_span("service") {
                    let message = "only a tcp outbound names a service; http routes by Host";
                    self.error(span, table.child_key("service"), message);
                }
            }
            _ => {}
        }
        let (listen, line) = listen?;
        self.add_listener(table.child_key("listen"), listen, line);
        Some(OutboundConfig {
            kind: kind?,
            listen,
            service,
        })
    }

    fn deadlines(&mut self, table: &Table, deadlines: &mut super::DeadlineConfig) {
        self.known_keys(table, &["default", "per_service"]);
        if let Some(default) = self.field(
            table,
            "default",
            &quoted(values::positive_duration, DURATION_EXAMPLE),
        ) {
            deadlines.default = default;
        }
        let Some(per_service) = self.table(table, "per_service") else {
            return;
        };
        for (name, value) in per_service.entries.iter() {
            let key = per_service.child_key(name.get_ref());
            if let Err(message) = values::service_name(name.get_ref()) {
                self.error(name.span(), key.clone(), message);
            }
            match quoted(values::positive_duration, DURATION_EXAMPLE)(value.get_ref()) {
                Ok(deadline) => {
                    deadlines
                        .per_service
                        .insert(name.get_ref().to_string(), deadline);
                }
                Err(message) => self.error(value.span(), key, message),
            }
        }
    }

    fn add_listener(&mut self, key: String, addr: SocketAddr, line: usize) {
        self.listeners.push(Listener { key, addr, line });
    }

    /// Two TCP listeners on one address: the later in the file is the error. (The tunnel is
    /// UDP and cannot clash with them.)
    fn check_listeners(&mut self) {
        let mut listeners = std::mem::take(&mut self.listeners);
        // Stable, so defaults (line 0) come first and count as earliest.
        listeners.sort_by_key(|listener| listener.line);
        let addrs: Vec<SocketAddr> = listeners.iter().map(|listener| listener.addr).collect();
        for (later, earlier) in tcp_clashes(&addrs) {
            let (later, earlier) = (&listeners[later], &listeners[earlier]);
            let place = match earlier.line {
                0 => "its default".to_string(),
                line => format!("line {line}"),
            };
            let message = format!(
                "{} is already used by {} ({place})",
                later.addr, earlier.key
            );
            self.push(later.line, later.key.clone(), message);
        }
    }

    /// Two services of one name (ignoring ASCII case, as `Host` does): the later is the error.
    fn check_service_names(&mut self) {
        let names = std::mem::take(&mut self.service_names);
        for (i, service) in names.iter().enumerate() {
            let earlier = names[..i]
                .iter()
                .find(|other| other.name.eq_ignore_ascii_case(&service.name));
            if let Some(earlier) = earlier {
                let message = format!(
                    "service \"{}\" is already defined by {} (line {})",
                    service.name, earlier.item, earlier.line
                );
                self.push(service.line, format!("{}.name", service.item), message);
            }
        }
    }
}
