//! The codec of HTTP over a tunnel stream: one HTTP exchange as frames.
//!
//! A tunnel stream is a plain byte pipe; this module frames one HTTP exchange on it. The
//! calling node writes with `forward/node.rs`, the serving node answers with `inbound.rs`;
//! both copy bodies with [`body`]. Both
//! directions carry a head, then body frames, then either trailers or an end marker:
//!
//! ```text
//! frame   := type u8 | length u32 | payload
//! 1 REQUEST   version u8 | flags u8 | method u8+ | path u16+ | authority u16+ | headers
//! 2 RESPONSE  version u8 | flags u8 | status u16 | headers
//! 3 DATA      body bytes
//! 4 TRAILERS  headers       (ends the body)
//! 5 END                     (ends the body)
//! headers := count u16, then name u16+ | value u16+ per header
//! ```
//!
//! Flag 1 (`END_STREAM`) says the message has no body frames at all. Flag 2 (`UPGRADE`) on a
//! request says that after a `101` response (or `200` to a CONNECT) the stream carries raw
//! bytes both ways. Flag 4 (`UNDELIVERED`) on a response says the serving node answered in its
//! service's place, which never saw the request; flag 8 (`UNANSWERED`), that the service took
//! the request and gave no answer (its connection broke: the workload died mid-call). Either
//! way the calling node treats the try as failed, and its retry policy decides what is safe.
//! Trailers are what gRPC needs and what HTTP/1.1 between nodes could not carry; frames keep
//! HTTP/2's semantics without its connection-level state.

pub(crate) mod body;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

use ferry_tunnel::wire::{put_bytes16, put_bytes8, Reader};

/// Body data is cut into frames of at most this size.
pub const MAX_DATA_FRAME: usize = 64 * 1024;
/// Heads and trailers larger than this are refused (the listeners cap headers at 64 KiB).
pub const MAX_HEAD_FRAME: usize = 256 * 1024;

/// On a head: the message has no body frames at all.
pub const END_STREAM: u8 = 1;
/// On a request head: after a `101` answer (or a `200` to a CONNECT) the stream carries raw
/// bytes both ways.
pub const UPGRADE: u8 = 2;
/// On a response head: the serving node answered for its service, which never saw the
/// request (it could not connect, or the service is no longer there). The caller may send
/// the request elsewhere.
pub const UNDELIVERED: u8 = 4;
/// On a response head: the serving node answered for its service, which took the request but
/// gave no answer. The caller may repeat the call elsewhere if it is idempotent.
pub const UNANSWERED: u8 = 8;

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const DATA: u8 = 3;
const TRAILERS: u8 = 4;
const END: u8 = 5;

/// A request head as it crosses the tunnel.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead {
    /// The caller's HTTP version; the serving node speaks what its service needs.
    pub version: Version,
    /// [`END_STREAM`], [`UPGRADE`].
    pub flags: u8,
    /// The request's method.
    pub method: Method,
    /// Path and query, as sent on an origin-form request line.
    pub path: String,
    /// The `:authority` or `Host` the caller sent, for the service's virtual hosts.
    pub authority: String,
    /// The end-to-end headers.
    pub headers: HeaderMap,
}

/// A response head as it crosses the tunnel.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead {
    /// The version the service answered in.
    pub version: Version,
    /// [`END_STREAM`], [`UNDELIVERED`], [`UNANSWERED`].
    pub flags: u8,
    /// The answer's status.
    pub status: StatusCode,
    /// The end-to-end headers.
    pub headers: HeaderMap,
}

/// One frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A request's head: the first frame the calling node sends.
    Request(RequestHead),
    /// A response's head: the first frame the serving node sends.
    Response(ResponseHead),
    /// A piece of the body.
    Data(Bytes),
    /// The trailers, which end the body.
    Trailers(HeaderMap),
    /// The end of a body without trailers.
    End,
}

/// Why bytes could not be read as a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Bytes that are not a frame.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The stream ended in the middle of a message.
    #[error("stream ended in the middle of a message")]
    Truncated,
    /// Reading the stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<ferry_tunnel::Error> for FrameError {
    fn from(e: ferry_tunnel::Error) -> Self {
        match e {
            ferry_tunnel::Error::Malformed(m) => FrameError::Malformed(m),
            _ => FrameError::Malformed("bad field"),
        }
    }
}

