//! Interception's DNS server, on UDP and TCP: mesh names of known services are answered here
//! ([`answer::decide`](super::answer::decide)); every other query is sent, as it came, to the
//! resolvers the system had, and their answer returned as it came (NXDOMAIN stays NXDOMAIN).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tracing::debug;

use super::answer::{decide, Reply};
use super::VirtualNames;

/// How long an upstream resolver has to answer one query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest DNS message over UDP that is read (EDNS allows up to 65,535; 4,096 is the
/// common limit).
const UDP_MESSAGE: usize = 4096;

/// Where queries go and who answers mesh names.
#[derive(Clone)]
pub struct Resolvers {
    /// Answers mesh names.
    pub names: Arc<VirtualNames>,
    /// The resolvers every other query goes to, tried in turn.
    pub upstreams: Arc<[SocketAddr]>,
}

/// Serves DNS on `udp` and `tcp` until `shutdown`.
pub async fn serve_dns(
    udp: UdpSocket,
    tcp: TcpListener,
    resolvers: Resolvers,
    mut shutdown: watch::Receiver<bool>,
) {
    let udp = Arc::new(udp);
    let mut buf = vec![0u8; UDP_MESSAGE];
    loop {
        tokio::select! {
            received = udp.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let (udp, resolvers, query) = (udp.clone(), resolvers.clone(), buf[..n].to_vec());
                    tokio::spawn(async move {
                        if let Some(reply) = resolve(&resolvers, &query, Transport::Udp).await {
                            let _ = udp.send_to(&reply, from).await;
                        }
                    });
                }
                Err(e) => debug!(error = %e, "DNS over UDP: receive failed"),
            },
            accepted = tcp.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_tcp(stream, resolvers.clone()));
                }
                Err(e) => debug!(error = %e, "DNS over TCP: accept failed"),
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One TCP connection: length-prefixed queries, answered in order, until it closes.
async fn serve_tcp(mut stream: TcpStream, resolvers: Resolvers) {
    loop {
        let Ok(query) = read_framed(&mut stream).await else {
            return;
        };
        let Some(reply) = resolve(&resolvers, &query, Transport::Tcp).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// The reply to `query`: ours, or the first upstream's that answers. `None` when none does
/// (the client's own timeout and retry then take over, as with a lost datagram).
async fn resolve(resolvers: &Resolvers, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let names = &resolvers.names;
    if let Reply::Answer(reply) = decide(query, |name| names.address_of(name)) {
        return Some(reply);
    }
    for upstream in resolvers.upstreams.iter() {
        let asked = match transport {
            Transport::Udp => ask_udp(*upstream, query).await,
            Transport::Tcp => ask_tcp(*upstream, query).await,
        };
        match asked {
            Ok(reply) => return Some(reply),
            Err(e) => debug!(%upstream, error = %e, "upstream resolver did not answer"),
        }
    }
    None
}

async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; UDP_MESSAGE];
    let n = within(socket.recv(&mut buf)).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = within(TcpStream::connect(upstream)).await?;
    write_framed(&mut stream, query).await?;
    within(read_framed(&mut stream)).await
}

async fn within<T>(
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, future)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// A DNS message over TCP: `u16 length | message` (RFC 1035 §4.2.2).
async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await? as usize;
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))?;
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}
