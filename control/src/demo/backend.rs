//! The demo's own workload: a tiny HTTP service that can be killed and brought back on the
//! same port, closing its connections as a dying process would.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A running demo service; dropping it (or [`DemoService::kill`]) stops it and every
/// connection it had.
pub struct DemoService {
    /// The address it listens on, with the port the OS chose when asked for 0.
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl DemoService {
    /// Serves `greeting` on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr, greeting: String) -> std::io::Result<DemoService> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let greeting = greeting.clone();
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let body = format!("{greeting} (you asked for {})\n", request.uri().path());
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(DemoService { addr, tasks })
    }

    /// Stops it at once, dropping its listener and every open connection: what the demo's
    /// failover step does to dc1's greeter.
    pub fn kill(mut self) {
        self.tasks.abort_all();
    }
}
