//! The inbound side: the streams peers open, delivered to this node's local services. An HTTP
//! stream is the serving node's half of HTTP over a tunnel stream (the calling half is
//! `forward/node.rs`): read the request's frames, send it to the local service through the
//! upstream pools, write the response back as frames. A TCP stream is joined to a new
//! connection to the service. Each call is first put to the node's [`Access`]: its
//! authorization policy and the service's rate limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use http::{header, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use ferry_tunnel::{
    IncomingStream, PeerIdentity, StreamHandler, StreamKind, StreamWriter, TunnelStream,
};

use crate::access::{Access, Call, Verdict};
use crate::body::{self, Body};
use crate::codec::body::{read_body, write_body};
use crate::codec::{
    Frame, FrameReader, ResponseHeadRef, END_STREAM, UNANSWERED, UNDELIVERED, UPGRADE,
};
use crate::directory::Directory;
use crate::error::{is_grpc_headers, ProxyError, TryError};
use crate::headers::strip_hop_by_hop;
use crate::metrics::{self, Direction};
use crate::pool::{connect_tcp, Upstreams};
use crate::splice::{self, Prefixed};

/// How many streams from peers this node is serving: a draining node waits for them before
/// it closes its links, so that no response is cut short.
#[derive(Clone, Debug, Default)]
pub struct InboundCalls(Arc<AtomicUsize>);

impl InboundCalls {
    /// The streams being served now.
    pub fn in_flight(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) -> Serving {
        self.0.fetch_add(1, Ordering::Relaxed);
        Serving(self.0.clone())
    }
}

/// One stream being served; counted until dropped.
struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The handler for the streams peers open: each is served on the task that read its header,
/// and counted in `calls` while it is.
pub fn inbound_handler(
    directory: Arc<dyn Directory>,
    upstreams: Upstreams,
    access: Arc<Access>,
    calls: InboundCalls,
) -> StreamHandler {
    Arc::new(move |stream| {
        let directory = directory.clone();
        let upstreams = upstreams.clone();
        let access = access.clone();
        let serving = calls.start();
        Box::pin(async move {
            let _serving = serving;
            let local = Local {
                directory: directory.as_ref(),
                upstreams: &upstreams,
                access: &access,
            };
            serve_stream(stream, local).await
        })
    })
}

/// What serving a stream needs of this node.
#[derive(Clone, Copy)]
struct Local<'a> {
    directory: &'a dyn Directory,
    upstreams: &'a Upstreams,
    access: &'a Access,
}

async fn serve_stream(incoming: IncomingStream, local: Local<'_>) {
    let IncomingStream {
        header,
        stream,
        peer,
    } = incoming;
    let directory = local.directory;
    match header.kind {
        StreamKind::Http => {
            let started = Instant::now();
            let status = serve_http(stream, &header.service, &peer, local).await;
            metrics::request(
                &header.service,
                directory.datacenter(),
                status.as_u16(),
                Direction::Inbound,
                started.elapsed(),
            );
        }
        StreamKind::Tcp => {
            let Some((addr, _)) = directory.local_service(&header.service) else {
                debug!(service = %header.service, "tcp stream for a service not here");
                stream.reset();
                return;
            };
            let call = Call {
                service: &header.service,
                method: None,
                path: None,
            };
            if local.access.check(&peer, &call) != Verdict::Serve {
                // Closed at once: TCP has no way to say why.
                stream.reset();
                return;
            }
            let tcp = match connect_tcp(addr).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    debug!(service = %header.service, %error, "local service unreachable");
                    directory.unreachable(&header.service, addr);
                    stream.reset();
                    return;
                }
            };
            metrics::tcp_connection(&header.service, Direction::Inbound);
            let joined = splice::join(std::future::ready(Ok(stream)), std::future::ready(Ok(tcp)));
            if let Err(e) = joined.await {
                debug!(error = %e, "tcp stream ended with an error");
            }
        }
    }
}

