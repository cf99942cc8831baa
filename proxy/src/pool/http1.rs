//! Keep-alive HTTP/1.1 connections to upstream addresses, reused across calls.
//!
//! hyper_util's pooled client did this with more work per call: it formatted and parsed the
//! address as an `Authority`, hashed it as a string, and spawned a task for every response to
//! hand the connection back once the response was read. Here connections are keyed by the
//! `SocketAddr` itself, and a connection goes back when its response body ends, on the task
//! that read it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tracing::debug;

use ferry_tunnel::Chain;

use super::{connect_tcp, resend_or_fail, IDLE_TIMEOUT};
use crate::body::{self, Body, BoxError};
use crate::error::TryError;

#[derive(Debug, Default)]
pub(crate) struct Http1Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    /// Closes connections left idle too long, on addresses no call asks for any more.
    sweeper: OnceLock<()>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Http1Pool {
    /// Sends `request` over an idle connection to `addr`, or a new one. A pooled connection
    /// that turns out closed before the request left it is dropped and the next one tried, so
    /// a server's idle timeout never fails a call.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Body>, TryError> {
        let mut request = origin_form(addr, request);
        loop {
            let (mut sender, reused) = match self.checkout(addr).await {
                Some(sender) => (sender, true),
                None => match self.connect(addr).await {
                    Ok(sender) => (sender, false),
                    Err(reason) => {
                        return Err(TryError::Unreached {
                            reason,
                            request: Some(Box::new(request)),
                        })
                    }
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.release_on_end(addr, sender, response)),
                Err(e) => request = resend_or_fail(e, reused)?,
            }
        }
    }

    /// The most recently used live connection to `addr`, ready for a request.
    async fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        loop {
            let mut idle = self.take_idle(addr)?;
            // Usually ready at once; a connection whose last response just ended may still
            // be finishing it on its own task.
            if idle.ready().await.is_ok() {
                return Some(idle);
            }
        }
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = pool.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            if !idle.sender.is_closed() && idle.since.elapsed() < IDLE_TIMEOUT {
                return Some(idle.sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        pool.entry(addr).or_default().push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    async fn connect(self: &Arc<Self>, addr: SocketAddr) -> Result<SendRequest<Body>, String> {
        let tcp = connect_tcp(addr).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Chain(&e).to_string())?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        self.sweeper.get_or_init(|| {
            tokio::spawn(sweep(Arc::downgrade(self)));
        });
        Ok(sender)
    }

    /// Boxes the response's body so that its end hands the connection back. A `101` answer
    /// keeps its connection: it now belongs to the upgraded protocol.
    fn release_on_end(
        self: &Arc<Self>,
        addr: SocketAddr,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<Body> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return response.map(body::boxed);
        }
        response.map(|inner| {
            let mut body = PooledBody {
                inner,
                lease: Some(Lease {
                    pool: self.clone(),
                    addr,
                    sender,
                }),
            };
            body.release_if_ended();
            body::boxed(body)
        })
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

/// Drops idle connections that have expired or closed, until the pool itself is dropped.
async fn sweep(pool: Weak<Http1Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
            !list.is_empty()
        });
    }
}

/// A connection lent to one response, to go back to the pool when that response ends.
struct Lease {
    pool: Arc<Http1Pool>,
    addr: SocketAddr,
    sender: SendRequest<Body>,
}

/// A response body that returns its connection once read to the end. Dropped before its end,
/// it drops the connection too: what is left of the response would be read as the next one.
struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    fn release_if_ended(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(lease.addr, lease.sender);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) => self.release_if_ended(),
            // A failed body leaves the connection in no state to reuse.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_refused_connection_hands_the_request_back_whole() {
        // A port nothing listens on: bound, then closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let pool = Arc::new(Http1Pool::default());
        let request = Request::post("/orders")
            .body(body::full("an order"))
            .expect("a valid request");
        let Err(TryError::Unreached {
            request: Some(request),
            ..
        }) = pool.send(addr, request).await
        else {
            panic!("a refused connection is unreached and gives the request back");
        };
        let body = request.into_body().collect().await.expect("a body");
        assert_eq!(
            body.to_bytes(),
            "an order",
            "the body is intact, to go elsewhere"
        );
    }
}
