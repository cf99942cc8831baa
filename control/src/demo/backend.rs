//! The demo's own workload: a tiny HTTP service that can be killed and brought back on the
//! same port, closing its connections as a dying process would. It greets a `GET`, and keeps
//! what a `POST` brings (the messages the mesh broker delivers) for the script to look at.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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
    received: Received,
    tasks: JoinSet<()>,
}

/// How many POSTs are kept: the demo looks at a few, and `ferry demo-service` runs for days.
const KEPT: usize = 1000;

/// The longest `?delay=MS` honoured.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// What POSTs brought: `(path, body)`, in arrival order; the last [`KEPT`].
type Received = Arc<Mutex<Vec<(String, String)>>>;

impl DemoService {
    /// Serves `greeting` on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr, greeting: String) -> std::io::Result<DemoService> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Received::default();
        let kept = received.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let greeting = greeting.clone();
                let kept = kept.clone();
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let path = request.uri().path().to_owned();
                    let greeting = format!("{greeting} (you asked for {path})\n");
                    let kept = kept.clone();
                    let delay = requested_delay(request.uri().query());
                    async move {
                        if !delay.is_zero() {
                            // Said, so that whoever asked for the wait sees the call arrived.
                            eprintln!("holding {path} for {} ms", delay.as_millis());
                            tokio::time::sleep(delay).await;
                        }
                        if request.method() == hyper::Method::POST {
                            let body = request.into_body().collect().await;
                            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                            if kept.len() == KEPT {
                                kept.remove(0);
                            }
                            kept.push((path, body));
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())));
                        }
                        Ok(Response::new(Full::new(Bytes::from(greeting))))
                    }
                });
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(DemoService {
            addr,
            received,
            tasks,
        })
    }

    /// Whether a POST to `path` brought `body`.
    pub fn received(&self, path: &str, body: &str) -> bool {
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received.iter().any(|(p, b)| p == path && b == body)
    }

    /// Stops it at once, dropping its listener and every open connection: what the demo's
    /// failover step does to dc1's greeter.
    pub fn kill(mut self) {
        self.tasks.abort_all();
    }
}

/// `delay=MS` in a query: how long to wait before answering, so that examples and tests can
/// have a call in flight (a drain, a failover) for as long as they need.
fn requested_delay(query: Option<&str>) -> Duration {
    let millis = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("delay="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(millis).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_read_from_the_query_and_capped() {
        assert_eq!(requested_delay(None), Duration::ZERO);
        assert_eq!(
            requested_delay(Some("a=1&delay=250")),
            Duration::from_millis(250)
        );
        assert_eq!(requested_delay(Some("delay=x")), Duration::ZERO);
        assert_eq!(requested_delay(Some("delay=99999999")), MAX_DELAY);
    }
}