fn version_code(v: Version) -> u8 {
    match v {
        Version::HTTP_10 => 0,
        Version::HTTP_2 => 2,
        _ => 1,
    }
}

fn version_from(code: u8) -> Result<Version, FrameError> {
    match code {
        0 => Ok(Version::HTTP_10),
        1 => Ok(Version::HTTP_11),
        2 => Ok(Version::HTTP_2),
        _ => Err(FrameError::Malformed("unknown HTTP version")),
    }
}

/// What [`put_headers`] writes, in bytes (at most: it stops at `u16::MAX` headers).
fn headers_len(headers: &HeaderMap) -> usize {
    2 + headers
        .iter()
        .map(|(name, value)| 4 + name.as_str().len() + value.len())
        .sum::<usize>()
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    let count = headers.len().min(u16::MAX as usize);
    out.put_u16(count as u16);
    for (name, value) in headers.iter().take(count) {
        put_bytes16(out, name.as_str().as_bytes());
        put_bytes16(out, value.as_bytes());
    }
}

/// Reads headers from `r`, which reads `payload`: values share `payload`'s memory, not copy it.
fn get_headers(r: &mut Reader<'_>, payload: &Bytes) -> Result<HeaderMap, FrameError> {
    let count = r.u16()? as usize;
    // Each header takes at least four bytes: refuse counts the frame cannot hold.
    if count * 4 > r.remaining() {
        return Err(FrameError::Malformed("header count exceeds frame"));
    }
    // Room for one more: the next hop usually adds a header (`host`, `date`), and a full map
    // would be reallocated whole for it.
    let mut headers = HeaderMap::with_capacity(count + 1);
    for _ in 0..count {
        let name = HeaderName::from_bytes(r.bytes16()?)
            .map_err(|_| FrameError::Malformed("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(payload.slice_ref(r.bytes16()?))
            .map_err(|_| FrameError::Malformed("bad header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Starts a frame and returns where its length goes, to be filled by [`finish`].
fn begin(out: &mut BytesMut, kind: u8) -> usize {
    out.put_u8(kind);
    let at = out.len();
    out.put_u32(0);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The five bytes before a DATA frame's `len` bytes of body, for writers that send a large
/// chunk as it is rather than copy it into a frame.
pub(crate) fn data_head(len: usize) -> [u8; 5] {
    let mut head = [DATA, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(len as u32).to_be_bytes());
    head
}

/// A request head, encoded from borrowed parts so that sending one copies nothing twice.
pub struct RequestHeadRef<'a> {
    /// The caller's HTTP version; the serving node speaks what its service needs.
    pub version: Version,
    /// [`END_STREAM`], [`UPGRADE`].
    pub flags: u8,
    /// See [`RequestHead::method`].
    pub method: &'a Method,
    /// See [`RequestHead::path`].
    pub path: &'a str,
    /// See [`RequestHead::authority`].
    pub authority: &'a str,
    /// See [`RequestHead::headers`].
    pub headers: &'a HeaderMap,
}

impl RequestHeadRef<'_> {
    /// Appends the frame to `out`, growing it once, by exactly the frame's size.
    pub fn encode(&self, out: &mut BytesMut) {
        // Type and length, version and flags, then method, path and authority behind their
        // lengths (u8, u16, u16), then the headers.
        out.reserve(
            5 + 2
                + (1 + self.method.as_str().len())
                + (2 + self.path.len())
                + (2 + self.authority.len())
                + headers_len(self.headers),
        );
        let at = begin(out, REQUEST);
        out.put_u8(version_code(self.version));
        out.put_u8(self.flags);
        put_bytes8(out, self.method.as_str().as_bytes());
        put_bytes16(out, self.path.as_bytes());
        put_bytes16(out, self.authority.as_bytes());
        put_headers(out, self.headers);
        finish(out, at);
    }
}

/// A response head, encoded from borrowed parts: the response keeps its headers.
pub struct ResponseHeadRef<'a> {
    /// See [`ResponseHead::version`].
    pub version: Version,
    /// See [`ResponseHead::flags`].
    pub flags: u8,
    /// See [`ResponseHead::status`].
    pub status: StatusCode,
    /// See [`ResponseHead::headers`].
    pub headers: &'a HeaderMap,
}

impl ResponseHeadRef<'_> {
    /// Appends the frame to `out`, growing it once, by exactly the frame's size.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(5 + 4 + headers_len(self.headers));
        let at = begin(out, RESPONSE);
        out.put_u8(version_code(self.version));
        out.put_u8(self.flags);
        out.put_u16(self.status.as_u16());
        put_headers(out, self.headers);
        finish(out, at);
    }
}

impl Frame {
    /// Appends the frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Request(h) => RequestHeadRef {
                version: h.version,
                flags: h.flags,
                method: &h.method,
                path: &h.path,
                authority: &h.authority,
                headers: &h.headers,
            }
            .encode(out),
            Frame::Response(h) => ResponseHeadRef {
                version: h.version,
                flags: h.flags,
                status: h.status,
                headers: &h.headers,
            }
            .encode(out),
            Frame::Data(bytes) => {
                out.put_slice(&data_head(bytes.len()));
                out.put_slice(bytes);
            }
            Frame::Trailers(headers) => {
                out.reserve(5 + headers_len(headers));
                let at = begin(out, TRAILERS);
                put_headers(out, headers);
                finish(out, at);
            }
            Frame::End => {
                out.put_u8(END);
                out.put_u32(0);
            }
        }
    }

    /// Takes one whole frame off the front of `buf`, or returns `None` if more bytes are
    /// needed. Never panics and never trusts a length before checking it against the limits.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        let limit = match kind {
            DATA => MAX_DATA_FRAME,
            REQUEST | RESPONSE | TRAILERS => MAX_HEAD_FRAME,
            END => 0,
            _ => return Err(FrameError::Malformed("unknown frame type")),
        };
        if len > limit {
            return Err(FrameError::Malformed("frame too long"));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        buf.advance(5);
        let payload = buf.split_to(len).freeze();
        let frame = match kind {
            DATA => Frame::Data(payload),
            END => Frame::End,
            _ => {
                let mut r = Reader::new(&payload);
                let frame = match kind {
                    REQUEST => Frame::Request(decode_request(&mut r, &payload)?),
                    RESPONSE => Frame::Response(decode_response(&mut r, &payload)?),
                    _ => Frame::Trailers(get_headers(&mut r, &payload)?),
                };
                r.finish()?;
                frame
            }
        };
        Ok(Some(frame))
    }
}

