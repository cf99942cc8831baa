//! Keeping a request's body for another try, as linkerd2-proxy's `ReplayBody` does: the first
//! try's body is passed on chunk by chunk while each chunk (a `Bytes`, so a reference, not a
//! copy) is also kept, up to [`MAX_REPLAY`] bytes. Once the first try has read the body to its
//! end within that, a later try can send it again whole. A larger body streams as before and
//! cannot be sent twice. What is kept goes with the call, when the response starts.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{self, Body, BoxError};

/// The largest body kept for another try: linkerd2-proxy's limit.
pub(crate) const MAX_REPLAY: usize = 64 * 1024;

/// A body being kept as it is read.
pub(crate) struct Replay {
    kept: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
    state: State,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// The first try is still reading it.
    #[default]
    Reading,
    /// Read to its end, all of it kept.
    Whole,
    /// Larger than [`MAX_REPLAY`], or it failed: not kept.
    Given,
}

fn lock(kept: &Mutex<Kept>) -> MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replay {
    /// `body`, wrapped so that what it yields is kept, with the handle to send it again; or
    /// `body` as it was and `None` when it says it is larger than [`MAX_REPLAY`].
    pub(crate) fn record(body: Body) -> (Body, Option<Replay>) {
        if body.size_hint().lower() > MAX_REPLAY as u64 {
            return (body, None);
        }
        let kept = Arc::new(Mutex::new(Kept::default()));
        let recording = Recording {
            inner: body,
            kept: kept.clone(),
        };
        (recording.boxed_unsync(), Some(Replay { kept }))
    }

    /// Whether the body was read to its end and kept whole, so it can be sent again.
    pub(crate) fn whole(&self) -> bool {
        lock(&self.kept).state == State::Whole
    }

    /// The body again, if it was kept whole.
    pub(crate) fn body(&self) -> Option<Body> {
        let kept = lock(&self.kept);
        if kept.state != State::Whole {
            return None;
        }
        let data = match kept.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(kept.len);
                many.iter()
                    .for_each(|chunk| joined.extend_from_slice(chunk));
                joined.freeze()
            }
        };
        Some(match kept.trailers.clone() {
            None => body::full(data),
            Some(trailers) => Again {
                data: Some(data),
                trailers: Some(trailers),
            }
            .boxed_unsync(),
        })
    }
}

/// The first try's body: passes each frame on, and keeps it.
struct Recording {
    inner: Body,
    kept: Arc<Mutex<Kept>>,
}

impl http_body::Body for Recording {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut kept = lock(&self.kept);
        if kept.state != State::Reading {
            return polled;
        }
        match &polled {
            Poll::Pending => {}
            Poll::Ready(None) => kept.state = State::Whole,
            Poll::Ready(Some(Err(_))) => give_up(&mut kept),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    kept.len += data.len();
                    if kept.len > MAX_REPLAY {
                        give_up(&mut kept);
                    } else {
                        kept.chunks.push(data.clone());
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    kept.trailers = Some(trailers.clone());
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn give_up(kept: &mut Kept) {
    kept.state = State::Given;
    kept.chunks = Vec::new();
    kept.trailers = None;
}

/// A kept body with trailers, sent again: the data, then the trailers.
struct Again {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Again {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty) && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: Vec<Result<Frame<Bytes>, BoxError>>) -> Body {
        StreamBody::new(futures_util::stream::iter(parts)).boxed_unsync()
    }

    async fn read(body: Body) -> (Bytes, Option<HeaderMap>) {
        let collected = body.collect().await.expect("a whole body");
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_small_body_read_to_its_end_is_sent_again_whole_with_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-timeout", "1S".parse().expect("value"));
        let (first, replay) = Replay::record(chunks(vec![
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
            Ok(Frame::trailers(trailers.clone())),
        ]));
        let replay = replay.expect("kept");
        assert!(replay.body().is_none(), "not before the first try read it");
        assert_eq!(
            read(first).await,
            (Bytes::from("hello world"), Some(trailers.clone()))
        );
        assert!(replay.whole());
        for _ in 0..2 {
            let again = replay.body().expect("whole");
            assert_eq!(
                read(again).await,
                (Bytes::from("hello world"), Some(trailers.clone()))
            );
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_streams_on_and_is_not_kept() {
        let big = Bytes::from(vec![7u8; MAX_REPLAY]);
        let (first, replay) = Replay::record(chunks(vec![
            Ok(Frame::data(big.clone())),
            Ok(Frame::data(Bytes::from_static(b"!"))),
        ]));
        let replay = replay.expect("no size said: kept while it fits");
        assert_eq!(read(first).await.0.len(), MAX_REPLAY + 1);
        assert!(!replay.whole() && replay.body().is_none());

        let (_, replay) = Replay::record(body::full(vec![0u8; MAX_REPLAY + 1]));
        assert!(replay.is_none(), "its size said too big: not even wrapped");
    }

    #[tokio::test]
    async fn a_body_that_failed_or_was_not_read_to_its_end_is_not_sent_again() {
        let (first, replay) = Replay::record(chunks(vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("reset".into()),
        ]));
        assert!(first.collect().await.is_err());
        assert!(replay.expect("kept").body().is_none());

        let (mut first, replay) = Replay::record(chunks(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]));
        let _ = first.frame().await;
        assert!(replay.expect("kept").body().is_none(), "half read");
    }
}
