//! HTTP over a tunnel stream: the calling node's side ([`send`]) and the serving node's side
//! ([`serve`]). See [`crate::frame`] for the framing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::stream;
use http::{header, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

use ferry_tunnel::{Peer, StreamHeader, StreamReader, StreamWriter, TunnelStream};

use crate::body::{self, Body, BoxError};
use crate::client::Upstreams;
use crate::directory::Directory;
use crate::error::{is_grpc_headers, ProxyError};
use crate::frame::{
    Frame, FrameError, FrameReader, RequestHeadRef, ResponseHeadRef, END_STREAM, MAX_DATA_FRAME,
    UNDELIVERED, UPGRADE,
};
use crate::headers::strip_hop_by_hop;

/// A call over a link that did not get a response.
pub(crate) struct LinkFailure {
    pub reason: String,
    /// The request, if it never left this node (the stream could not be opened).
    pub unsent: Option<Request<Body>>,
    /// The request left, but the far node's service never saw it.
    pub undelivered: bool,
}

/// Sends `request` to `peer` and returns the response as it starts to arrive; its body
/// streams in as the peer sends it. With `upgrade`, a `101` answer turns the stream into a
/// raw pipe between the caller and the far service.
pub(crate) async fn send(
    peer: &Peer,
    header: &StreamHeader,
    request: Request<Body>,
    upgrade: Option<OnUpgrade>,
) -> Result<Response<Body>, LinkFailure> {
    let stream = match peer.open(header).await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(LinkFailure {
                reason: e.to_string(),
                unsent: Some(request),
                undelivered: false,
            })
        }
    };
    let failed = |e: &dyn std::fmt::Display| LinkFailure {
        reason: e.to_string(),
        unsent: None,
        undelivered: false,
    };
    let (reader, mut writer) = stream.into_split();
    let (parts, body) = request.into_parts();
    let mut flags = 0;
    if body.is_end_stream() {
        flags |= END_STREAM;
    }
    if upgrade.is_some() {
        flags |= UPGRADE;
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let mut buf = BytesMut::new();
    RequestHeadRef {
        version: parts.version,
        flags,
        method: &parts.method,
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        authority,
        headers: &parts.headers,
    }
    .encode(&mut buf);
    // Encoded: the head need not be kept in this future while it waits.
    drop(parts);
    writer.write_all(&buf).await.map_err(|e| failed(&e))?;

    let mut writer = Some(writer);
    if flags == 0 {
        if let Some(writer) = writer.take() {
            tokio::spawn(write_body(body, writer));
        }
    } else if upgrade.is_none() {
        if let Some(mut w) = writer.take() {
            let _ = w.shutdown().await;
        }
    }

    let mut reader = FrameReader::new(reader);
    let head = match reader.require().await {
        Ok(Frame::Response(head)) => head,
        Ok(_) => return Err(failed(&"peer answered with a frame out of order")),
        Err(e) => return Err(failed(&e)),
    };
    if head.flags & UNDELIVERED != 0 {
        // The far node could not hand the call to its service: say so to the retry layer,
        // which may send it elsewhere, rather than pass the far node's error on as an answer.
        let error = head
            .headers
            .get("ferry-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("an error");
        return Err(LinkFailure {
            reason: format!("the serving node answered {error}: its service never saw the call"),
            unsent: None,
            undelivered: true,
        });
    }
    let mut response = Response::builder()
        .status(head.status)
        .version(http::Version::HTTP_11)
        .body(body::empty())
        .map_err(|e| failed(&e))?;
    *response.headers_mut() = head.headers;

    if let (Some(upgrade), Some(writer)) = (upgrade, writer) {
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            tokio::spawn(async move {
                match upgrade.await {
                    Ok(client) => {
                        let (reader, leftover) = reader.into_parts();
                        splice(
                            TunnelStream::join(reader, writer),
                            leftover,
                            TokioIo::new(client),
                        )
                        .await
                    }
                    Err(e) => debug!(error = %e, "caller's upgrade failed"),
                }
            });
            return Ok(response);
        }
    }
    if head.flags & END_STREAM == 0 {
        *response.body_mut() = frames_body(reader);
    }
    Ok(response)
}