fn decode_request(r: &mut Reader<'_>, payload: &Bytes) -> Result<RequestHead, FrameError> {
    let version = version_from(r.u8()?)?;
    let flags = r.u8()?;
    let method =
        Method::from_bytes(r.bytes8()?).map_err(|_| FrameError::Malformed("bad method"))?;
    let path = std::str::from_utf8(r.bytes16()?)
        .map_err(|_| FrameError::Malformed("path not UTF-8"))?
        .to_owned();
    let authority = std::str::from_utf8(r.bytes16()?)
        .map_err(|_| FrameError::Malformed("authority not UTF-8"))?
        .to_owned();
    let headers = get_headers(r, payload)?;
    Ok(RequestHead {
        version,
        flags,
        method,
        path,
        authority,
        headers,
    })
}

fn decode_response(r: &mut Reader<'_>, payload: &Bytes) -> Result<ResponseHead, FrameError> {
    let version = version_from(r.u8()?)?;
    let flags = r.u8()?;
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| FrameError::Malformed("bad status"))?;
    let headers = get_headers(r, payload)?;
    Ok(ResponseHead {
        version,
        flags,
        status,
        headers,
    })
}

/// Reads frames from a stream, keeping bytes that arrived past the last frame.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `io`.
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The next frame; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The next frame, where the end of the stream would cut a message short.
    pub async fn require(&mut self) -> Result<Frame, FrameError> {
        self.next().await?.ok_or(FrameError::Truncated)
    }

    /// Gives back the stream and the bytes read past the last frame, for raw (upgraded) use.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }
}

#[cfg(test)]
mod tests;
