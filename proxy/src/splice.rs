//! Joining two connections and copying bytes both ways between them: TCP proxying, CONNECT,
//! and upgrades (WebSocket), whichever side of the tunnel they are on. [`join`] is the one way
//! to do it; [`upgraded`] turns a hyper upgrade into a connection it can join, and
//! [`Prefixed`] a tunnel stream whose first bytes were read ahead.
//!
//! Each direction's buffer starts at 4 KiB and grows fourfold, up to 64 KiB, whenever a read
//! fills it: an idle or chatty connection (a redis client, a WebSocket) costs a few KiB, and
//! a bulk transfer gets large reads and large tunnel writes. Fixed 64 KiB buffers cost 128 MiB
//! at 1,000 connections; fixed 8 KiB ones (tokio's default) held a tunnel to ~2 Gbit/s where
//! 64 KiB reached ~3.4 (ztunnel grows its buffers for the same reasons).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

const FIRST: usize = 4 * 1024;
const LARGEST: usize = 64 * 1024;

/// Waits until both sides are ready — an upgrade that completes, a connection already open
/// (`std::future::ready(Ok(..))`) — then copies both ways until both have finished. Returns
/// the bytes copied `a`→`b` and `b`→`a`. When one side stops sending, the other is told
/// (write shutdown) and the copy the other way goes on: half-closed connections work as with
/// TCP.
pub(crate) async fn join<A, B>(
    a: impl Future<Output = io::Result<A>>,
    b: impl Future<Output = io::Result<B>>,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (a, b) = tokio::try_join!(a, b)?;
    splice(a, b).await
}

/// The connection an upgrade hands over once the `101` (or the `200` to a CONNECT) has gone.
pub(crate) async fn upgraded(on: OnUpgrade) -> io::Result<TokioIo<Upgraded>> {
    on.await.map(TokioIo::new).map_err(io::Error::other)
}

/// Copies both ways between two open connections until both have finished.
async fn splice<A, B>(a: A, b: B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    tokio::try_join!(copy(a_read, b_write), copy(b_read, a_write))
}

async fn copy<R, W>(mut reader: R, mut writer: W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FIRST];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            writer.shutdown().await?;
            return Ok(total);
        }
        writer.write_all(&buf[..n]).await?;
        total += n as u64;
        if n == buf.len() && buf.len() < LARGEST {
            buf.resize((buf.len() * 4).min(LARGEST), 0);
        } else if n < buf.len() {
            // The reader has nothing more for now: push out what is buffered, so an
            // interactive protocol never waits on a half-full buffer.
            writer.flush().await?;
        }
    }
}

/// A connection whose first reads return bytes that were read ahead of it (a tunnel stream
/// read past its last frame).
pub(crate) struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_cross_both_ways_and_half_close_is_passed_on() {
        let (client, proxy_left) = tokio::io::duplex(1 << 20);
        let (proxy_right, server) = tokio::io::duplex(1 << 20);
        let relay = tokio::spawn(join(
            std::future::ready(Ok(proxy_left)),
            std::future::ready(Ok(proxy_right)),
        ));
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut server_read, mut server_write) = tokio::io::split(server);

        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        client_write.write_all(&big).await.expect("write");
        client_write.shutdown().await.expect("half close");
        let mut got = Vec::new();
        server_read
            .read_to_end(&mut got)
            .await
            .expect("the server sees the end");
        assert_eq!(got, big);

        // The other direction still works after the client stopped sending.
        server_write.write_all(b"reply").await.expect("write");
        server_write.shutdown().await.expect("close");
        let mut reply = Vec::new();
        client_read.read_to_end(&mut reply).await.expect("read");
        assert_eq!(reply, b"reply");
        assert_eq!(relay.await.expect("task").expect("splice"), (300_000, 5));
    }
}
