//! The tunnel's one error type.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::table::Refusal;

/// Everything that can go wrong in the tunnel layer. A variant that has a cause keeps it as
/// its [`source`](std::error::Error::source): print the whole chain with [`Chain`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes from the network that do not decode.
    #[error("malformed tunnel data: {0}")]
    Malformed(&'static str),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A peer's `host:port` did not resolve.
    #[error("cannot resolve {address}")]
    Resolve {
        address: String,
        #[source]
        source: io::Error,
    },
    /// A dial that could not even start (a bad address, the endpoint closing).
    #[error("cannot dial {address}")]
    Dial {
        address: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    /// A dial whose handshake failed: no answer, a refused key, a timeout.
    #[error("handshake with {address} failed")]
    Handshake {
        address: SocketAddr,
        #[source]
        source: quinn::ConnectionError,
    },
    /// No way to reach a node a call needs.
    #[error("node {node} cannot be reached: {reason}")]
    Unreachable { node: String, reason: &'static str },
    #[error("link closed")]
    LinkClosed(#[source] quinn::ConnectionError),
    /// The link is closing because it sat idle; a new stream must go on a new link.
    #[error("link closed for idleness")]
    LinkIdle,
    #[error("stream write failed")]
    Write(#[from] quinn::WriteError),
    #[error("the peer sent no hello within {0:?}")]
    NoHello(Duration),
    #[error("the peer's hello was refused: {0}")]
    HelloRefused(Refusal),
    /// The peer read updates so slowly that their queue filled; the link is cut and starts
    /// afresh when it is dialed again.
    #[error("the peer's update queue overflowed")]
    UpdateOverflow,
    /// A datagram that was not sent; datagrams are unreliable, so callers usually drop it.
    #[error("datagram not sent")]
    Datagram(#[source] quinn::SendDatagramError),
    /// The tunnel's socket could not be bound or its endpoint started.
    #[error("cannot start the tunnel on udp {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("tunnel setup failed: {0}")]
    Setup(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The outcome of a dial that several calls waited for together.
    #[error(transparent)]
    Shared(Arc<Error>),
}

/// An error and its causes on one line, `outer: cause: root`: what logs and error answers
/// show, since an error's own message leaves its causes out.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
