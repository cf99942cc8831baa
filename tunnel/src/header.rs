//! The header that opens every tunnel stream: what the stream is for.
//!
//! Layout (version 1), kept compact because it precedes every proxied request:
//!
//! ```text
//! u8  version (1)
//! u8  kind        1 = HTTP messages, 2 = opaque TCP bytes
//! u8  protocol    1 = http, 2 = grpc, 3 = tcp (what the caller expects the service to speak)
//! u8+ service     length-prefixed UTF-8
//! u8+ datacenter  length-prefixed UTF-8, empty = the receiving node's own
//! ```
//!
//! The source identity is not in the header: the link it arrives on already authenticates it.

use bytes::{BufMut, BytesMut};

use crate::wire::{put_bytes8, Reader};
use crate::Error;

const VERSION: u8 = 1;

/// The largest header [`StreamHeader::decode`] accepts; a reader never buffers more.
pub(crate) const MAX_HEADER_LEN: usize = 4 + 2 * 255;

/// What a tunnel stream carries after its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Framed HTTP messages (see `ferry-proxy`).
    Http,
    /// Opaque bytes to and from a TCP service.
    Tcp,
}

/// The protocol a service speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 and h2c.
    Http,
    /// gRPC: HTTP/2 only.
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl Protocol {
    /// Its name in configs and the admin API: `http`, `grpc` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Grpc => 2,
            Protocol::Tcp => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Result<Protocol, Error> {
        match code {
            1 => Ok(Protocol::Http),
            2 => Ok(Protocol::Grpc),
            3 => Ok(Protocol::Tcp),
            _ => Err(Error::Malformed("unknown protocol")),
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            "tcp" => Ok(Protocol::Tcp),
            other => Err(format!(
                "unknown protocol {other:?} (want http, grpc or tcp)"
            )),
        }
    }
}

/// The first bytes of every tunnel stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// What the stream carries: one HTTP exchange, or a TCP connection's bytes.
    pub kind: StreamKind,
    /// What the far node's service speaks.
    pub protocol: Protocol,
    /// The service the far node delivers the stream to.
    pub service: String,
    /// The datacenter the call was for: the one it was pinned to, else the endpoint's.
    pub datacenter: String,
}

impl StreamHeader {
    /// Appends the header, prefixed by its length, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::with_capacity(4 + self.service.len() + self.datacenter.len());
        body.put_u8(VERSION);
        body.put_u8(match self.kind {
            StreamKind::Http => 1,
            StreamKind::Tcp => 2,
        });
        body.put_u8(self.protocol.code());
        put_bytes8(&mut body, self.service.as_bytes());
        put_bytes8(&mut body, self.datacenter.as_bytes());
        out.put_u16(body.len() as u16);
        out.put_slice(&body);
    }

    /// Decodes a header body (without its length prefix).
    pub fn decode(buf: &[u8]) -> Result<StreamHeader, Error> {
        if buf.len() > MAX_HEADER_LEN {
            return Err(Error::Malformed("stream header too long"));
        }
        let mut r = Reader::new(buf);
        if r.u8()? != VERSION {
            return Err(Error::Malformed("unknown stream header version"));
        }
        let kind = match r.u8()? {
            1 => StreamKind::Http,
            2 => StreamKind::Tcp,
            _ => return Err(Error::Malformed("unknown stream kind")),
        };
        let protocol = Protocol::from_code(r.u8()?)?;
        let service = r.str8()?.to_owned();
        let datacenter = r.str8()?.to_owned();
        r.finish()?;
        if service.is_empty() {
            return Err(Error::Malformed("empty service name"));
        }
        Ok(StreamHeader {
            kind,
            protocol,
            service,
            datacenter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> StreamHeader {
        StreamHeader {
            kind: StreamKind::Http,
            protocol: Protocol::Grpc,
            service: "greeter".into(),
            datacenter: "eu-west".into(),
        }
    }

    #[test]
    fn header_round_trips() {
        let mut out = BytesMut::new();
        header().encode(&mut out);
        let len = u16::from_be_bytes([out[0], out[1]]) as usize;
        assert_eq!(len, out.len() - 2);
        assert_eq!(StreamHeader::decode(&out[2..]).expect("decodes"), header());
    }

    #[test]
    fn every_truncation_is_refused() {
        let mut out = BytesMut::new();
        header().encode(&mut out);
        for cut in 0..out.len() - 2 {
            assert!(
                StreamHeader::decode(&out[2..2 + cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in crate::wire::garbage(20_000, 40) {
            let _ = StreamHeader::decode(&bytes);
        }
    }

    #[test]
    fn unknown_versions_kinds_and_protocols_are_refused() {
        for (i, bad) in [(0, 9u8), (1, 7), (2, 0)] {
            let mut out = BytesMut::new();
            header().encode(&mut out);
            out[2 + i] = bad;
            assert!(StreamHeader::decode(&out[2..]).is_err());
        }
    }
}
