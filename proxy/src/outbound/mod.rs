//! The outbound side: entry points for the local application.

mod framing;
mod http;
mod tcp;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;

use ferry_tunnel::{StreamHeader, StreamKind, TunnelStream};

use crate::balance::Balancer;
use crate::client::Upstreams;
use crate::directory::{eligible, Directory, Endpoint, Resolution, Target};
use crate::error::ProxyError;
use crate::retry::RetryBudget;
use crate::target::ServiceName;

pub use self::http::serve_http_outbound;

/// For the fuzz target: runs the framing guard over `data`, split where its first byte says.
pub(crate) fn feed_framing_guard(data: &[u8]) {
    framing::fuzz(data);
}
pub use self::tcp::serve_tcp_outbound;

/// How long a TCP connection to an endpoint may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-call settings that a config reload may change.
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// How long a call may wait for its response to start, unless the service has its own.
    pub deadline: Duration,
    pub service_deadlines: HashMap<String, Duration>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            deadline: Duration::from_secs(15),
            service_deadlines: HashMap::new(),
        }
    }
}

/// What every outbound listener shares: where services are, how to reach them, and the
/// balancer and retry budget that span all calls.
pub struct Outbound {
    directory: Arc<dyn Directory>,
    upstreams: Upstreams,
    balancer: Balancer,
    budget: RetryBudget,
    settings: RwLock<Arc<OutboundSettings>>,
}

impl Outbound {
    pub fn new(
        directory: Arc<dyn Directory>,
        upstreams: Upstreams,
        settings: OutboundSettings,
    ) -> Arc<Outbound> {
        Arc::new(Outbound {
            directory,
            upstreams,
            balancer: Balancer::default(),
            budget: RetryBudget::default(),
            settings: RwLock::new(Arc::new(settings)),
        })
    }

    /// Replaces the settings; calls already under way keep the ones they started with.
    pub fn set_settings(&self, settings: OutboundSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    fn deadline(&self, service: &str) -> Duration {
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        settings
            .service_deadlines
            .get(service)
            .copied()
            .unwrap_or(settings.deadline)
    }

    /// The endpoints a call to `name` may use, or the error that answers it.
    fn candidates(&self, name: &ServiceName) -> Result<Vec<Endpoint>, ProxyError> {
        let endpoints = match self.directory.resolve(name) {
            Resolution::NoRoute => {
                return Err(ProxyError::NoRoute {
                    service: display_name(name),
                })
            }
            Resolution::Endpoints(endpoints) => endpoints,
        };
        eligible(&endpoints, &self.directory.datacenter()).ok_or_else(|| {
            ProxyError::NoHealthyEndpoint {
                service: display_name(name),
            }
        })
    }

    /// Opens an opaque byte stream to one of the service's endpoints, trying others when one
    /// cannot be reached.
    async fn open_tcp(&self, name: &ServiceName) -> Result<(Upstream, String), ProxyError> {
        let candidates = self.candidates(name)?;
        let mut last = String::new();
        let mut tried: Vec<&str> = Vec::new();
        for _ in 0..crate::retry::MAX_ATTEMPTS.min(candidates.len()) {
            let pool: Vec<Endpoint> = candidates
                .iter()
                .filter(|e| !tried.contains(&e.id.as_str()))
                .cloned()
                .collect();
            let Some(endpoint) = self.balancer.pick(&pool) else {
                break;
            };
            let in_flight = self.balancer.start(&endpoint.id);
            match open_stream(endpoint, name).await {
                Ok(upstream) => {
                    in_flight.done();
                    return Ok((upstream, endpoint.datacenter.clone()));
                }
                Err(reason) => {
                    last = reason;
                    if let Some(e) = candidates.iter().find(|e| e.id == endpoint.id) {
                        tried.push(&e.id);
                    }
                }
            }
        }
        Err(ProxyError::UpstreamFailed {
            service: display_name(name),
            reason: last,
        })
    }
}

/// The name as the caller wrote it, for error lines.
fn display_name(name: &ServiceName) -> String {
    match &name.datacenter {
        Some(dc) => format!("{}.{dc}", name.service),
        None => name.service.clone(),
    }
}

/// An opaque byte stream to a service.
pub(crate) enum Upstream {
    Direct(TcpStream),
    Tunnel(TunnelStream),
}

async fn open_stream(endpoint: &Endpoint, name: &ServiceName) -> Result<Upstream, String> {
    match &endpoint.target {
        Target::Address(addr) => {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to {addr} timed out"))?
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            Ok(Upstream::Direct(stream))
        }
        Target::Node { link, node } => {
            let header = StreamHeader {
                kind: StreamKind::Tcp,
                protocol: endpoint.protocol,
                service: name.service.clone(),
                datacenter: endpoint.datacenter.clone(),
            };
            link.open(&header)
                .await
                .map(Upstream::Tunnel)
                .map_err(|e| format!("node {node}: {e}"))
        }
    }
}

impl Upstream {
    /// Pipes bytes both ways until both sides finish; returns (sent, received) byte counts.
    pub(crate) async fn splice<S>(self, mut other: S) -> std::io::Result<(u64, u64)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match self {
            Upstream::Direct(mut tcp) => tokio::io::copy_bidirectional(&mut other, &mut tcp).await,
            Upstream::Tunnel(mut stream) => {
                tokio::io::copy_bidirectional(&mut other, &mut stream).await
            }
        }
    }
}
