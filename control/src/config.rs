//! Ferry's configuration: the embedded defaults, the TOML config file, and the `ferry run` flags
//! that override it (SPEC: "Binary and CLI", "Embedded defaults", "Config file").
//!
//! The file is read by walking toml's spanned document tree by hand instead of deriving
//! `Deserialize`: serde stops at the first error, and `ferry check` must report every error in one
//! pass, each with the line and dotted key it belongs to.
//!
//! Two sections extend the SPEC:
//!
//! ```toml
//! [deadlines]
//! default = "15s"                       # time until response headers, for calls to any service
//! per_service = { greeter = "2s" }      # overrides for calls to one service
//!
//! [log]
//! format = "text"                       # text | json
//! ```

mod duration;
mod errors;
mod file;
mod key;
mod overrides;
mod syntax;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use duration::{format_duration, parse_duration, DurationError};
pub use errors::{ConfigError, ConfigErrors, COMMAND_LINE};
pub use key::{decode_public_key, encode_public_key, KeyError};
pub use overrides::Overrides;

/// The default tunnel port (QUIC over UDP).
pub const DEFAULT_TUNNEL_PORT: u16 = 7700;
/// The port of the embedded default HTTP outbound listener.
pub const DEFAULT_OUTBOUND_PORT: u16 = 7701;
/// The port of the embedded default admin listener.
pub const DEFAULT_ADMIN_PORT: u16 = 7702;

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
}

/// One entry of `tunnel.peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConfig {
    /// `host:port` to dial.
    pub address: String,
    /// The peer's public key (44 characters of base64), checked during the handshake; `None`
    /// accepts whichever trusted key answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
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

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            http: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }
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

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(15),
            per_service: BTreeMap::new(),
        }
    }
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

/// The closed set of words a config value may take, named the same in the file and on the
/// command line.
trait Keyword: Copy + 'static {
    /// What the value is, for error messages ("registry kind").
    const WHAT: &'static str;
    /// Every value.
    const ALL: &'static [Self];
    /// Its name in the file.
    fn as_str(self) -> &'static str;
}

/// A word that is not one of a [`Keyword`]'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{given}\"; expected one of: {expected}")]
pub struct UnknownKeyword {
    what: &'static str,
    given: String,
    expected: String,
}

fn parse_keyword<K: Keyword>(given: &str) -> Result<K, UnknownKeyword> {
    K::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == given)
        .ok_or_else(|| UnknownKeyword {
            what: K::WHAT,
            given: given.to_string(),
            expected: K::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Defines a [`Keyword`] enum with `Display`, `FromStr` and `Serialize` by its names.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Keyword for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl $name {
            /// The name used in the config file and on the command line.
            pub fn as_str(self) -> &'static str {
                Keyword::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;
            fn from_str(s: &str) -> Result<Self, UnknownKeyword> {
                parse_keyword(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// Which registry services are looked up in.
    #[derive(Default)]
    pub enum RegistryKind ("registry kind") {
        /// Services announced over the tunnel network itself.
        #[default]
        Mesh = "mesh",
        /// A TOML file of plain addresses.
        Static = "static",
        /// DNS SRV, else A/AAAA records.
        Dns = "dns",
        /// Multicast DNS on the local network.
        Mdns = "mdns",
        /// An etcd cluster.
        Etcd = "etcd",
    }
}

keyword_enum! {
    /// What a local service speaks.
    #[derive(Default)]
    pub enum Protocol ("protocol") {
        /// HTTP/1.1 and h2c.
        #[default]
        Http = "http",
        /// gRPC over HTTP/2.
        Grpc = "grpc",
        /// Opaque TCP.
        Tcp = "tcp",
    }
}

keyword_enum! {
    /// How an outbound listener routes.
    pub enum OutboundKind ("outbound kind") {
        /// By `Host` / `:authority`; also an HTTP proxy and `CONNECT`.
        Http = "http",
        /// Every connection to one service.
        Tcp = "tcp",
    }
}

keyword_enum! {
    /// Log line format.
    #[derive(Default)]
    pub enum LogFormat ("log format") {
        /// Human-readable lines.
        #[default]
        Text = "text",
        /// One JSON object a line.
        Json = "json",
    }
}

impl Config {
    /// The embedded defaults, used when `ferry run` has no config file.
    pub fn defaults() -> Self {
        Self::defaults_in(&Environment::current())
    }

    fn defaults_in(env: &Environment) -> Self {
        let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self {
            node: NodeConfig {
                name: env.hostname.clone().unwrap_or_else(|| "ferry".to_string()),
                datacenter: "dc1".to_string(),
                key_file: env.default_key_file(),
                workers: 1,
            },
            tunnel: TunnelConfig {
                listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_TUNNEL_PORT)),
                advertise: None,
                gateway: false,
                peers: Vec::new(),
                trust: Vec::new(),
                trust_file: None,
            },
            registry: RegistryConfig::default(),
            services: Vec::new(),
            outbounds: vec![OutboundConfig {
                kind: OutboundKind::Http,
                listen: loopback(DEFAULT_OUTBOUND_PORT),
                service: None,
            }],
            admin: AdminConfig {
                listen: loopback(DEFAULT_ADMIN_PORT),
            },
            deadlines: DeadlineConfig::default(),
            log: LogConfig::default(),
            source: None,
        }
    }

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

/// Where the embedded defaults come from, read once so tests can supply their own.
#[derive(Debug, Clone, Default)]
struct Environment {
    hostname: Option<String>,
    state_dir: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl Environment {
    fn current() -> Self {
        let non_empty = |s: String| {
            let s = s.trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .and_then(non_empty)
            .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty));
        let dir = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            hostname,
            state_dir: dir("FERRY_STATE_DIR"),
            home: dir("HOME"),
        }
    }

    fn default_key_file(&self) -> PathBuf {
        match (&self.state_dir, &self.home) {
            (Some(state), _) => state.join("node.key"),
            (None, Some(home)) => home.join(".local/share/ferry/node.key"),
            // No home at all (a bare system service): the FHS place for daemon state.
            (None, None) => PathBuf::from("/var/lib/ferry/node.key"),
        }
    }
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

fn serialize_duration<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*d))
}

fn serialize_duration_map<S: Serializer>(
    map: &BTreeMap<String, Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(k, d)| (k, format_duration(*d))))
}
