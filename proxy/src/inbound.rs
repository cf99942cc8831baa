//! The inbound side: streams peers opened, delivered to this node's local services.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use ferry_tunnel::{IncomingStream, StreamHandler, StreamKind};

use crate::client::{connect_tcp, Upstreams};
use crate::directory::Directory;
use crate::metrics::{self, Direction};
use crate::remote;

/// The handler for the streams peers open: each is served on the task that read its header.
pub fn inbound_handler(directory: Arc<dyn Directory>, upstreams: Upstreams) -> StreamHandler {
    Arc::new(move |stream| {
        let directory = directory.clone();
        let upstreams = upstreams.clone();
        Box::pin(async move { serve_stream(stream, directory.as_ref(), &upstreams).await })
    })
}

async fn serve_stream(incoming: IncomingStream, directory: &dyn Directory, upstreams: &Upstreams) {
    let IncomingStream { header, stream, .. } = incoming;
    match header.kind {
        StreamKind::Http => {
            let started = Instant::now();
            let status = remote::serve(stream, &header.service, directory, upstreams).await;
            metrics::request(
                &header.service,
                directory.datacenter(),
                status.as_u16(),
                Direction::Inbound,
                started.elapsed(),
            );
        }
        StreamKind::Tcp => {
            let Some((addr, _)) = directory.local_service(&header.service) else {
                debug!(service = %header.service, "tcp stream for a service not here");
                stream.reset();
                return;
            };
            let tcp = match connect_tcp(addr).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    debug!(service = %header.service, %error, "local service unreachable");
                    directory.unreachable(&header.service, addr);
                    stream.reset();
                    return;
                }
            };
            metrics::tcp_connection(&header.service, Direction::Inbound);
            remote::splice(stream, Default::default(), tcp).await;
        }
    }
}
