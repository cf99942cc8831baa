//! Bodies as frames: copying an HTTP body onto a tunnel stream, and reading one off it.

use bytes::{Buf, BufMut, BytesMut};
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use ferry_tunnel::{StreamReader, StreamWriter};

use super::{Frame, FrameError, FrameReader, MAX_DATA_FRAME};
use crate::body::{self, Body, BoxError};

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
pub(crate) fn read_body(reader: FrameReader<StreamReader>) -> Body {
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
