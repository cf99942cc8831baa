//! Ferry's configuration: the embedded defaults, the TOML config file, and the `ferry run` flags
//! that override it (`docs/reference.md`: "Binary and CLI", "Embedded defaults", "Config file").
//!
//! The file is read by walking toml's spanned document tree by hand instead of deriving
//! `Deserialize`: serde stops at the first error, and `ferry check` must report every error in one
//! pass, each with the line and dotted key it belongs to.
//!
//! This file holds the config's types. The embedded defaults are in `defaults.rs`, the words a
//! value may take in `keywords.rs`, the reading of a file in `file.rs`, the flags in
//! `overrides.rs`, and the checks of single values, shared by file and flags, in `values.rs`.

mod access;
mod defaults;
mod duration;
mod errors;
mod file;
mod intercept;
mod key;
mod keywords;
mod overrides;
mod size;
mod syntax;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use access::{AuthorizationConfig, AuthorizationRule, RateLimitConfig};
pub use defaults::{
    DEFAULT_ADMIN_PORT, DEFAULT_API_PORT, DEFAULT_OUTBOUND_PORT, DEFAULT_TUNNEL_PORT,
};
pub use duration::{format_duration, parse_duration, DurationError};
pub use errors::{ConfigError, ConfigErrors, COMMAND_LINE};
pub use intercept::InterceptConfig;
pub use key::{decode_public_key, encode_public_key, KeyError};
pub use keywords::{
    AuthorizationDefault, BrokerKind, LogFormat, OutboundKind, Protocol, RegistryKind,
    UnknownKeyword,
};
pub use overrides::Overrides;
pub use size::{format_size, parse_size};

/// A node's effective configuration: embedded defaults, overlaid by a config file, overlaid by
/// command-line flags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Who this node is.
    pub node: NodeConfig,
    /// The encrypted tunnel between nodes.
    pub tunnel: TunnelConfig,
    /// Where services are looked up.
    pub registry: RegistryConfig,
    /// Local workloads this node fronts (inbound side). `[[service]]` in the file.
    #[serde(rename = "service", skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceConfig>,
    /// Entry points for the local application. `[[outbound]]` in the file.
    #[serde(rename = "outbound", skip_serializing_if = "Vec::is_empty")]
    pub outbounds: Vec<OutboundConfig>,
    /// The admin API.
    pub admin: AdminConfig,
    /// The application API: publishing.
    pub api: ApiConfig,
    /// The broker messages go through.
    pub broker: BrokerConfig,
    /// What local services subscribe to. `[[subscription]]` in the file.
    #[serde(rename = "subscription", skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Interception: DNS for service names, redirected connections.
    pub intercept: InterceptConfig,
    /// Who may call the local services.
    pub authorization: AuthorizationConfig,
    /// Rate limits on calls to local services. `[[rate_limit]]` in the file.
    #[serde(rename = "rate_limit", skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Request deadlines for calls to services.
    pub deadlines: DeadlineConfig,
    /// Log output.
    pub log: LogConfig,
    /// The file this configuration was read from (absolute when it could be made so); `None` for
    /// the embedded defaults. Not part of the TOML form: it is where the TOML came from.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[node]`: the node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Shown to peers and in the admin API. Default: the hostname.
    pub name: String,
    /// The datacenter this node is in; the `DC` of `Host: service.DC`. Default: `dc1`.
    pub datacenter: String,
    /// The node's X25519 private key. The caller creates it on first run.
    #[serde(serialize_with = "serialize_path")]
    pub key_file: PathBuf,
    /// Threads that carry traffic. Default 1: a sidecar shares its host with the application it
    /// serves, and one thread spares every call the cross-thread wake-ups of a work-stealing
    /// scheduler (linkerd2-proxy runs single-threaded unless given more cores, too).
    pub workers: usize,
}

