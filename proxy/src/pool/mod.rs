//! Calls to upstream addresses (local workloads, services outside the mesh) over connections
//! kept and reused across calls: keep-alive HTTP/1.1 connections, one call at a time each
//! ([`Http1Pool`]), and one multiplexed HTTP/2 connection per address for gRPC
//! ([`Http2Pool`]). Both find connections by the upstream's `SocketAddr`, and both close what
//! has sat unused for [`IDLE_TIMEOUT`].

mod http1;
mod http2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::TrySendError;
use tokio::net::TcpStream;

use ferry_tunnel::{Chain, Protocol};

use crate::body::Body;
use crate::error::TryError;

use self::http1::Http1Pool;
use self::http2::Http2Pool;

/// How long an upstream connection may sit unused before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a TCP connect to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The pools for local and plain-address endpoints. Cloned for every call, so they sit behind
/// one `Arc`.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    pools: Arc<Pools>,
}

#[derive(Debug, Default)]
struct Pools {
    http1: Arc<Http1Pool>,
    http2: Arc<Http2Pool>,
}

impl Upstreams {
    /// Empty pools.
    pub fn new() -> Upstreams {
        Upstreams::default()
    }

    /// Sends `request` to `addr`. gRPC services and gRPC calls go over h2c (gRPC needs HTTP/2's
    /// trailers); everything else over HTTP/1.1, which every HTTP server speaks, whatever the
    /// caller spoke to its own Ferry (Envoy's default too).
    pub async fn send(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
        request: Request<Body>,
    ) -> Result<Response<Body>, TryError> {
        if protocol == Protocol::Grpc || crate::error::is_grpc(&request) {
            self.pools.http2.send(addr, request).await
        } else {
            self.pools.http1.send(addr, request).await
        }
    }
}

/// A TCP connection to an upstream address, given up after [`CONNECT_TIMEOUT`], with Nagle's
/// algorithm off: proxied requests and answers are small and must leave at once.
pub(crate) async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// What to do with a request that a connection did not take. When the connection came from
/// the pool it may have closed while idle: the request is handed back, to go out on another
/// one. Otherwise the try fails: unreached (with the request back) if it never left.
fn resend_or_fail(
    mut e: TrySendError<Request<Body>>,
    reused: bool,
) -> Result<Request<Body>, TryError> {
    let reason = Chain(e.error()).to_string();
    match e.take_message() {
        Some(unsent) if reused => Ok(unsent),
        Some(unsent) => Err(TryError::Unreached {
            reason,
            request: Some(Box::new(unsent)),
        }),
        None => Err(TryError::Unanswered { reason }),
    }
}
