//! One source of requests: an HTTP/1.1 keep-alive connection, or one stream at a time over a
//! shared HTTP/2 connection for gRPC. A broken connection is redialled, and the failure
//! counted, so one reset does not end a measurement.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// What a caller sends.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// `GET /` with this `Host`.
    Http1 { host: String },
    /// A unary gRPC call with this `:authority`.
    Grpc { authority: String },
}

enum Conn {
    None,
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

pub(crate) struct Caller {
    addr: SocketAddr,
    kind: Kind,
    conn: Conn,
}

/// Why a call failed; only counted, so a short text is enough.
#[derive(Debug)]
pub(crate) struct CallFailed(#[allow(dead_code)] pub String);

fn failed(e: impl std::fmt::Display) -> CallFailed {
    CallFailed(e.to_string())
}

/// The request message of every gRPC call: a protobuf string field 1 = "ferry".
const GRPC_REQUEST: &[u8] = &[0, 0, 0, 0, 7, 0x0a, 5, b'f', b'e', b'r', b'r', b'y'];

impl Caller {
    /// A caller with its own connection to `addr`.
    pub(crate) async fn connect(addr: SocketAddr, kind: Kind) -> Result<Caller, CallFailed> {
        let mut caller = Caller {
            addr,
            kind,
            conn: Conn::None,
        };
        caller.dial().await?;
        Ok(caller)
    }

    /// `streams` callers sharing one HTTP/2 connection to `addr`, as a gRPC channel does.
    pub(crate) async fn grpc_channel(
        addr: SocketAddr,
        authority: &str,
        streams: usize,
    ) -> Result<Vec<Caller>, CallFailed> {
        let first = Caller::connect(
            addr,
            Kind::Grpc {
                authority: authority.to_string(),
            },
        )
        .await?;
        let mut callers = Vec::with_capacity(streams);
        for _ in 1..streams {
            let conn = match &first.conn {
                Conn::Http2(send) => Conn::Http2(send.clone()),
                _ => Conn::None,
            };
            callers.push(Caller {
                addr,
                kind: first.kind.clone(),
                conn,
            });
        }
        callers.push(first);
        Ok(callers)
    }

    async fn dial(&mut self) -> Result<(), CallFailed> {
        let stream = TcpStream::connect(self.addr).await.map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        let io = TokioIo::new(stream);
        self.conn = match self.kind {
            Kind::Http1 { .. } => {
                let (send, conn) = http1::handshake(io).await.map_err(failed)?;
                tokio::spawn(conn);
                Conn::Http1(send)
            }
            Kind::Grpc { .. } => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(failed)?;
                tokio::spawn(conn);
                Conn::Http2(send)
            }
        };
        Ok(())
    }

    /// One request, answered in full and checked (status 200; for gRPC, `grpc-status: 0`).
    pub(crate) async fn call(&mut self) -> Result<(), CallFailed> {
        let result = self.try_call().await;
        if result.is_err() {
            // Redial for the next call; pause briefly so a dead target is not spun on.
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.conn = Conn::None;
            let _ = self.dial().await;
        }
        result
    }

    async fn try_call(&mut self) -> Result<(), CallFailed> {
        match (&mut self.conn, &self.kind) {
            (Conn::Http1(send), Kind::Http1 { host }) => {
                send.ready().await.map_err(failed)?;
                let request = Request::get("/")
                    .header("host", host.as_str())
                    .body(Empty::new())
                    .map_err(failed)?;
                let response = send.send_request(request).await.map_err(failed)?;
                let status = response.status();
                response.into_body().collect().await.map_err(failed)?;
                if status != 200 {
                    return Err(CallFailed(format!("status {status}")));
                }
                Ok(())
            }
            (Conn::Http2(send), Kind::Grpc { authority }) => {
                send.ready().await.map_err(failed)?;
                let request = Request::post(format!("http://{authority}/ferry.bench.Echo/Say"))
                    .header("content-type", HeaderValue::from_static("application/grpc"))
                    .header("te", HeaderValue::from_static("trailers"))
                    .body(Full::new(Bytes::from_static(GRPC_REQUEST)))
                    .map_err(failed)?;
                let response = send.send_request(request).await.map_err(failed)?;
                let status = response.status();
                // A "trailers-only" answer (an error with no message) has its status in
                // the headers.
                let in_headers = response.headers().get("grpc-status").cloned();
                let body = response.into_body().collect().await.map_err(failed)?;
                let grpc_status = body
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .or(in_headers.as_ref())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                if status != 200 || grpc_status.as_deref() != Some("0") {
                    return Err(CallFailed(format!(
                        "status {status}, grpc-status {grpc_status:?}"
                    )));
                }
                Ok(())
            }
            _ => Err(CallFailed("not connected".into())),
        }
    }
}
