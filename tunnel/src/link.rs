//! A link: the one QUIC connection between two nodes, and the streams it carries.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::header::{StreamHeader, MAX_HEADER_LEN};
use crate::identity::PublicKey;
use crate::noise::PeerIdentity;
use crate::peers::{LinkHandle, LinkId};
use crate::Error;

/// A connection to a peer node. Cheap to clone; all clones share the connection.
#[derive(Clone, Debug)]
pub struct Link {
    conn: quinn::Connection,
    activity: Arc<Activity>,
}

/// What tells a link in use from an idle one: the stream halves open on it, and when the
/// last of them ended. The nodes' own control streams (hello, updates) are not counted.
#[derive(Debug)]
struct Activity {
    /// Open stream halves (a stream counts twice, once per direction), plus [`CLOSING`]
    /// once the link is closing for idleness, which no new stream may then race.
    halves: AtomicUsize,
    /// When the last open half ended: milliseconds since `born` (0 before any stream).
    last: AtomicU64,
    born: Instant,
}

/// Set in [`Activity::halves`] when an idle link is being closed.
const CLOSING: usize = 1 << (usize::BITS - 1);

impl Activity {
    fn touch(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }
}

/// One open half of a stream, counted in its link's [`Activity`] until dropped.
#[derive(Debug)]
struct Held(Arc<Activity>);

impl Held {
    /// Counts a new half; `None` when the link is closing for idleness.
    fn new(activity: &Arc<Activity>) -> Option<Held> {
        if activity.halves.fetch_add(1, Ordering::AcqRel) & CLOSING != 0 {
            activity.halves.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Held(activity.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The link's idle time starts when its last half ends, stamped before the count
        // reaches zero so that the watcher never sees zero with an older stamp. Only on a
        // multi-thread runtime can two last halves end at once, neither stamping; the
        // link may then close early, and the next call dials again.
        if self.0.halves.load(Ordering::Acquire) == 1 {
            self.0.touch();
        }
        self.0.halves.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Link {
    pub(crate) fn new(conn: quinn::Connection) -> Link {
        let activity = Activity {
            halves: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            born: Instant::now(),
        };
        Link {
            conn,
            activity: Arc::new(activity),
        }
    }

    /// Both halves of a new stream, counted; `None` once the link is closing for idleness.
    fn hold(&self) -> Option<(Held, Held)> {
        Some((Held::new(&self.activity)?, Held::new(&self.activity)?))
    }

    /// How long the link has carried no stream (the nodes' own hello and update streams do
    /// not count); `None` while a stream is open on it.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.activity.halves.load(Ordering::Acquire) != 0 {
            return None;
        }
        Some(self.activity.idle_for())
    }

    /// Closes the link if no stream is open on it, and says whether it did. A stream that
    /// starts at the same moment either holds the link open or fails before it sends anything,
    /// so its call can go again on a new link.
    pub(crate) fn close_if_unused(&self) -> bool {
        let closing =
            self.activity
                .halves
                .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire);
        if closing.is_err() {
            return false;
        }
        self.close("idle");
        true
    }

    /// Closes the link at once, telling the peer why.
    pub(crate) fn close(&self, reason: &str) {
        self.conn.close(0u32.into(), reason.as_bytes());
    }

    /// Updates the link's 1-RTT keys every `period`, for as long as it is awaited.
    pub(crate) async fn rekey_every(&self, period: Duration) {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.conn.force_key_update();
        }
    }

    /// Opens a stream to the peer for one request or TCP connection.
    pub async fn open(&self, header: &StreamHeader) -> Result<TunnelStream, Error> {
        let held = self.hold().ok_or(Error::LinkIdle)?;
        let (mut send, recv) = self.conn.open_bi().await.map_err(Error::LinkClosed)?;
        let mut buf = BytesMut::with_capacity(64);
        header.encode(&mut buf);
        send.write_all(&buf).await?;
        Ok(TunnelStream::new(send, recv, held))
    }

    /// Waits for the peer to open a stream. Reading its header is left to
    /// [`TunnelStream::read_header`] so that one slow stream cannot hold up the others.
    pub(crate) async fn accept(&self) -> Result<TunnelStream, Error> {
        let (send, recv) = self.conn.accept_bi().await.map_err(Error::LinkClosed)?;
        let held = self.hold().ok_or(Error::LinkIdle)?;
        Ok(TunnelStream::new(send, recv, held))
    }

    /// The peer's key, as the handshake proved it.
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.peer().map(|peer| peer.key)
    }

    /// The peer as the handshake proved it: its key, and its certificate when a CA this node
    /// trusts vouched for it.
    pub fn peer(&self) -> Option<PeerIdentity> {
        self.conn
            .peer_identity()
            .and_then(|identity| identity.downcast::<PeerIdentity>().ok())
            .map(|peer| *peer)
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
            SendDatagramError::ConnectionLost(e) => Error::LinkClosed(e),
            other => Error::Datagram(other),
        })
    }

    /// Waits for the next datagram from the peer; an error once the link has closed.
    pub(crate) async fn read_datagram(&self) -> Result<Bytes, Error> {
        self.conn.read_datagram().await.map_err(Error::LinkClosed)
    }

    /// The latest round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The UDP address the peer's packets come from.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Waits until the connection has closed, for any reason.
    pub(crate) async fn closed(&self) {
        self.conn.closed().await;
    }

    /// Whether the connection has closed (for any reason).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// A stable id for this connection, to tell two links to the same peer apart.
    pub fn id(&self) -> LinkId {
        self.conn.stable_id()
    }
}

impl LinkHandle for Link {
    fn id(&self) -> LinkId {
        self.conn.stable_id()
    }
}

/// One bidirectional stream through the tunnel; reads and writes like a TCP connection.
#[derive(Debug)]
pub struct TunnelStream {
    send: StreamWriter,
    recv: StreamReader,
}

impl TunnelStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream, (r, w): (Held, Held)) -> Self {
        TunnelStream {
            send: StreamWriter { send, _held: w },
            recv: StreamReader { recv, _held: r },
        }
    }

    /// Reads the header that opens a stream the peer opened.
    pub(crate) async fn read_header(&mut self) -> Result<StreamHeader, Error> {
        let len = self.recv.recv.read_u16().await? as usize;
        if len > MAX_HEADER_LEN {
            return Err(Error::Malformed("stream header too long"));
        }
        let mut buf = vec![0u8; len];
        AsyncReadExt::read_exact(&mut self.recv.recv, &mut buf).await?;
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
        (self.recv, self.send)
    }

    /// Joins halves from [`into_split`](Self::into_split) again.
    pub fn join(reader: StreamReader, writer: StreamWriter) -> TunnelStream {
        TunnelStream {
            recv: reader,
            send: writer,
        }
    }
}

/// The receiving half of a [`TunnelStream`].
#[derive(Debug)]
pub struct StreamReader {
    recv: quinn::RecvStream,
    /// Counts the half as open on its link until dropped.
    _held: Held,
}

impl StreamReader {
    /// Tells the peer to stop sending: nothing more will be read.
    pub fn stop(mut self) {
        let _ = self.recv.stop(0u32.into());
    }
}

/// The sending half of a [`TunnelStream`].
#[derive(Debug)]
pub struct StreamWriter {
    send: quinn::SendStream,
    /// Counts the half as open on its link until dropped.
    _held: Held,
}

impl StreamWriter {
    /// Abandons what is unsent and tells the peer the stream was cut: the reader sees an
    /// error, never a clean end, so a truncated body cannot pass for a whole one.
    pub fn reset(mut self) {
        let _ = self.send.reset(0u32.into());
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for StreamWriter {
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
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}
