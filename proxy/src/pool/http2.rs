//! One multiplexed HTTP/2 connection per upstream address, shared by every call to it.
//!
//! hyper_util's pooled client did this with the same per-call costs as it had for HTTP/1.1
//! (an `Authority` formatted, parsed and hashed per call). Here the connection is found by the
//! `SocketAddr`. Calls that find no live connection wait for one dial instead of each opening
//! its own ([`SharedDials`]), and when that dial fails they all get its error at once: a burst
//! of calls to an address that does not answer costs one connect timeout, not one per call in
//! turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Request, Response, Uri, Version};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::debug;

use ferry_tunnel::{Chain, SharedDials};

use super::{connect_tcp, resend_or_fail, IDLE_TIMEOUT};
use crate::body::{self, Body};
use crate::error::TryError;

#[derive(Debug, Default)]
pub(crate) struct Http2Pool {
    live: Mutex<HashMap<SocketAddr, Live>>,
    dials: SharedDials<SocketAddr, Result<Live, String>>,
    /// Closes connections no call has used for a while.
    sweeper: OnceLock<()>,
    /// Numbers connections, so that a call forgets only the one that failed it.
    dialed: AtomicU64,
}

#[derive(Debug, Clone)]
struct Live {
    id: u64,
    sender: SendRequest<Body>,
    /// The address as `:authority`, made once per connection.
    authority: Authority,
    used: Instant,
}

impl Http2Pool {
    /// Sends `request` to `addr` on the shared connection, dialing it when there is none. A
    /// shared connection that turns out closed before the request left it is forgotten and
    /// the request sent on a new one.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, TryError> {
        // What `absolute_form` rewrites, to put back on a request handed back unsent: it may go
        // next to a node, which needs the name the caller used, not this upstream's address.
        let asked = (
            request.uri().clone(),
            request.version(),
            request.headers().get(header::HOST).cloned(),
        );
        loop {
            let (live, reused) = match self.live(addr) {
                Some(live) => (live, true),
                None => match self.dial(addr).await {
                    Ok(live) => (live, false),
                    Err(reason) => {
                        return Err(TryError::Unreached {
                            reason,
                            request: Some(Box::new(request)),
                        })
                    }
                },
            };
            let Live {
                id,
                mut sender,
                authority,
                ..
            } = live;
            request = absolute_form(request, authority);
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(body::boxed)),
                Err(e) => match resend_or_fail(e, reused) {
                    Ok(unsent) => {
                        request = unsent;
                        self.forget(addr, id);
                    }
                    Err(TryError::Unreached {
                        reason,
                        request: Some(mut unsent),
                    }) => {
                        let (uri, version, host) = asked;
                        *unsent.uri_mut() = uri;
                        *unsent.version_mut() = version;
                        if let Some(host) = host {
                            unsent.headers_mut().insert(header::HOST, host);
                        }
                        return Err(TryError::Unreached {
                            reason,
                            request: Some(unsent),
                        });
                    }
                    Err(failure) => return Err(failure),
                },
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live connection to `addr`, marked used.
    fn live(&self, addr: SocketAddr) -> Option<Live> {
        let mut live = self.lock();
        let live = live.get_mut(&addr)?;
        if live.sender.is_closed() {
            return None;
        }
        live.used = Instant::now();
        Some(live.clone())
    }

    /// Drops the shared connection to `addr` if it is still connection `id`: a newer one
    /// that another call dialed meanwhile stays.
    fn forget(&self, addr: SocketAddr, id: u64) {
        let mut live = self.lock();
        if live.get(&addr).is_some_and(|l| l.id == id) {
            debug!(%addr, "shared upstream connection closed; dialing a new one");
            live.remove(&addr);
        }
    }

    /// Dials `addr`, or waits for the call already dialing it and shares its outcome.
    async fn dial(self: &Arc<Self>, addr: SocketAddr) -> Result<Live, String> {
        let pool = self.clone();
        self.dials
            .dial(addr, move || async move {
                let live = pool.handshake(addr).await?;
                pool.lock().insert(addr, live.clone());
                Ok(live)
            })
            .await
    }

    async fn handshake(self: &Arc<Self>, addr: SocketAddr) -> Result<Live, String> {
        let authority = Authority::try_from(addr.to_string()).map_err(|e| e.to_string())?;
        let tcp = connect_tcp(addr).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Chain(&e).to_string())?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%addr, error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        self.sweeper.get_or_init(|| {
            tokio::spawn(sweep(Arc::downgrade(self)));
        });
        Ok(Live {
            id: self.dialed.fetch_add(1, Ordering::Relaxed),
            sender,
            authority,
            used: Instant::now(),
        })
    }
}

/// The request as an HTTP/2 client sends it: `:scheme` and `:authority` from the URI (the
/// upstream's address, as hyper_util's client set it), so no `Host` header.
fn absolute_form(mut request: Request<Body>, authority: Authority) -> Request<Body> {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Scheme, authority and path are all set: the parts always make a URI.
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_2;
    request.headers_mut().remove(header::HOST);
    request
}

