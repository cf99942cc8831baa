//! The embedded defaults (`docs/reference.md`: "Embedded defaults"): what `ferry run` uses
//! with no config file, and what a file's missing sections and keys take.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{
    AdminConfig, ApiConfig, AuthorizationConfig, BrokerConfig, BrokerKind, Config, DeadlineConfig,
    HealthConfig, InterceptConfig, LogConfig, NodeConfig, OutboundConfig, OutboundKind,
    RegistryConfig, TunnelConfig,
};

/// The default tunnel port (QUIC over UDP).
pub const DEFAULT_TUNNEL_PORT: u16 = 7700;
/// The port of the embedded default HTTP outbound listener.
pub const DEFAULT_OUTBOUND_PORT: u16 = 7701;
/// The port of the embedded default admin listener.
pub const DEFAULT_ADMIN_PORT: u16 = 7702;
/// The port of the embedded default application API.
pub const DEFAULT_API_PORT: u16 = 7703;

impl Config {
    /// The embedded defaults, used when `ferry run` has no config file.
    pub fn defaults() -> Self {
        Self::defaults_in(&Environment::current())
    }

    /// The embedded defaults as `env` makes them; tests pass an environment of their own.
    pub(super) fn defaults_in(env: &Environment) -> Self {
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
                ca: Vec::new(),
                certificate: None,
                rekey: Duration::from_secs(120),
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
            api: ApiConfig {
                listen: loopback(DEFAULT_API_PORT),
            },
            broker: BrokerConfig::default(),
            subscriptions: Vec::new(),
            intercept: InterceptConfig::default(),
            authorization: AuthorizationConfig::default(),
            rate_limits: Vec::new(),
            deadlines: DeadlineConfig::default(),
            log: LogConfig::default(),
            source: None,
        }
    }
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

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Mesh,
            servers: Vec::new(),
            prefix: None,
            stream: None,
            max_message_bytes: 1 << 20,
            queue_bytes: 64 << 20,
            delivery_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(15),
            per_service: BTreeMap::new(),
        }
    }
}

/// Where the embedded defaults come from, read once so tests can supply their own.
#[derive(Debug, Clone, Default)]
pub(super) struct Environment {
    pub(super) hostname: Option<String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) home: Option<PathBuf>,
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
