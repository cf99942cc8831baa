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
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// How long a publisher waits after a `429 broker-full` before it publishes again.
pub(crate) const FULL_BACKOFF: Duration = Duration::from_millis(10);

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
        let stamp = message.get(..16).and_then(|s| std::str::from_utf8(s).ok());
        let Some(nanos) = stamp.and_then(|s| u64::from_str_radix(s, 16).ok()) else {
            return;
        };
        let sent = Duration::from_nanos(nanos);
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

    /// A message leaving at `at` (since the base): text, so that a batch carries it as a
    /// JSON string, as most applications' messages would be.
    fn message(&self, at: Duration) -> Bytes {
        let mut body = BytesMut::with_capacity(MESSAGE_BYTES);
        body.put_slice(format!("{:016x}", at.as_nanos() as u64).as_bytes());
        body.resize(MESSAGE_BYTES, b'x');
        body.freeze()
    }

    /// A CloudEvents batch of `n` messages leaving at `at`, for `/v1/publish-batch`.
    fn batch(&self, at: Duration, n: usize) -> Bytes {
        let message = self.message(at);
        let mut body = BytesMut::with_capacity(n * (MESSAGE_BYTES + 16));
        body.put_u8(b'[');
        for i in 0..n {
            if i > 0 {
                body.put_u8(b',');
            }
            // The message is hex digits and 'x': nothing to escape.
            body.put_slice(b"{\"data\":\"");
            body.put_slice(&message);
            body.put_slice(b"\"}");
        }
        body.put_u8(b']');
        body.freeze()
    }
}

/// An event of a delivered batch: only its data is read.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
}

/// The messages of one delivery: its body, or each event's data for a batch.
fn delivered(content_type: Option<&http::HeaderValue>, body: &[u8], each: impl Fn(&[u8])) {
    let batch = content_type.is_some_and(|v| v.as_bytes() == b"application/cloudevents-batch+json");
    if !batch {
        return each(body);
    }
    if let Ok(events) = serde_json::from_slice::<Vec<Event<'_>>>(body) {
        for event in events {
            each(event.data.as_bytes());
        }
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
                        let content_type = request.headers().get(CONTENT_TYPE).cloned();
                        if let Ok(body) = request.into_body().collect().await {
                            let body = body.to_bytes();
                            delivered(content_type.as_ref(), &body, |m| arrivals.arrived(m));
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
    /// The same with many messages in each request at the highest rate (`POST BATCH_PATH`,
    /// a CloudEvents batch of `size`), one message each at a fixed rate (`POST PATH`).
    HttpBatch {
        address: SocketAddr,
        path: String,
        batch_path: String,
        size: usize,
    },
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
            let mut sender = Sender::connect(&to, pace).await?;
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
                let at = arrivals.base.elapsed();
                let message = match &sender {
                    Sender::Http { batch: Some(n), .. } => arrivals.batch(at, *n),
                    _ => arrivals.message(at),
                };
                if !sender.send(message).await {
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
        /// How many messages each request carries, when it is a batch.
        batch: Option<usize>,
    },
    Nats(Publish),
}

impl Sender {
    async fn connect(to: &Publish, pace: Pace) -> Result<Sender> {
        let (address, path, batch) = match (to, pace) {
            (Publish::Http { address, path }, _)
            | (Publish::HttpBatch { address, path, .. }, Pace::Rate(_)) => (address, path, None),
            (
                Publish::HttpBatch {
                    address,
                    batch_path,
                    size,
                    ..
                },
                Pace::Flat,
            ) => (address, batch_path, Some(*size)),
            (nats, _) => return Ok(Sender::Nats(nats.clone())),
        };
        let failed = |e: &dyn std::fmt::Display| Error::Output {
            what: format!("a connection to {address}"),
            detail: e.to_string(),
        };
        let stream = TcpStream::connect(address).await.map_err(|e| failed(&e))?;
        let _ = stream.set_nodelay(true);
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        Ok(Sender::Http {
            send,
            path: path.clone(),
            batch,
        })
    }

    /// Sends one message; whether it was taken (an HTTP 2xx; a NATS publish handed over).
    async fn send(&mut self, message: Bytes) -> bool {
        match self {
            Sender::Http { send, path, .. } => {
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
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            // The broker is full: a publisher that sent again at once would
                            // only spend the node's CPU on messages it cannot take.
                            tokio::time::sleep(FULL_BACKOFF).await;
                        }
                        status.is_success()
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
            Sender::Nats(Publish::Http { .. } | Publish::HttpBatch { .. }) => false,
        }
    }
}