/// Serves one HTTP call that a peer sent over the tunnel, delivering it to the local
/// `service` (or answering an error when it is not here). A service that refuses the
/// connection is reported to `directory`, whose health check then looks at it at once.
pub(crate) async fn serve(
    stream: TunnelStream,
    service: &str,
    directory: &dyn Directory,
    upstreams: &Upstreams,
) -> StatusCode {
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
            *request.body_mut() = frames_body(reader);
        }
    }
    match upstreams.send(addr, protocol, request).await {
        Err(e) => {
            let flags = if e.connect {
                directory.unreachable(service, addr);
                UNDELIVERED
            } else {
                0
            };
            let error = ProxyError::UpstreamFailed {
                service: service.to_owned(),
                reason: e.reason,
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
                if let (Ok(upstream), Some(reader)) = (on_upgrade.await, reader) {
                    let (reader, leftover) = reader.into_parts();
                    splice(
                        TunnelStream::join(reader, writer),
                        leftover,
                        TokioIo::new(upstream),
                    )
                    .await;
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
    if writer.write_all(&head).await.is_err() {
        return status;
    }
    if end {
        let _ = writer.shutdown().await;
    } else {
        write_body(response.into_body(), writer).await;
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

/// Copies a body into frames as it arrives, never waiting for more than what is there: a
/// server-sent event or a gRPC message crosses as soon as it is produced. A body that fails
/// resets the stream so the far side sees the failure, not a shorter body.
pub(crate) async fn write_body(mut body: Body, mut writer: StreamWriter) {
    let result: Result<(), BoxError> = async {
        let mut head = BytesMut::with_capacity(5);
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(mut data) => {
                    while data.has_remaining() {
                        let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
                        head.clear();
                        head.put_u8(3);
                        head.put_u32(chunk.len() as u32);
                        writer.write_all(&head).await?;
                        writer.write_all(&chunk).await?;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let mut buf = BytesMut::new();
                        Frame::Trailers(trailers).encode(&mut buf);
                        writer.write_all(&buf).await?;
                        writer.shutdown().await?;
                        return Ok(());
                    }
                }
            }
        }
        let mut buf = BytesMut::new();
        Frame::End.encode(&mut buf);
        writer.write_all(&buf).await?;
        writer.shutdown().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "body cut short; resetting the stream");
        writer.reset();
    }
}

/// A body read from frames as they arrive.
pub(crate) fn frames_body(reader: FrameReader<StreamReader>) -> Body {
    let frames = stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        let item: Result<http_body::Frame<bytes::Bytes>, BoxError> = match reader.require().await {
            Ok(Frame::Data(data)) => return Some((Ok(http_body::Frame::data(data)), Some(reader))),
            Ok(Frame::Trailers(trailers)) => Ok(http_body::Frame::trailers(trailers)),
            Ok(Frame::End) => return None,
            Ok(_) => Err(Box::new(FrameError::Malformed(
                "unexpected frame in a body",
            ))),
            Err(e) => Err(Box::new(e)),
        };
        Some((item, None))
    });
    body::boxed(StreamBody::new(frames))
}

/// Pipes bytes both ways between a tunnel stream and a connection until both sides are done.
pub(crate) async fn splice<S>(tunnel: TunnelStream, leftover: BytesMut, other: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tunnel = Prefixed {
        prefix: leftover,
        inner: tunnel,
    };
    if let Err(e) = crate::splice::splice(tunnel, other).await {
        debug!(error = %e, "spliced connection ended with an error");
    }
}

/// A stream whose first reads return bytes that were read ahead of it.
struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
