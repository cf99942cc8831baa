//! Where redirected connections land: each one's original destination
//! (`SO_ORIGINAL_DST`) is a virtual address, whose name is the service called. A connection
//! that starts like HTTP/1 or HTTP/2 is served as the HTTP outbound serves calls (routing,
//! retries, balancing, deadlines, metrics, errors); anything else is carried to the service as
//! opaque TCP. A client that sends nothing for 300 ms is taken for one whose server speaks
//! first (SMTP, MySQL) and carried as TCP. The address of a service that went away is
//! refused.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use super::sniff::{sniff, Protocol};
use super::VirtualNames;
use crate::outbound::{accept, carry_tcp, drain, server_builder, HttpConnection, Outbound};

/// How long a client has to show what it speaks before it is taken for TCP.
const SNIFF_TIMEOUT: Duration = Duration::from_millis(300);
/// Between two looks at the first bytes while they do not yet tell.
const SNIFF_POLL: Duration = Duration::from_millis(5);

/// Serves intercepted connections on `listener` until `shutdown`, then drains.
pub async fn serve_intercepted(
    listener: TcpListener,
    names: Arc<VirtualNames>,
    outbound: Arc<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(server_builder());
    let graceful = GracefulShutdown::new();
    while let Some((stream, remote)) = accept(&listener, &mut shutdown).await {
        let Some(name) = original_destination(&stream).and_then(|a| names.name_of(a)) else {
            // Not a virtual address, one whose name this node never gave, or one of a service
            // that went away: refused at once, as a connection to an address nobody listens
            // on would be.
            debug!(%remote, "intercepted connection to no virtual address: refused");
            // A zero linger makes the close a reset: the client is refused, not hung up on.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        };
        let (builder, outbound, watcher) = (builder.clone(), outbound.clone(), graceful.watcher());
        tokio::spawn(async move {
            match protocol(&stream).await {
                Protocol::Http => {
                    let connection = HttpConnection {
                        stream,
                        remote,
                        target: Some(name),
                    };
                    connection.serve(builder, outbound, watcher).await;
                }
                _ => carry_tcp(stream, remote, name, outbound).await,
            }
        });
    }
    drop(listener);
    drain(graceful).await;
}

/// The address the client dialed before the packet filter redirected it here.
fn original_destination(stream: &TcpStream) -> Option<Ipv4Addr> {
    let address = socket2::SockRef::from(stream).original_dst_v4().ok()?;
    match address.as_socket()? {
        SocketAddr::V4(v4) => Some(*v4.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// What the client speaks, from the bytes it sent first (peeked: they stay to be read).
async fn protocol(stream: &TcpStream) -> Protocol {
    let mut buf = [0u8; 32];
    let looked = tokio::time::timeout(SNIFF_TIMEOUT, async {
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Protocol::Tcp,
                Ok(n) => match sniff(&buf[..n]) {
                    Protocol::Unsure if n < buf.len() => tokio::time::sleep(SNIFF_POLL).await,
                    Protocol::Unsure => return Protocol::Tcp,
                    known => return known,
                },
            }
        }
    });
    looked.await.unwrap_or(Protocol::Tcp)
}
