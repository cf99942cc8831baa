//! A guard against request smuggling on HTTP/1.1 connections.
//!
//! RFC 9112 §6.1 lets a server either reject a request carrying both `Content-Length` and
//! `Transfer-Encoding`, or frame it by `Transfer-Encoding` and close the connection afterwards.
//! hyper does the latter and removes `Content-Length` before the request reaches us, so the
//! conflict is invisible to the handler. Ferry rejects such requests with `400`, as a proxy
//! should (the next hop might frame the other way), so this guard watches the bytes hyper
//! reads, follows the request framing, and records the index of the first request on the
//! connection that carried both headers. The handler numbers requests in the same order.
//!
//! The guard only follows framing: it skips bodies by length and chunk sizes, never copies
//! them, and gives up (stops watching) on anything it does not understand — hyper then answers
//! that input itself.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head or chunk-size line the guard follows; hyper answers longer heads with 431.
const MAX_LINE: usize = 64 * 1024 + 4;
/// The most headers the guard parses in one head (hyper's own limit is 100).
const MAX_HEADERS: usize = 128;

/// Which request, counting from 0, carried conflicting framing; `u64::MAX` for none.
#[derive(Clone, Debug)]
pub(crate) struct Conflict(Arc<AtomicU64>);

impl Conflict {
    fn new() -> Conflict {
        Conflict(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// Whether request number `index` on this connection carried both framing headers.
    pub(crate) fn is(&self, index: u64) -> bool {
        self.0.load(Ordering::Acquire) == index
    }
}

#[derive(Debug, PartialEq)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    /// Stopped watching: an upgrade, a CONNECT, HTTP/2, a conflict or input hyper will refuse.
    Off,
}

/// Follows the framing of the requests on one connection.
#[derive(Debug)]
struct Framing {
    state: State,
    pending: Vec<u8>,
    requests: u64,
    conflict: Conflict,
}

impl Framing {
    fn new(conflict: Conflict) -> Framing {
        Framing {
            state: State::Head,
            pending: Vec::new(),
            requests: 0,
            conflict,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.state != State::Off {
            data = match self.state {
                State::Body(n) | State::ChunkData(n) => {
                    let take = (n as usize).min(data.len());
                    let left = n - take as u64;
                    self.state = match (&self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEnd(2),
                        _ => State::ChunkData(left),
                    };
                    &data[take..]
                }
                State::ChunkEnd(n) => {
                    let take = (n as usize).min(data.len());
                    self.state = if take == n as usize {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(n - take as u8)
                    };
                    &data[take..]
                }
                State::Head | State::ChunkSize | State::Trailers => self.line_based(data),
                State::Off => return,
            };
        }
    }

    /// Finds the end of the current head, chunk-size line or trailer section, then acts on
    /// it; returns what follows it. Bytes are buffered only when a unit spans reads.
    fn line_based<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.pending.is_empty() {
            if let Some(end) = self.unit_end(data, 0) {
                self.state = self.act(&data[..end]);
                return &data[end..];
            }
            self.pending.extend_from_slice(data);
        } else {
            let start = self.pending.len();
            self.pending.extend_from_slice(data);
            let from = start.saturating_sub(3);
            if let Some(end) = self.unit_end(&self.pending, from) {
                let unit = std::mem::take(&mut self.pending);
                self.state = self.act(&unit[..end]);
                return &data[end - start..];
            }
        }
        if self.pending.len() > MAX_LINE {
            self.state = State::Off;
        }
        &[]
    }

    /// Where the unit in `bytes` ends, searching from `from` on.
    fn unit_end(&self, bytes: &[u8], from: usize) -> Option<usize> {
        // An empty trailer section is just CRLF.
        if self.state == State::Trailers && bytes.starts_with(b"\r\n") {
            return Some(2);
        }
        let terminator: &[u8] = if self.state == State::ChunkSize {
            b"\r\n"
        } else {
            b"\r\n\r\n"
        };
        find(&bytes[from..], terminator).map(|i| from + i + terminator.len())
    }

