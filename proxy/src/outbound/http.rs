//! The outbound HTTP listener: HTTP/1.1 and h2c on one port, routed by Host or :authority;
//! also an HTTP proxy (absolute-form requests) and a CONNECT endpoint.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use tower::ServiceExt;

use super::smuggling::Guarded;
use super::{accept, Outbound};
use crate::body::{self, Body};
use crate::call::Call;
use crate::error::{is_grpc, ProxyError};
use crate::forward::ServedBy;
use crate::headers::{strip_hop_by_hop, wants_upgrade};
use crate::metrics::{self, Direction};
use crate::splice;
use crate::target::ServiceName;

/// Requests whose headers take more than this are answered 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client that has not sent a whole request head by then is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a draining listener waits for calls in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The hyper server settings every HTTP listener shares.
pub(crate) fn server_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Serves the outbound HTTP listener until `shutdown` turns true, then finishes the calls in
/// flight (for at most a bounded time) and returns.
pub async fn serve_http_outbound(
    listener: TcpListener,
    outbound: Arc<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(server_builder());
    let graceful = GracefulShutdown::new();
    while let Some((stream, remote)) = accept(&listener, &mut shutdown).await {
        let connection = HttpConnection {
            stream,
            remote,
            target: None,
        };
        tokio::spawn(connection.serve(builder.clone(), outbound.clone(), graceful.watcher()));
    }
    drop(listener);
    drain(graceful).await;
}

/// One client connection to serve as HTTP.
pub(crate) struct HttpConnection {
    pub(crate) stream: TcpStream,
    pub(crate) remote: SocketAddr,
    /// The service every request on it is for; `None`: each request names its own.
    pub(crate) target: Option<ServiceName>,
}

impl HttpConnection {
    /// Serves the connection's requests until it closes, or a drain closes it.
    pub(crate) async fn serve(
        self,
        builder: Arc<auto::Builder<TokioExecutor>>,
        outbound: Arc<Outbound>,
        graceful: Watcher,
    ) {
        let HttpConnection {
            stream,
            remote,
            target,
        } = self;
        let (stream, conflict) = Guarded::new(stream);
        let requests = Arc::new(AtomicU64::new(0));
        let service = service_fn(move |request: Request<Incoming>| {
            let (outbound, target) = (outbound.clone(), target.clone());
            let smuggled = request.version() != http::Version::HTTP_2
                && conflict.is(requests.fetch_add(1, Ordering::Relaxed));
            async move {
                if smuggled {
                    return Ok::<_, Infallible>(conflicting_framing());
                }
                Ok(handle(&outbound, request, target).await)
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(e) = graceful.watch(connection.into_owned()).await {
            debug!(%remote, error = %e, "outbound connection ended");
        }
    }
}

/// Lets the calls in flight finish, for a bounded time.
pub(crate) async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("calls still in flight after the drain timeout; closing them");
    }
}

/// The service a request names: from the absolute URI or :authority, else the Host header
/// (an authority that is an address, not a name, falls through to Host).
fn service_name<B>(request: &Request<B>) -> Option<ServiceName> {
    let from_uri = request
        .uri()
        .authority()
        .and_then(|a| ServiceName::from_authority(a.as_str()));
    from_uri.or_else(|| {
        let host = request.headers().get(header::HOST)?.to_str().ok()?;
        ServiceName::from_authority(host)
    })
}

/// RFC 9112 §6.1: a request with both `Content-Length` and `Transfer-Encoding` is a
/// smuggling attempt or a broken client; answer 400 and close the connection.
fn conflicting_framing() -> Response<Body> {
    let mut response = ProxyError::BadRequest {
        reason: "both Content-Length and Transfer-Encoding".into(),
    }
    .to_response(false);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn handle(
    outbound: &Outbound,
    mut request: Request<Incoming>,
    target: Option<ServiceName>,
) -> Response<Body> {
    let started = Instant::now();
    let grpc = is_grpc(&request);
    let Some(name) = target.or_else(|| service_name(&request)) else {
        return ProxyError::BadRequest {
            reason: "no service named in Host or :authority".into(),
        }
        .to_response(grpc);
    };
    let result = if request.method() == Method::CONNECT {
        connect(outbound, &name, &mut request).await
    } else {
        let upgrade = wants_upgrade(&request).then(|| hyper::upgrade::on(&mut request));
        let (mut parts, incoming) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
        let request = Request::from_parts(parts, body::boxed(incoming));
        let call = Call::new(name.clone(), request, upgrade);
        outbound
            .http_stack()
            .oneshot(call)
            .await
            .map_err(|e| e.into_proxy_error(&name))
    };
    let mut response = result.unwrap_or_else(|e| e.to_response(grpc));
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(response.headers_mut(), false);
    }
    let served_by = response
        .extensions()
        .get::<ServedBy>()
        .map(|s| s.0.as_str());
    let datacenter = served_by.or(name.datacenter.as_deref()).unwrap_or("");
    metrics::request(
        &name.service,
        datacenter,
        response.status().as_u16(),
        Direction::Outbound,
        started.elapsed(),
    );
    response
}

/// `CONNECT service:port`: an opaque TCP stream to the service, through the tunnel if need be.
async fn connect(
    outbound: &Outbound,
    name: &ServiceName,
    request: &mut Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let upstream = outbound.open_tcp(name).await?;
    let on_upgrade = hyper::upgrade::on(request);
    let service = name.service.clone();
    tokio::spawn(async move {
        // Counted once the caller's side is handed over, as a tcp outbound counts an accept.
        let client = async {
            let client = splice::upgraded(on_upgrade).await?;
            metrics::tcp_connection(&service, Direction::Outbound);
            Ok(client)
        };
        let joined = splice::join(client, std::future::ready(Ok(upstream)));
        match joined.await {
            Ok((sent, received)) => metrics::tcp_bytes(sent, received),
            Err(e) => debug!(error = %e, "CONNECT connection ended with an error"),
        }
    });
    Ok(Response::new(body::empty()))
}
