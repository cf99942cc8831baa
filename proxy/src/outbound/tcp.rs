//! Outbound TCP listeners: each one carries opaque connections to one service.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{accept, Outbound};
use crate::metrics::{self, Direction};
use crate::splice;
use crate::target::ServiceName;

/// Accepts connections for the service `name` until `shutdown` turns true. Connections
/// already spliced carry on until either side closes them.
pub async fn serve_tcp_outbound(
    listener: TcpListener,
    name: ServiceName,
    outbound: Arc<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((client, remote)) = accept(&listener, &mut shutdown).await {
        tokio::spawn(carry_tcp(client, remote, name.clone(), outbound.clone()));
    }
}

/// Joins `client` to a connection to one of `name`'s endpoints until either side closes.
pub(crate) async fn carry_tcp(
    client: TcpStream,
    remote: SocketAddr,
    name: ServiceName,
    outbound: Arc<Outbound>,
) {
    match outbound.open_tcp(&name).await {
        Ok(upstream) => {
            metrics::tcp_connection(&name.service, Direction::Outbound);
            let joined = splice::join(
                std::future::ready(Ok(client)),
                std::future::ready(Ok(upstream)),
            );
            match joined.await {
                Ok((sent, received)) => metrics::tcp_bytes(sent, received),
                Err(e) => debug!(%remote, error = %e, "tcp connection ended with an error"),
            }
        }
        // A TCP client cannot be told why; the log can.
        Err(e) => warn!(%remote, error = %e, "closing tcp connection"),
    }
}
