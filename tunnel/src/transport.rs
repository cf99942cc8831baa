//! The node's QUIC endpoint: one UDP socket that dials and accepts links.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

use crate::identity::{Identity, PublicKey};
use crate::link::Link;
use crate::noise::{self, Trust};
use crate::Error;

/// Keep-alives go out often enough that a dead peer is noticed well within the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// A link with no packets from its peer for this long is dead: its routes are withdrawn.
/// QUIC restarts the idle timer on every packet sent too (RFC 9000 §10.1), so an idle link
/// notices a dead peer up to one keep-alive later: 1.0 s + 0.2 s, within the 1.5 s promised,
/// with room for scheduling delays. Five keep-alives fit in the timeout, so a link survives
/// four lost in a row.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Streams are cheap; a node proxying many concurrent calls needs many.
const MAX_STREAMS: u32 = 10_000;

/// Dials and accepts links on one UDP socket.
#[derive(Clone, Debug)]
pub struct Transport {
    endpoint: quinn::Endpoint,
}

fn transport_config() -> Result<Arc<TransportConfig>, Error> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .map_err(|_| Error::Setup("idle timeout out of range".into()))?,
    ));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    Ok(Arc::new(t))
}

/// Socket buffers large enough for a burst of a fast link: the kernel's defaults (about
/// 200 KiB) drop packets at a few Gbit/s. The kernel caps the size at `net.core.rmem_max` and
/// `wmem_max`; asking for more is harmless.
const SOCKET_BUFFER: usize = 8 << 20;

/// The tunnel's UDP socket, with large buffers.
fn udp_socket(listen: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if listen.is_ipv6() {
        // Accept IPv4 peers on an IPv6 wildcard as well, as `[::]:7700` users expect.
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&listen.into())?;
    Ok(socket.into())
}

impl Transport {
    /// Binds the tunnel's UDP socket. Links are authenticated by `identity`; only keys in
    /// `trust` may open one to this node.
    pub fn bind(
        listen: SocketAddr,
        identity: &Identity,
        trust: Arc<Trust>,
    ) -> Result<Transport, Error> {
        let transport = transport_config()?;
        let (client_crypto, server_crypto) = noise::configs(identity, trust)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let socket = udp_socket(listen)
            .map_err(|e| Error::Setup(format!("cannot bind tunnel on udp {listen}: {e}")))?;
        let runtime =
            quinn::default_runtime().ok_or_else(|| Error::Setup("no async runtime".into()))?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|e| Error::Setup(format!("cannot start the tunnel on udp {listen}: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);
        endpoint.set_default_client_config(client);
        Ok(Transport { endpoint })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Dials the node at `addr` that must hold `key`.
    pub async fn connect(&self, addr: SocketAddr, key: &PublicKey) -> Result<Link, Error> {
        let connect_error = |reason: String| Error::Connect {
            addr: addr.to_string(),
            reason,
        };
        let connecting = self
            .endpoint
            .connect(addr, &noise::server_name(key))
            .map_err(|e| connect_error(e.to_string()))?;
        let conn = connecting.await.map_err(|e| connect_error(e.to_string()))?;
        Ok(Link::new(conn))
    }

    /// Waits for the next incoming connection attempt; `None` once the transport is closed.
    /// The caller finishes each handshake on its own task so a slow one holds up no other.
    pub(crate) async fn accept(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Closes every link at once, telling peers.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"node stopping");
    }
}
