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
    /// A key that is not 32 bytes of base64, or that does not match what was expected.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A key file that could not be read or written.
    #[error("key file {path}")]
    KeyFile {
        /// The file.
        path: String,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// A peer's `host:port` did not resolve.
    #[error("cannot resolve {address}")]
    Resolve {
        /// The `host:port` that did not resolve.
        address: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// A dial that could not even start (a bad address, the endpoint closing).
    #[error("cannot dial {address}")]
    Dial {
        /// Where the dial was aimed.
        address: SocketAddr,
        /// Why quinn would not start it.
        #[source]
        source: quinn::ConnectError,
    },
    /// A dial whose handshake failed: no answer, a refused key, a timeout.
    #[error("handshake with {address} failed")]
    Handshake {
        /// Where the dial was aimed.
        address: SocketAddr,
        /// How the connection ended.
        #[source]
        source: quinn::ConnectionError,
    },
    /// No way to reach a node a call needs.
    #[error("node {node} cannot be reached: {reason}")]
    Unreachable {
        /// The node's key.
        node: String,
        /// Why it cannot be reached.
        reason: &'static str,
    },
    /// The link's connection has closed, for the reason it keeps.
    #[error("link closed")]
    LinkClosed(#[source] quinn::ConnectionError),
    /// The link is closing because it sat idle; a new stream must go on a new link.
    #[error("link closed for idleness")]
    LinkIdle,
    /// Writing to a stream failed: the stream or its link ended.
    #[error("stream write failed")]
    Write(#[from] quinn::WriteError),
    /// A new link's peer did not say who it is in time.
    #[error("the peer sent no hello within {0:?}")]
    NoHello(Duration),
    /// The route table would not take a new link's peer as a neighbor.
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
        /// The address asked for.
        address: SocketAddr,
        /// What the socket said.
        #[source]
        source: io::Error,
    },
    /// Something the tunnel needs from its platform is missing: a runtime, a random source,
    /// a cipher.
    #[error("tunnel setup failed: {0}")]
    Setup(&'static str),
    /// Reading from a stream failed.
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
