//! The inbound side: streams peers opened, delivered to this node's local services.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

use ferry_tunnel::{IncomingStream, StreamKind};

use crate::client::Upstreams;
use crate::directory::Directory;
use crate::metrics::{self, Direction};
use crate::remote;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves every stream that arrives on `incoming` until the channel closes.
pub async fn serve_inbound(
    mut incoming: mpsc::Receiver<IncomingStream>,
    directory: Arc<dyn Directory>,
    upstreams: Upstreams,
) {
    while let Some(stream) = incoming.recv().await {
        let directory = directory.clone();
        let upstreams = upstreams.clone();
        tokio::spawn(async move { serve_stream(stream, directory.as_ref(), &upstreams).await });
    }
}

async fn serve_stream(incoming: IncomingStream, directory: &dyn Directory, upstreams: &Upstreams) {
    let IncomingStream { header, stream, .. } = incoming;
    let local = directory.local_service(&header.service);
    match header.kind {
        StreamKind::Http => {
            let started = Instant::now();
            let status = remote::serve(stream, &header.service, local, upstreams).await;
            metrics::request(
                &header.service,
                &directory.datacenter(),
                status.as_u16(),
                Direction::Inbound,
                started.elapsed(),
            );
        }
        StreamKind::Tcp => {
            let Some((addr, _)) = local else {
                debug!(service = %header.service, "tcp stream for a service not here");
                stream.reset();
                return;
            };
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                _ => {
                    debug!(service = %header.service, %addr, "local service unreachable");
                    stream.reset();
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            metrics::tcp_connection(&header.service, Direction::Inbound);
            remote::splice(stream, Default::default(), tcp).await;
        }
    }
}
