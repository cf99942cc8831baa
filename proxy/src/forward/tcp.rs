//! One try of a TCP connection against one endpoint: a byte stream opened to it, directly or
//! through the tunnel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

use ferry_tunnel::{Chain, StreamHeader, StreamKind, TunnelStream};

use crate::call::{Routed, TcpCall};
use crate::directory::Endpoint;
use crate::error::{CallError, TryError};
use crate::pool::connect_tcp;
use crate::target::Target;

/// An opaque byte stream to a service.
pub(crate) enum Upstream {
    Direct(TcpStream),
    Tunnel(TunnelStream),
}

/// Opens a byte stream to the endpoint the balancer picked. Nothing is sent before it is
/// open, so a failure is always unreached.
#[derive(Clone, Default)]
pub(crate) struct OpenTcp;

impl Service<(Endpoint, TcpCall)> for OpenTcp {
    type Response = Upstream;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Upstream, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (endpoint, call): (Endpoint, TcpCall)) -> Self::Future {
        Box::pin(async move {
            let opened = match &endpoint.target {
                Target::Address(addr) => connect_tcp(*addr).await.map(Upstream::Direct),
                Target::Node { remote, name, .. } => {
                    let header = StreamHeader {
                        kind: StreamKind::Tcp,
                        protocol: endpoint.protocol,
                        service: call.name().service.clone(),
                        datacenter: endpoint.datacenter.clone(),
                    };
                    remote
                        .open(&header)
                        .await
                        .map(Upstream::Tunnel)
                        .map_err(|e| format!("node {name}: {}", Chain(&e)))
                }
            };
            opened.map_err(|reason| {
                call.failed(&reason);
                TryError::unreached(reason).into()
            })
        })
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Direct(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Upstream::Tunnel(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upstream::Direct(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Upstream::Tunnel(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Direct(tcp) => Pin::new(tcp).poll_flush(cx),
            Upstream::Tunnel(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Direct(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Upstream::Tunnel(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