/// Serves one HTTP call that a peer sent over the tunnel, delivering it to the local
/// `service` (or answering an error when it is not here). A service that refuses the
/// connection is reported to `directory`, whose health check then looks at it at once.
async fn serve_http(
    stream: TunnelStream,
    service: &str,
    caller: &PeerIdentity,
    node: Local<'_>,
) -> StatusCode {
    let Local {
        directory,
        upstreams,
        access,
    } = node;
    let local = directory.local_service(service);
    let (reader, writer) = stream.into_split();
    let mut reader = FrameReader::new(reader);
    let head = match reader.require().await {
        Ok(Frame::Request(head)) => head,
        other => {
            debug!(?other, "peer opened an HTTP stream without a request head");
            writer.reset();
            return StatusCode::BAD_REQUEST;
        }
    };
    let grpc = is_grpc_headers(&head.headers);
    let Some((addr, protocol)) = local else {
        let error = ProxyError::NoRoute {
            service: service.to_owned(),
        };
        return respond(error.to_response(grpc), writer, UNDELIVERED).await;
    };
    let upgrade = head.flags & UPGRADE != 0;
    let has_body = head.flags & (END_STREAM | UPGRADE) == 0;
    let uri = match head.path.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            let error = ProxyError::BadRequest {
                reason: "bad path".into(),
            };
            return respond(error.to_response(grpc), writer, 0).await;
        }
    };
    let call = Call {
        service,
        method: Some(&head.method),
        path: Some(uri.path()),
    };
    let refusal = match access.check(caller, &call) {
        Verdict::Serve => None,
        Verdict::Forbidden(caller) => Some(ProxyError::Forbidden {
            service: service.to_owned(),
            caller,
        }),
        Verdict::Limited(wait) => Some(ProxyError::RateLimited {
            service: service.to_owned(),
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        }),
    };
    if let Some(error) = refusal {
        return respond(error.to_response(grpc), writer, 0).await;
    }
    let mut request = Request::new(body::empty());
    *request.method_mut() = head.method;
    *request.uri_mut() = uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    if !request.headers().contains_key(header::HOST) && !head.authority.is_empty() {
        if let Ok(value) = head.authority.parse() {
            request.headers_mut().insert(header::HOST, value);
        }
    }
    let mut reader = Some(reader);
    if has_body {
        if let Some(reader) = reader.take() {
            *request.body_mut() = read_body(reader);
        }
    }
    match upstreams.send(addr, protocol, request).await {
        Err(failure) => {
            // Said to the caller's node, whose retry policy decides what may go elsewhere: a
            // call that never got here may; one the service took, only if idempotent.
            let flags = match failure {
                TryError::Unreached { .. } => {
                    directory.unreachable(service, addr);
                    UNDELIVERED
                }
                TryError::Unanswered { .. } => UNANSWERED,
            };
            let error = ProxyError::UpstreamFailed {
                service: service.to_owned(),
                reason: failure.reason().to_owned(),
            };
            respond(error.to_response(grpc), writer, flags).await
        }
        Ok(mut response) => {
            let status = response.status();
            if upgrade && status == StatusCode::SWITCHING_PROTOCOLS {
                let on_upgrade = hyper::upgrade::on(&mut response);
                let mut writer = writer;
                let head = encode_head(&response, 0);
                if writer.write_all(&head).await.is_err() {
                    return status;
                }
                if let Some(reader) = reader {
                    let (reader, leftover) = reader.into_parts();
                    let tunnel = Prefixed::new(leftover, TunnelStream::join(reader, writer));
                    let joined =
                        splice::join(std::future::ready(Ok(tunnel)), splice::upgraded(on_upgrade));
                    if let Err(e) = joined.await {
                        debug!(error = %e, "upgraded connection ended with an error");
                    }
                }
                return status;
            }
            respond(response, writer, 0).await
        }
    }
}

/// Writes a whole response to the tunnel: head (with `flags`), then its body as it comes.
async fn respond(mut response: Response<Body>, mut writer: StreamWriter, flags: u8) -> StatusCode {
    let status = response.status();
    strip_hop_by_hop(response.headers_mut(), false);
    let end = response.body().is_end_stream();
    let head = encode_head(&response, flags | if end { END_STREAM } else { 0 });
    if end {
        if writer.write_all(&head).await.is_ok() {
            let _ = writer.shutdown().await;
        }
    } else {
        // The head goes out with what of the body is ready.
        write_body(response.into_body(), writer, head).await;
    }
    status
}

/// Encoded before any await: a response body is not `Sync`, so no reference to the response
/// may live across one.
fn encode_head<B>(response: &Response<B>, flags: u8) -> BytesMut {
    let mut buf = BytesMut::new();
    ResponseHeadRef {
        version: response.version(),
        flags,
        status: response.status(),
        headers: response.headers(),
    }
    .encode(&mut buf);
    buf
}
