//! Bodies as frames: copying an HTTP body onto a tunnel stream, and reading one off it.

use bytes::{Buf, BytesMut};
use futures_util::{stream, FutureExt};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use ferry_tunnel::{StreamReader, StreamWriter};

use super::{data_head, Frame, FrameError, FrameReader, MAX_DATA_FRAME};
use crate::body::{self, Body, BoxError};

/// Data chunks up to this size are gathered with the frames around them into one write;
/// larger ones go out as they are, without a copy into the gathering buffer.
const GATHER: usize = 16 * 1024;

/// Copies a body into frames as it arrives, never waiting for more than what is there: a
/// server-sent event or a gRPC message crosses as soon as it is produced. `pending` holds
/// frames already encoded (the message's head): they go out with whatever of the body is
/// ready at once, so a short body leaves with its head in one write. Each write to a tunnel
/// stream takes the link's lock and wakes its driver, so fewer writes cost less. A body that
/// fails resets the stream so the far side sees the failure, not a shorter body.
pub(crate) async fn write_body(mut body: Body, mut writer: StreamWriter, mut pending: BytesMut) {
    let result: Result<(), BoxError> = async {
        loop {
            let next = if pending.is_empty() {
                body.frame().await
            } else {
                match body.frame().now_or_never() {
                    Some(next) => next,
                    None => {
                        // Nothing more ready: send what is gathered, then wait.
                        flush(&mut writer, &mut pending).await?;
                        continue;
                    }
                }
            };
            let Some(frame) = next else {
                Frame::End.encode(&mut pending);
                writer.write_all(&pending).await?;
                writer.shutdown().await?;
                return Ok(());
            };
            match frame?.into_data() {
                Ok(data) if data.len() <= GATHER => {
                    Frame::Data(data).encode(&mut pending);
                    if pending.len() >= MAX_DATA_FRAME {
                        flush(&mut writer, &mut pending).await?;
                    }
                }
                Ok(mut data) => {
                    if !pending.is_empty() {
                        flush(&mut writer, &mut pending).await?;
                    }
                    while data.has_remaining() {
                        let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
                        writer.write_all(&data_head(chunk.len())).await?;
                        writer.write_all(&chunk).await?;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        Frame::Trailers(trailers).encode(&mut pending);
                        writer.write_all(&pending).await?;
                        writer.shutdown().await?;
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "body cut short; resetting the stream");
        writer.reset();
    }
}

/// Writes the gathered frames and empties the buffer for more.
async fn flush(writer: &mut StreamWriter, pending: &mut BytesMut) -> std::io::Result<()> {
    writer.write_all(pending).await?;
    pending.clear();
    Ok(())
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
