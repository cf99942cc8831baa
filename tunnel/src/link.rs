//! A link: the one QUIC connection between two nodes, and the streams it carries.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::header::{StreamHeader, MAX_HEADER_LEN};
use crate::identity::PublicKey;
use crate::Error;

/// A connection to a peer node. Cheap to clone; all clones share the connection.
#[derive(Clone, Debug)]
pub struct Link {
    conn: quinn::Connection,
}

impl Link {
    pub(crate) fn new(conn: quinn::Connection) -> Link {
        Link { conn }
    }

    /// Opens a stream to the peer for one request or TCP connection.
    pub async fn open(&self, header: &StreamHeader) -> Result<TunnelStream, Error> {
        let (mut send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        let mut buf = BytesMut::with_capacity(64);
        header.encode(&mut buf);
        send.write_all(&buf)
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        Ok(TunnelStream { send, recv })
    }

    /// Waits for the peer to open a stream. Reading its header is left to
    /// [`TunnelStream::read_header`] so that one slow stream cannot hold up the others.
    pub(crate) async fn accept(&self) -> Result<TunnelStream, Error> {
        let (send, recv) = self
            .conn
            .accept_bi()
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        Ok(TunnelStream { send, recv })
    }

    /// The peer's key, as the handshake proved it.
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.conn
            .peer_identity()
            .and_then(|identity| identity.downcast::<PublicKey>().ok())
            .map(|key| *key)
    }

    pub(crate) fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends a relay datagram to the peer, unreliably: it may be lost like a UDP packet, and a
    /// full send buffer drops the oldest queued datagrams to make room (quinn's choice, which
    /// tells the inner sessions of congestion sooner than dropping the newest would). An error
    /// means this one was not sent at all (too large for the path, datagrams disabled, link
    /// closed); a relaying caller drops the packet and goes on.
    pub(crate) fn send_datagram(&self, datagram: Bytes) -> Result<(), Error> {
        use quinn::SendDatagramError;
        self.conn.send_datagram(datagram).map_err(|e| match e {
            SendDatagramError::ConnectionLost(e) => Error::LinkClosed(e.to_string()),
            other => Error::Datagram(other.to_string()),
        })
    }

    /// Waits for the next datagram from the peer; an error once the link has closed.
    pub(crate) async fn read_datagram(&self) -> Result<Bytes, Error> {
        self.conn
            .read_datagram()
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))
    }

    /// The latest round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Whether the connection has closed (for any reason).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// A stable id for this connection, to tell two links to the same peer apart.
    pub fn id(&self) -> usize {
        self.conn.stable_id()
    }
}

/// One bidirectional stream through the tunnel; reads and writes like a TCP connection.
#[derive(Debug)]
pub struct TunnelStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl TunnelStream {
    /// Reads the header that opens a stream the peer opened.
    pub(crate) async fn read_header(&mut self) -> Result<StreamHeader, Error> {
        let len = self.recv.read_u16().await? as usize;
        if len > MAX_HEADER_LEN {
            return Err(Error::Malformed("stream header too long"));
        }
        let mut buf = vec![0u8; len];
        AsyncReadExt::read_exact(&mut self.recv, &mut buf).await?;
        StreamHeader::decode(&buf)
    }

    /// Abandons the stream in both directions, telling the peer (the QUIC form of a TCP RST).
    pub fn reset(self) {
        let (recv, send) = self.into_split();
        recv.stop();
        send.reset();
    }

    /// Splits the stream so that reading and writing can go on in separate tasks.
    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (StreamReader(self.recv), StreamWriter(self.send))
    }

    /// Joins halves from [`into_split`](Self::into_split) again.
    pub fn join(reader: StreamReader, writer: StreamWriter) -> TunnelStream {
        TunnelStream {
            recv: reader.0,
            send: writer.0,
        }
    }
}

/// The receiving half of a [`TunnelStream`].
#[derive(Debug)]
pub struct StreamReader(quinn::RecvStream);

impl StreamReader {
    /// Tells the peer to stop sending: nothing more will be read.
    pub fn stop(mut self) {
        let _ = self.0.stop(0u32.into());
    }
}

/// The sending half of a [`TunnelStream`].
#[derive(Debug)]
pub struct StreamWriter(quinn::SendStream);

impl StreamWriter {
    /// Abandons what is unsent and tells the peer the stream was cut: the reader sees an
    /// error, never a clean end, so a truncated body cannot pass for a whole one.
    pub fn reset(mut self) {
        let _ = self.0.reset(0u32.into());
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf).map_err(io::Error::from)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf).map_err(io::Error::from)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}
