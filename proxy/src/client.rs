//! Calls to upstream addresses, over pooled connections (`pool/`): HTTP/1.1 for most, h2c for
//! gRPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri, Version};
use tokio::net::TcpStream;

use ferry_tunnel::Protocol;

use crate::body::Body;
use crate::pool::{Http1Pool, Http2Pool};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an upstream call failed.
#[derive(Debug)]
pub struct UpstreamError {
    /// The connection could not be made: the request never left, so it may be retried.
    pub connect: bool,
    pub reason: String,
}

/// Clients for local and plain-address endpoints. Cloned for every call, so they sit behind
/// one `Arc`.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    clients: Arc<Clients>,
}

#[derive(Debug, Default)]
struct Clients {
    http1: Arc<Http1Pool>,
    http2: Arc<Http2Pool>,
}

impl Upstreams {
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
    ) -> Result<Response<Body>, UpstreamError> {
        if protocol == Protocol::Grpc || crate::error::is_grpc(&request) {
            self.clients.http2.send(addr, request).await
        } else {
            self.clients
                .http1
                .send(addr, origin_form(addr, request))
                .await
        }
    }
}

/// An HTTP/1.1 request as a server expects it: the path alone on the request line, and the
/// name the caller used in `Host` (servers with virtual hosts route by it), else the address.
fn origin_form(addr: SocketAddr, mut request: Request<Body>) -> Request<Body> {
    if !request.headers().contains_key(header::HOST) {
        let host = match request.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()),
            None => HeaderValue::try_from(addr.to_string()),
        };
        if let Ok(host) = host {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
    if request.version() == Version::HTTP_2 {
        *request.version_mut() = Version::HTTP_11;
    }
    request
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

/// An error and its causes on one line: hyper's top-level messages alone say little.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
