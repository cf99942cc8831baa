//! The outbound side: entry points for the local application, and the stacks its calls go
//! down.

mod http;
mod smuggling;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::warn;

use tower::retry::Retry;
use tower::ServiceExt;

use crate::balance::{Balance, PeakEwma};
use crate::call::TcpCall;
use crate::deadline::Deadline;
use crate::directory::Directory;
use crate::error::ProxyError;
use crate::forward::{Forward, OpenTcp, Upstream};
use crate::pool::Upstreams;
use crate::retry::RetryPolicy;
use crate::target::ServiceName;

pub use self::http::serve_http_outbound;
pub(crate) use self::http::{drain, server_builder, HttpConnection};
pub(crate) use self::tcp::carry_tcp;
pub use self::tcp::serve_tcp_outbound;

/// The next connection on `listener`, with Nagle's algorithm off (proxied requests and
/// answers are small and must leave at once); `None` once `shutdown` turns true. A failed
/// accept (a connection reset before it was taken, say) is logged and the listener goes on.
/// Every listener of the node's applications accepts through it.
pub(crate) async fn accept(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, remote));
                }
                Err(e) => warn!(error = %e, "accept failed"),
            },
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

/// For the fuzz target: runs the smuggling guard over `data`, split where its first byte says.
pub(crate) fn feed_smuggling_guard(data: &[u8]) {
    smuggling::fuzz(data);
}

/// Per-call settings that a config reload may change.
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// How long a call may wait for its response to start, unless the service has its own.
    pub deadline: Duration,
    /// Deadlines of their own, by service.
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

/// The outbound TCP stack: the same balancer and retry policy, each try opening a stream to
/// one endpoint ([`OpenTcp`]). No deadline: a connection lives as long as its two ends want.
pub(crate) type TcpStack = Retry<RetryPolicy, Balance<OpenTcp>>;

/// What every outbound listener shares: the stacks, whose balancer load figures span all
/// calls and connections, and the settings a reload may change.
pub struct Outbound {
    settings: Arc<RwLock<Arc<OutboundSettings>>>,
    http: HttpStack,
    tcp: TcpStack,
}

impl Outbound {
    /// The outbound side of a node whose services `directory` knows.
    pub fn new(
        directory: Arc<dyn Directory>,
        upstreams: Upstreams,
        settings: OutboundSettings,
    ) -> Arc<Outbound> {
        let loads = PeakEwma::default();
        let settings = Arc::new(RwLock::new(Arc::new(settings)));
        let balance = Balance::new(directory.clone(), loads.clone(), Forward::new(upstreams));
        let http = Deadline::new(settings.clone(), Retry::new(RetryPolicy::new(), balance));
        let tcp = Retry::new(RetryPolicy::new(), Balance::new(directory, loads, OpenTcp));
        Arc::new(Outbound {
            settings,
            http,
            tcp,
        })
    }

    /// Replaces the settings; calls already under way keep the ones they started with.
    pub fn set_settings(&self, settings: OutboundSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// The HTTP stack, ready to take one call.
    pub(crate) fn http_stack(&self) -> HttpStack {
        self.http.clone()
    }

    /// Opens an opaque byte stream to one of the service's endpoints, trying others when one
    /// cannot be reached.
    pub(crate) async fn open_tcp(&self, name: &ServiceName) -> Result<Upstream, ProxyError> {
        self.tcp
            .clone()
            .oneshot(TcpCall::new(name.clone()))
            .await
            .map_err(|e| e.into_proxy_error(name))
    }
}
