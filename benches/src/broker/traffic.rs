//! The traffic of the broker scenario: 1 KiB messages stamped with the time they left,
//! publishers (HTTP to a node's application API, or straight to the subscriber; a
//! NATS client), and subscribers that record how long each message took (an HTTP server, a
//! NATS queue subscriber). Publisher and subscriber share one clock: this process's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// The size of every message.
pub(crate) const MESSAGE_BYTES: usize = 1024;

/// What the subscribers saw: publish-to-delivery latencies in µs, and how many arrived.
#[derive(Clone)]
pub(crate) struct Arrivals {
    base: Instant,
    seen: Arc<Mutex<Seen>>,
}

struct Seen {
    latency_us: Histogram<u64>,
    count: u64,
}

impl Arrivals {
    pub(crate) fn new(base: Instant) -> Arrivals {
        // Constant bounds that hdrhistogram accepts: 1 µs to a minute, 3 significant digits.
        let latency_us =
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Arrivals {
            base,
            seen: Arc::new(Mutex::new(Seen {
                latency_us,
                count: 0,
            })),
        }
    }

    /// A message arrived: its stamp says when it left.
    fn arrived(&self, message: &[u8]) {
        let Some(stamp) = message.get(..8) else {
            return;
        };
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(stamp);
        let sent = Duration::from_nanos(u64::from_be_bytes(nanos));
        let took = self.base.elapsed().saturating_sub(sent);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let _ = seen.latency_us.record((took.as_micros() as u64).max(1));
        seen.count += 1;
    }

    /// Forgets what arrived so far (after a warm-up).
    pub(crate) fn reset(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.latency_us.reset();
        seen.count = 0;
    }

    pub(crate) fn count(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    /// The latency at quantile `q`, in µs.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.latency_us.value_at_quantile(q) as f64
    }

    /// A message leaving at `at` (since the base).
    fn message(&self, at: Duration) -> Bytes {
        let mut body = BytesMut::with_capacity(MESSAGE_BYTES);
        body.put_u64(at.as_nanos() as u64);
        body.resize(MESSAGE_BYTES, b'x');
        body.freeze()
    }
}

/// An HTTP subscriber on `listener`: records each POSTed message, answers 200.
pub(crate) async fn serve_subscriber(listener: TcpListener, arrivals: Arrivals) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let arrivals = arrivals.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        if let Ok(body) = request.into_body().collect().await {
                            arrivals.arrived(&body.to_bytes());
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// A NATS queue subscriber on `subject`: records each message.
pub(crate) async fn nats_subscriber(
    client: async_nats::Client,
    subject: String,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut messages = client
        .queue_subscribe(subject, "bench".into())
        .await
        .map_err(|e| Error::Output {
            what: "a NATS subscription".into(),
            detail: e.to_string(),
        })?;
    Ok(tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            arrivals.arrived(&message.payload);
        }
    }))
}

/// Where a publisher sends.
#[derive(Clone)]
pub(crate) enum Publish {
    /// `POST PATH` over HTTP/1.1 keep-alive connections to an address.
    Http { address: SocketAddr, path: String },
    /// Core NATS publishes on a subject.
    Nats {
        client: async_nats::Client,
        subject: String,
    },
    /// JetStream publishes, each waiting until the stream stored it (as Ferry's publishes
    /// wait for the broker to hold the message).
    JetStream {
        context: async_nats::jetstream::Context,
        subject: String,
    },
}

/// How a publisher paces itself.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// This many messages a second in all, spread over the connections.
    Rate(f64),
    /// As fast as each publish is answered, on every connection.
    Flat,
}

/// Publishes for `duration` on `connections` connections (publishing lanes, for NATS, whose
/// client is one connection), then returns how many publishes were refused or failed.
pub(crate) async fn publish(
    to: &Publish,
    pace: Pace,
    connections: usize,
    duration: Duration,
    arrivals: &Arrivals,
) -> Result<u64> {
    let start = arrivals.base.elapsed();
    let mut tasks = JoinSet::new();
    for lane in 0..connections {
        let (to, arrivals) = (to.clone(), arrivals.clone());
        tasks.spawn(async move {
            let mut sender = Sender::connect(&to).await?;
            let mut failed = 0u64;
            let mut n = 0u64;
            loop {
                let due = match pace {
                    Pace::Rate(rate) => {
                        let every = Duration::from_secs_f64(connections as f64 / rate);
                        let lane_offset = every.mul_f64(lane as f64 / connections as f64);
                        start + lane_offset + every * n as u32
                    }
                    Pace::Flat => arrivals.base.elapsed(),
                };
                if due >= start + duration {
                    return Ok::<u64, Error>(failed);
                }
                if let Some(wait) = due.checked_sub(arrivals.base.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                // Stamped when it leaves, not when it was due: tokio's timer wakes up to a
                // millisecond late, which is the publisher's lag, not the broker's. At the
                // fixed rate each connection sends every 32 ms and is answered within a few,
                // so no send waits on an earlier one (no coordinated omission to hide).
                if !sender.send(arrivals.message(arrivals.base.elapsed())).await {
                    failed += 1;
                }
                n += 1;
            }
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        failed += done.map_err(|e| Error::Output {
            what: "a publisher".into(),
            detail: e.to_string(),
        })??;
    }
    if let Publish::Nats { client, .. } = to {
        let _ = client.flush().await;
    }
    Ok(failed)
}

/// One publisher connection: an HTTP/1.1 connection of its own, or a lane of the one NATS
/// client.
enum Sender {
    Http {
        send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        path: String,
    },
    Nats(Publish),
}

impl Sender {
    async fn connect(to: &Publish) -> Result<Sender> {
        match to {
            Publish::Http { address, path } => {
                let failed = |e: &dyn std::fmt::Display| Error::Output {
                    what: format!("a connection to {address}"),
                    detail: e.to_string(),
                };
                let stream = TcpStream::connect(address).await.map_err(|e| failed(&e))?;
                let _ = stream.set_nodelay(true);
                let (send, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| failed(&e))?;
                tokio::spawn(connection);
                Ok(Sender::Http {
                    send,
                    path: path.clone(),
                })
            }
            nats => Ok(Sender::Nats(nats.clone())),
        }
    }

    /// Sends one message; whether it was taken (an HTTP 2xx; a NATS publish handed over).
    async fn send(&mut self, message: Bytes) -> bool {
        match self {
            Sender::Http { send, path } => {
                let Ok(request) = Request::post(path.as_str())
                    .header(http::header::HOST, "bench")
                    .body(Full::new(message))
                else {
                    return false;
                };
                if send.ready().await.is_err() {
                    return false;
                }
                match send.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success()
                            || response.status() == StatusCode::ACCEPTED;
                        let _ = response.into_body().collect().await;
                        ok
                    }
                    Err(_) => false,
                }
            }
            Sender::Nats(Publish::Nats { client, subject }) => {
                client.publish(subject.clone(), message).await.is_ok()
            }
            Sender::Nats(Publish::JetStream { context, subject }) => {
                match context.publish(subject.clone(), message).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
            Sender::Nats(Publish::Http { .. }) => false,
        }
    }
}