/// `[tunnel]`: the QUIC/Noise tunnel network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelConfig {
    /// UDP address the tunnel listens on.
    pub listen: SocketAddr,
    /// `host:port` peers should dial; `None` means the listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Whether this node carries traffic between its datacenter and others.
    pub gateway: bool,
    /// Nodes to dial at start.
    pub peers: Vec<PeerConfig>,
    /// Public keys (base64) allowed to connect, besides those in `peers`.
    pub trust: Vec<String>,
    /// A file of trusted public keys, one a line; the caller reads it and reloads it on change.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_optional_path"
    )]
    pub trust_file: Option<PathBuf>,
    /// Certificates of the CAs whose node certificates this node trusts; several at once, so
    /// that a CA can be rotated. Read and reloaded like the trust file.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_paths"
    )]
    pub ca: Vec<PathBuf>,
    /// This node's certificate, presented in every handshake.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_optional_path"
    )]
    pub certificate: Option<PathBuf>,
    /// How often each link updates its 1-RTT keys.
    #[serde(serialize_with = "serialize_duration")]
    pub rekey: Duration,
}

/// One entry of `tunnel.peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConfig {
    /// `host:port` to dial.
    pub address: String,
    /// The peer's public key (44 characters of base64), checked during the handshake. `None`
    /// when the file or flag left it out, which `ferry check` and `ferry run` then refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The peer's certificate, when the file named one instead of a key: `key` is the one it
    /// vouches for.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_optional_path"
    )]
    pub certificate: Option<PathBuf>,
}

/// `[registry]`: where services are looked up. Only the fields of the chosen kind are set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RegistryConfig {
    /// Which registry.
    pub kind: RegistryKind,
    /// `static`: the services file, reloaded on change.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_optional_path"
    )]
    pub file: Option<PathBuf>,
    /// `dns`: the domain names are looked up under, e.g. `svc.example.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `dns`: servers to ask; empty means the system's resolvers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<SocketAddr>,
    /// `dns`: the port for A/AAAA answers (SRV answers carry their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `etcd`: client URLs; empty means the registry's own default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// `etcd`: the key prefix; `None` means the registry's own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// One `[[service]]`: a local workload this node fronts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceConfig {
    /// The name clients route by (`Host: NAME`). Letters, digits, `_` and `-`: a dot would be
    /// read as the start of a datacenter.
    pub name: String,
    /// Where the workload listens.
    pub address: SocketAddr,
    /// What it speaks.
    pub protocol: Protocol,
    /// How its health is checked.
    pub health: HealthConfig,
}

/// A service's health check. Without `http` it is a TCP connect check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    /// Path of an HTTP GET check, starting with `/`; `None` checks that a TCP connect succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Time between checks.
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
}

/// One `[[outbound]]`: a listener for the local application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundConfig {
    /// How requests are routed.
    pub kind: OutboundKind,
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// `tcp` only: the service every connection goes to, `NAME` or `NAME.DATACENTER`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    /// TCP address of the admin API.
    pub listen: SocketAddr,
}

/// `[api]`: the application API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiConfig {
    /// TCP address of the application API.
    pub listen: SocketAddr,
}

/// The nats broker's subjects are `ferry.TOPIC` unless `[broker] prefix` says otherwise.
pub const DEFAULT_NATS_PREFIX: &str = "ferry";
/// The nats broker's JetStream stream, unless `[broker] stream` says otherwise.
pub const DEFAULT_NATS_STREAM: &str = "FERRY";

/// `[broker]`: where published messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerConfig {
    /// Which broker.
    pub kind: BrokerKind,
    /// `nats`: the servers to connect to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// `nats`: topics become subjects under this prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `nats`: the JetStream stream that keeps the messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The largest message accepted, in bytes.
    #[serde(serialize_with = "serialize_size")]
    pub max_message_bytes: u64,
    /// The most a node holds for delivery, in bytes.
    #[serde(serialize_with = "serialize_size")]
    pub queue_bytes: u64,
    /// How long a subscribing service has to answer a delivery.
    #[serde(serialize_with = "serialize_duration")]
    pub delivery_timeout: Duration,
}