    fn act(&mut self, unit: &[u8]) -> State {
        match self.state {
            State::Head => self.head(unit),
            State::ChunkSize => chunk_size(unit),
            _ => State::Head,
        }
    }

    fn head(&mut self, unit: &[u8]) -> State {
        // Blank lines before a request line are allowed (RFC 9112 §2.2).
        let unit = trim_leading_crlf(unit);
        if unit.is_empty() {
            return State::Head;
        }
        // Left uninitialised: this runs on every request, and zeroing the slots cost more
        // than parsing a short head.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        if !matches!(
            request.parse_with_uninit_headers(unit, &mut headers),
            Ok(httparse::Status::Complete(_))
        ) {
            return State::Off;
        }
        let index = self.requests;
        self.requests += 1;
        let mut length = None;
        let mut chunked = None;
        let mut upgrade = request.method == Some("CONNECT");
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .or(Some(u64::MAX));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = Some(h.value.to_ascii_lowercase().ends_with(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        match (length, chunked) {
            (Some(_), Some(_)) => {
                self.conflict.0.store(index, Ordering::Release);
                State::Off
            }
            _ if upgrade => State::Off,
            (_, Some(true)) => State::ChunkSize,
            (_, Some(false)) | (Some(u64::MAX), _) => State::Off,
            (Some(0) | None, None) => State::Head,
            (Some(n), None) => State::Body(n),
        }
    }
}

fn chunk_size(line: &[u8]) -> State {
    let digits = line
        .split(|b| *b == b';' || *b == b'\r')
        .next()
        .unwrap_or_default();
    let parsed = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
    match parsed {
        Some(0) => State::Trailers,
        Some(n) => State::ChunkData(n),
        None => State::Off,
    }
}

fn trim_leading_crlf(mut unit: &[u8]) -> &[u8] {
    while let Some(rest) = unit.strip_prefix(b"\r\n") {
        unit = rest;
    }
    unit
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// A connection whose incoming bytes pass through [`Framing`] on their way to hyper.
pub(crate) struct Guarded<S> {
    inner: S,
    framing: Framing,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S) -> (Guarded<S>, Conflict) {
        let conflict = Conflict::new();
        let framing = Framing::new(conflict.clone());
        (Guarded { inner, framing }, conflict)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            if this.framing.state != State::Off {
                this.framing.feed(&buf.filled()[before..]);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs the guard over `data` in pieces whose size the first byte chooses.
pub(crate) fn fuzz(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut framing = Framing::new(Conflict::new());
    for piece in rest.chunks(step.max(1) as usize) {
        framing.feed(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and returns (requests seen, conflicting index).
    fn follow(input: &[u8], step: usize) -> (u64, Option<u64>) {
        let conflict = Conflict::new();
        let mut framing = Framing::new(conflict.clone());
        for piece in input.chunks(step) {
            framing.feed(piece);
        }
        let index = conflict.0.load(Ordering::Relaxed);
        (framing.requests, (index != u64::MAX).then_some(index))
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn the_conflicting_request_is_found_behind_bodies_of_both_kinds_at_any_split() {
        for step in [1, 2, 3, 7, 64, PIPELINE.len()] {
            assert_eq!(follow(PIPELINE, step), (4, Some(3)), "step {step}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_a_conflicting_request_are_not_one() {
        let inner = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            inner.len()
        )
        .into_bytes();
        input.extend_from_slice(inner);
        assert_eq!(follow(&input, 5), (1, None));
    }

    const ALPHABET: &[u8] =
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n0a;\r\n";

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly header-ish bytes, so the parser gets past the first line.
                    ALPHABET[(x as usize + i) % ALPHABET.len()]
                })
                .collect();
            fuzz(&bytes);
        }
    }

    #[test]
    fn upgrades_and_http2_stop_the_guard() {
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(follow(ws, 9), (1, None));
        assert_eq!(follow(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 4), (0, None));
    }
}