/// Drops connections no call has used for [`IDLE_TIMEOUT`] (their streams still finish),
/// until the pool itself is dropped.
async fn sweep(pool: Weak<Http2Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.lock()
            .retain(|_, l| !l.sender.is_closed() && l.used.elapsed() < IDLE_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use tokio::net::{TcpSocket, TcpStream};

    use ferry_testing::eventually_async;

    use super::*;

    fn call() -> Request<Body> {
        Request::post("/greeter.Greeter/SayHello")
            .body(body::boxed(Full::new(Bytes::from_static(b"hi"))))
            .expect("a valid request")
    }

    /// An h2c server that answers every request with its body, counting the connections it
    /// serves. Aborting it closes them all, as a workload's exit does.
    async fn serve(listener: tokio::net::TcpListener, served: Arc<AtomicUsize>) {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            served.fetch_add(1, Ordering::Relaxed);
            connections.spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                    TokioIo::new(tcp),
                    service_fn(|request: Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                    }),
                ),
            );
        }
    }

    /// A listener whose accept queue is full, and what fills it. It drops the SYNs of new
    /// connections, so a dial to it hangs until the client resends its SYN (after 1 s), as to a
    /// server too busy to accept: that is when calls pile up behind a dial.
    async fn full_listener() -> (tokio::net::TcpListener, SocketAddr, Vec<TcpStream>) {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind");
        let addr = socket.local_addr().expect("bound");
        let listener = socket.listen(1).expect("listen");
        let mut fillers = Vec::new();
        while let Ok(Ok(tcp)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(tcp);
            assert!(fillers.len() < 64, "the accept queue never filled");
        }
        (listener, addr, fillers)
    }

    /// Takes the fillers off the queue, then serves whatever comes next.
    async fn make_room(
        listener: tokio::net::TcpListener,
        fillers: Vec<TcpStream>,
    ) -> Arc<AtomicUsize> {
        for _ in &fillers {
            let _ = listener.accept().await.expect("a filler");
        }
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(serve(listener, served.clone()));
        served
    }

    fn eight_calls(
        pool: &Arc<Http2Pool>,
        addr: SocketAddr,
    ) -> Vec<tokio::task::JoinHandle<Result<Response<Body>, TryError>>> {
        (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.send(addr, call()).await })
            })
            .collect()
    }

    /// How many calls hold `addr`'s dial: the one dialing and those waiting on it.
    fn calls_at_the_dial(pool: &Http2Pool, addr: SocketAddr) -> usize {
        pool.dials.waiting(&addr)
    }

    #[tokio::test]
    async fn concurrent_calls_wait_for_one_dial_instead_of_each_dialing() {
        let (listener, addr, fillers) = full_listener().await;
        let pool = Arc::new(Http2Pool::default());
        let calls = eight_calls(&pool, addr);
        // Room is made only once every call is in: one dialing, seven waiting on it.
        eventually_async(Duration::from_secs(5), || {
            match calls_at_the_dial(&pool, addr) {
                8 => Ok(()),
                n => Err(format!("{n} of 8 calls at the dial")),
            }
        })
        .await;
        let served = make_room(listener, fillers).await;
        for call in calls {
            let response = call.await.expect("the call's task ends").expect("answered");
            let body = response.into_body().collect().await.expect("a body");
            assert_eq!(body.to_bytes(), "hi");
        }
        assert_eq!(served.load(Ordering::Relaxed), 1, "connections dialed");
    }

    #[tokio::test]
    async fn calls_that_waited_on_a_failed_dial_get_its_error_at_once() {
        // The first dial times out (2 s); the seven calls queued behind it must not then dial
        // one after another, 2 s each.
        let (listener, addr, fillers) = full_listener().await;
        let pool = Arc::new(Http2Pool::default());
        let started = Instant::now();
        for call in eight_calls(&pool, addr) {
            let error = call
                .await
                .expect("the call's task ends")
                .expect_err("timed out");
            assert!(matches!(error, TryError::Unreached { .. }), "{error:?}");
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "eight calls failed in {took:?}"
        );
        // A call that arrives after the failure dials anew.
        let served = make_room(listener, fillers).await;
        pool.send(addr, call())
            .await
            .expect("answered once there is room");
        assert_eq!(served.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_call_after_the_server_closed_its_connection_dials_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let served = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve(listener, served.clone()));
        let pool = Arc::new(Http2Pool::default());
        pool.send(addr, call()).await.expect("answered");
        // The workload restarts: its connections close and it listens again.
        server.abort();
        let _ = server.await;
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        tokio::spawn(serve(listener, served.clone()));
        let response = pool.send(addr, call()).await.expect("answered");
        assert_eq!(response.status(), 200);
        assert_eq!(served.load(Ordering::Relaxed), 2);
    }
}