/// One `[[subscription]]`: a local service that receives the messages of some topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionConfig {
    /// The topic pattern: tokens split by `.`, `*` for one token, `>` for the rest.
    pub topic: String,
    /// The local `[[service]]` that receives.
    pub service: String,
    /// Where each message is POSTed.
    pub path: String,
    /// Each message goes to one member of every group; default: the service's name.
    pub group: String,
    /// Tries before a message is dead-lettered or dropped.
    pub max_attempts: u8,
    /// The topic a message that cannot be delivered goes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// The most messages one delivery carries; above 1, each delivery is a CloudEvents batch.
    pub batch: u16,
}

/// `[deadlines]`: how long a call to a service may take until its response headers arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlineConfig {
    /// For services without their own entry.
    #[serde(serialize_with = "serialize_duration")]
    pub default: Duration,
    /// Per service name.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "serialize_duration_map"
    )]
    pub per_service: BTreeMap<String, Duration>,
}

impl DeadlineConfig {
    /// The deadline for calls to service `name`. Names match without regard to ASCII case, as
    /// the `Host` header they come from does.
    pub fn for_service(&self, name: &str) -> Duration {
        if let Some(deadline) = self.per_service.get(name) {
            return *deadline;
        }
        self.per_service
            .iter()
            .find(|(service, _)| service.eq_ignore_ascii_case(name))
            .map_or(self.default, |(_, deadline)| *deadline)
    }
}

/// `[log]`: log output.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
}

impl Config {
    /// Reads a config file. Sections it leaves out take the embedded defaults, except
    /// `[[service]]` and `[[outbound]]`: the file lists all of those. Relative paths in the file
    /// are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::from(ConfigError {
                file: path.to_path_buf(),
                line: 0,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            })
        })?;
        Self::parse(&text, path)
    }

    /// Like [`Config::load`], from text already read from `path` (for reloads and tests).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigErrors> {
        file::parse(text, path, Self::defaults())
    }

    /// Applies `ferry run` flags on top of this config. Either every flag applies or, on error,
    /// none does and `self` is unchanged.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), ConfigErrors> {
        *self = overrides::apply(self.clone(), overrides)?;
        Ok(())
    }

    /// The config as TOML in the file format, for `ferry check`. Parsing it again (as a file in
    /// any directory: paths in it are absolute when the config came from a file) gives the same
    /// config.
    pub fn to_toml(&self) -> String {
        // Every field serializes to a string, number, bool, array or table, so this cannot fail;
        // still, a broken render must not take the process down.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render the config: {e}\n"))
    }
}

/// Checks a service name as `[[service]] name` is checked (letters, digits, `_`, `-`), for
/// files of services read outside the config, such as the `static` registry's.
pub fn check_service_name(name: &str) -> Result<String, String> {
    values::service_name(name)
}

/// Checks a node name as `[node] name` is checked.
pub fn check_node_name(name: &str) -> Result<String, String> {
    values::node_name(name)
}

/// Checks a datacenter name as `[node] datacenter` is checked.
pub fn check_datacenter_name(name: &str) -> Result<String, String> {
    values::datacenter_name(name)
}

/// Finds TCP listen addresses used twice. `listeners` is in the order they were written (defaults
/// first); each clash is `(later, earlier)` as indices, so the error lands on the one to change.
/// Port 0 asks the OS for a fresh port, so it never clashes.
fn tcp_clashes(listeners: &[SocketAddr]) -> Vec<(usize, usize)> {
    let mut clashes = Vec::new();
    for (later, addr) in listeners.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some(earlier) = listeners[..later].iter().position(|a| a == addr) {
            clashes.push((later, earlier));
        }
    }
    clashes
}

fn serialize_path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    // Lossy: TOML is UTF-8, and a config printed with a replacement character beats none.
    serializer.serialize_str(&path.to_string_lossy())
}

fn serialize_optional_path<S: Serializer>(
    path: &Option<PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serialize_path(path, serializer),
        None => serializer.serialize_none(),
    }
}

fn serialize_paths<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(paths.iter().map(|path| path.to_string_lossy()))
}

fn serialize_duration<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*d))
}

fn serialize_size<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_size(*bytes))
}

fn serialize_duration_map<S: Serializer>(
    map: &BTreeMap<String, Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(k, d)| (k, format_duration(*d))))
}
