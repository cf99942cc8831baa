use std::io;

/// Everything that can go wrong in the tunnel layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed tunnel data: {0}")]
    Malformed(&'static str),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("key file {path}: {source}")]
    KeyFile { path: String, source: io::Error },
    #[error("could not connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("link closed: {0}")]
    LinkClosed(String),
    /// A datagram that was not sent; datagrams are unreliable, so callers usually drop it.
    #[error("datagram not sent: {0}")]
    Datagram(String),
    #[error("tunnel setup failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}
