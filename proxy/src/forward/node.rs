//! HTTP over a tunnel stream, the calling node's half: the request goes out as frames to the
//! node that fronts the service, and its response comes back the same way ([`crate::codec`]).
//! The serving half is in `inbound.rs`.

use bytes::BytesMut;
use futures_util::FutureExt;
use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use ferry_tunnel::{Chain, RemoteNode, StreamHeader, TunnelStream};

use crate::body::{self, Body};
use crate::codec::body::{read_body, write_body};
use crate::codec::{
    Frame, FrameReader, RequestHeadRef, END_STREAM, UNANSWERED, UNDELIVERED, UPGRADE,
};
use crate::error::TryError;
use crate::splice::{self, Prefixed};

/// Sends `request` to `node` and returns the response as it starts to arrive; its body
/// streams in as the node sends it. With `upgrade`, a `101` answer turns the stream into a
/// raw pipe between the caller and the far service.
pub(super) async fn send(
    node: &RemoteNode,
    header: &StreamHeader,
    request: Request<Body>,
    upgrade: Option<OnUpgrade>,
) -> Result<Response<Body>, TryError> {
    let stream = match node.open(header).await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(TryError::Unreached {
                reason: Chain(&e).to_string(),
                request: Some(Box::new(request)),
            })
        }
    };
    let failed = |e: &dyn std::fmt::Display| TryError::Unanswered {
        reason: e.to_string(),
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

    // The writer is kept only for an upgrade, whose stream becomes a raw pipe.
    let writer = if flags == 0 {
        // The head goes with what of the body is ready. A body that is all there (a unary
        // gRPC call, a short POST) is written here and now, with no task of its own; the
        // rest of a longer one streams from a task while the answer is read. A failed write
        // resets the stream, and reading the answer then fails.
        let mut write = Box::pin(write_body(body, writer, buf));
        if (&mut write).now_or_never().is_none() {
            tokio::spawn(write);
        }
        None
    } else {
        writer.write_all(&buf).await.map_err(|e| failed(&e))?;
        if upgrade.is_none() {
            let _ = writer.shutdown().await;
            None
        } else {
            Some(writer)
        }
    };

    let mut reader = FrameReader::new(reader);
    let head = match reader.require().await {
        Ok(Frame::Response(head)) => head,
        Ok(_) => return Err(failed(&"peer answered with a frame out of order")),
        Err(e) => return Err(failed(&e)),
    };
    if head.flags & (UNDELIVERED | UNANSWERED) != 0 {
        // The far node answered for its service, which never saw the call or never answered
        // it: say so to the retry layer, which may send it elsewhere, rather than pass the far
        // node's error on as an answer.
        let error = head
            .headers
            .get("ferry-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("an error");
        return Err(if head.flags & UNDELIVERED != 0 {
            TryError::unreached(format!(
                "the serving node answered {error}: its service never saw the call"
            ))
        } else {
            TryError::Unanswered {
                reason: format!("the serving node answered {error}: its service did not answer"),
            }
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
            let (reader, leftover) = reader.into_parts();
            let tunnel = Prefixed::new(leftover, TunnelStream::join(reader, writer));
            tokio::spawn(async move {
                let joined =
                    splice::join(splice::upgraded(upgrade), std::future::ready(Ok(tunnel)));
                if let Err(e) = joined.await {
                    debug!(error = %e, "upgraded connection ended with an error");
                }
            });
            return Ok(response);
        }
    }
    if head.flags & END_STREAM == 0 {
        *response.body_mut() = read_body(reader);
    }
    Ok(response)
}
