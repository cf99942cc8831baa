//! Pooled connections to upstream addresses: one HTTP/1.1 pool and one HTTP/2 pool, each
//! keyed by address, reused across calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{header, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use ferry_tunnel::Protocol;

use crate::body::Body;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream call failed.
#[derive(Debug)]
pub struct UpstreamError {
    /// The connection could not be made: the request never left, so it may be retried.
    pub connect: bool,
    pub reason: String,
}

/// Clients for local and plain-address endpoints. Cloned for every call, so the clients sit
/// behind one `Arc`: a hyper client's own clone touches about a dozen.
#[derive(Clone, Debug)]
pub struct Upstreams {
    clients: Arc<Clients>,
}

#[derive(Debug)]
struct Clients {
    http1: Client<HttpConnector, Body>,
    http2: Client<HttpConnector, Body>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let http1 = builder.build(connector.clone());
        let http2 = builder.http2_only(true).build(connector);
        Upstreams {
            clients: Arc::new(Clients { http1, http2 }),
        }
    }

    /// Sends `request` to `addr`. gRPC services and gRPC calls go over h2c (gRPC needs HTTP/2's
    /// trailers); everything else over HTTP/1.1, which every HTTP server speaks, whatever the
    /// caller spoke to its own Ferry (Envoy's default too).
    pub async fn send(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let http2 = protocol == Protocol::Grpc || crate::error::is_grpc(&request);
        let original = request.uri().authority().cloned();
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority =
            Some(
                Authority::try_from(addr.to_string()).map_err(|e| UpstreamError {
                    connect: true,
                    reason: e.to_string(),
                })?,
            );
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(parts).map_err(|e| UpstreamError {
            connect: true,
            reason: e.to_string(),
        })?;
        let client = if http2 {
            *request.version_mut() = Version::HTTP_2;
            request.headers_mut().remove(header::HOST);
            &self.clients.http2
        } else {
            // Keep the name the caller used: servers with virtual hosts route by it.
            if let (false, Some(authority)) =
                (request.headers().contains_key(header::HOST), original)
            {
                if let Ok(value) = authority.as_str().parse() {
                    request.headers_mut().insert(header::HOST, value);
                }
            }
            if request.version() == Version::HTTP_2 {
                *request.version_mut() = Version::HTTP_11;
            }
            &self.clients.http1
        };
        client.request(request).await.map_err(|e| UpstreamError {
            connect: e.is_connect(),
            reason: error_chain(&e),
        })
    }
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
