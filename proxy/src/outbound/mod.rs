//! The outbound side: entry points for the local application.

mod framing;
mod http;
mod tcp;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;

use ferry_tunnel::{StreamHeader, StreamKind, TunnelStream};

use tower::retry::Retry;

use crate::balance::{Balance, Balancer};
use crate::client::{connect_tcp, Upstreams};
use crate::deadline::Deadline;
use crate::directory::{candidates, Directory, Endpoint, EndpointId, Target};
use crate::error::ProxyError;
use crate::forward::Forward;
use crate::retry::RetryPolicy;
use crate::target::ServiceName;

pub use self::http::serve_http_outbound;

/// For the fuzz target: runs the framing guard over `data`, split where its first byte says.
pub(crate) fn feed_framing_guard(data: &[u8]) {
    framing::fuzz(data);
}
pub use self::tcp::serve_tcp_outbound;

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

impl OutboundSettings {
    pub(crate) fn deadline_for(&self, service: &str) -> Duration {
        self.service_deadlines
            .get(service)
            .copied()
            .unwrap_or(self.deadline)
    }
}

/// The outbound HTTP stack, built bottom-up as linkerd2-proxy builds its own: each try goes
/// to one endpoint ([`Forward`]), picked by the balancer ([`Balance`]), retried by policy
/// ([`RetryPolicy`]), all within the service's deadline ([`Deadline`]).
pub(crate) type HttpStack = Deadline<Retry<RetryPolicy, Balance<Forward>>>;

/// What every outbound listener shares: where services are, how to reach them, and the
/// balancer and retry budget that span all calls.
pub struct Outbound {
    directory: Arc<dyn Directory>,
    balancer: Balancer,
    settings: Arc<RwLock<Arc<OutboundSettings>>>,
    stack: HttpStack,
}

impl Outbound {
    pub fn new(
        directory: Arc<dyn Directory>,
        upstreams: Upstreams,
        settings: OutboundSettings,
    ) -> Arc<Outbound> {
        let balancer = Balancer::default();
        let settings = Arc::new(RwLock::new(Arc::new(settings)));
        let forward = Forward::new(upstreams);
        let balance = Balance::new(directory.clone(), balancer.clone(), forward);
        let retry = Retry::new(RetryPolicy::new(), balance);
        let stack = Deadline::new(settings.clone(), retry);
        Arc::new(Outbound {
            directory,
            balancer,
            settings,
            stack,
        })
    }

    /// Replaces the settings; calls already under way keep the ones they started with.
    pub fn set_settings(&self, settings: OutboundSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// The stack, ready to take one call.
    pub(crate) fn http_stack(&self) -> HttpStack {
        self.stack.clone()
    }

    /// Opens an opaque byte stream to one of the service's endpoints, trying others when one
    /// cannot be reached.
    async fn open_tcp(&self, name: &ServiceName) -> Result<(Upstream, String), ProxyError> {
        let mut last = None;
        let mut tried: Vec<EndpointId> = Vec::new();
        for _ in 0..crate::retry::MAX_ATTEMPTS {
            let pool = match candidates(self.directory.as_ref(), name, &tried).await {
                Ok(pool) => pool,
                // Routes can go while we try: the first try's answer is the one that counts.
                Err(error) if last.is_none() => return Err(error),
                Err(_) => break,
            };
            let Some(endpoint) = self.balancer.pick(&pool) else {
                break;
            };
            // Every eligible endpoint failed once: a second round would only double the wait
            // on one that times out.
            if tried.contains(&endpoint.id) {
                break;
            }
            let in_flight = self.balancer.start(endpoint.id);
            match open_stream(endpoint, name).await {
                Ok(upstream) => {
                    in_flight.done();
                    return Ok((upstream, endpoint.datacenter.clone()));
                }
                Err(reason) => {
                    if let Target::Address(address) = endpoint.target {
                        self.directory.unreachable(&name.service, address);
                    }
                    last = Some(reason);
                    tried.push(endpoint.id);
                }
            }
        }
        Err(ProxyError::UpstreamFailed {
            service: name.to_string(),
            reason: last.unwrap_or_else(|| "no endpoint to try".into()),
        })
    }
}

/// An opaque byte stream to a service.
pub(crate) enum Upstream {
    Direct(TcpStream),
    Tunnel(TunnelStream),
}

async fn open_stream(endpoint: &Endpoint, name: &ServiceName) -> Result<Upstream, String> {
    match &endpoint.target {
        Target::Address(addr) => Ok(Upstream::Direct(connect_tcp(*addr).await?)),
        Target::Node { peer, node, .. } => {
            let header = StreamHeader {
                kind: StreamKind::Tcp,
                protocol: endpoint.protocol,
                service: name.service.clone(),
                datacenter: endpoint.datacenter.clone(),
            };
            peer.open(&header)
                .await
                .map(Upstream::Tunnel)
                .map_err(|e| format!("node {node}: {e}"))
        }
    }
}

impl Upstream {
    /// Pipes bytes both ways until both sides finish; returns (sent, received) byte counts.
    pub(crate) async fn splice<S>(self, other: S) -> std::io::Result<(u64, u64)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match self {
            Upstream::Direct(tcp) => crate::splice::splice(other, tcp).await,
            Upstream::Tunnel(stream) => crate::splice::splice(other, stream).await,
        }
    }
}
