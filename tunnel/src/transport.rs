//! The node's QUIC endpoints: one on its UDP socket for links to the nodes it reaches directly
//! (the *outer* links), and one on a [`Relay`] for end-to-end sessions through gateways (the
//! *inner* links). Both use the same Noise crypto and link settings; they differ only in
//! packet sizes and in which carries relay datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

use crate::identity::{Identity, PublicKey};
use crate::link::Link;
use crate::noise::{self, Trust};
use crate::relay::Relay;
use crate::Error;

/// A link with no packets from its peer for this long is dead, whatever its RTT: QUIC's own
/// backstop. A link's silence is judged sooner, by its RTT ([`crate::liveness`]); QUIC
/// restarts this timer on every packet sent too (RFC 9000 §10.1), so it alone would notice a
/// dead peer only after a second or more. Keep-alives go out every
/// [`KEEP_ALIVE`](crate::liveness::KEEP_ALIVE) on an idle link.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_millis(1000);
/// An inner session through gateways outlives the loss of the gateway it runs through:
/// noticing that takes an outer link's idle timeout (about 1.2 s), after which the inner
/// packets take the other gateway. It does not need a short timeout of its own, because the
/// network closes it the moment the route table loses its far end.
const INNER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const INNER_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// The peer is asked (QUIC's ACK frequency extension) to acknowledge every 10th
/// ack-eliciting packet rather than every 2nd: under load each acknowledgement costs both
/// ends a packet's work, and calls carry their own answers. An idle link's keep-alives are
/// still acknowledged within the peer's `max_ack_delay` (25 ms), well inside the silence a
/// link's liveness allows. Measured: 1.5% fewer instructions per proxied call.
const ACK_THRESHOLD: u32 = 10;
/// Streams are cheap; a node proxying many concurrent calls needs many.
const MAX_STREAMS: u32 = 10_000;

/// Dials and accepts links on one socket: a real UDP socket, or a [`Relay`] for end-to-end
/// sessions through gateways.
#[derive(Clone, Debug)]
pub struct Transport {
    endpoint: quinn::Endpoint,
}

/// What a transport's packets travel in, which decides how large they may be.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    /// Real UDP between nodes: outer links, which also carry relay datagrams.
    Udp,
    /// Relay datagrams on outer links: inner sessions through gateways.
    Relay,
}

/// The largest inner packet: QUIC's minimum (RFC 9000 §14), which every outer link must carry.
/// Fixed, with no path MTU discovery: inner packets cross several outer links whose sizes the
/// inner endpoint cannot probe, and a probe too large is lost rather than fragmented.
const INNER_MTU: u16 = 1200;

/// Outer links' UDP payload, from the first packet, and never less: an outer DATAGRAM frame
/// must hold a whole inner packet and its relay header. The arithmetic, for a 1-RTT packet:
///
/// ```text
///   1,200  inner packet (INNER_MTU)
/// +    66  relay header (version, hops left, two keys)
/// +     1  short header flags
/// +     8  destination connection ID (quinn's default length)
/// +     4  packet number (at most)
/// +    16  AEAD tag (AES-GCM or ChaCha20-Poly1305)
/// +     9  DATAGRAM frame type and length (quinn's bound)
/// = 1,304  smallest payload that works
/// ```
///
/// 1,400 leaves ~100 bytes to spare and is 1,428 bytes on the wire over IPv4, 1,448 over IPv6:
/// within Ethernet's 1,500 with room for one layer of encapsulation, but not for a path whose
/// MTU is below that (a node behind such a path could not carry relay traffic, and its links
/// would fail their handshakes). MTU discovery still raises it where the path allows.
const OUTER_MTU: u16 = 1400;

/// Relay datagrams queued in each direction of an outer link. A gateway forwards the inner
/// packets of many sessions on one link; 4 MiB holds ~3,300 full packets, about 30 ms at
/// 1 Gbit/s, enough to ride out a burst without keeping a long standing queue that would
/// inflate every inner session's round-trip time. When it is full, quinn drops the oldest
/// datagrams, which the inner sessions see as loss.
const DATAGRAM_BUFFER: usize = 4 << 20;

fn transport_config(carrier: Carrier) -> Result<Arc<TransportConfig>, Error> {
    let mut t = TransportConfig::default();
    let (keep_alive, idle) = match carrier {
        Carrier::Udp => (crate::liveness::KEEP_ALIVE, IDLE_TIMEOUT),
        Carrier::Relay => (INNER_KEEP_ALIVE, INNER_IDLE_TIMEOUT),
    };
    t.keep_alive_interval(Some(keep_alive));
    t.max_idle_timeout(Some(
        idle.try_into()
            .map_err(|_| Error::Setup("idle timeout out of range"))?,
    ));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(VarInt::from_u32(ACK_THRESHOLD));
    t.ack_frequency_config(Some(ack));
    match carrier {
        Carrier::Udp => {
            t.initial_mtu(OUTER_MTU);
            t.min_mtu(OUTER_MTU);
            t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
            t.datagram_send_buffer_size(DATAGRAM_BUFFER);
        }
        Carrier::Relay => {
            t.initial_mtu(INNER_MTU);
            t.min_mtu(INNER_MTU);
            t.mtu_discovery_config(None);
            // Inner sessions carry streams only; nothing relays through them.
            t.datagram_receive_buffer_size(None);
        }
    }
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

/// The Noise configs for both roles, on the transport settings of `carrier`.
fn quic_configs(
    identity: &Identity,
    trust: Arc<Trust>,
    carrier: Carrier,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), Error> {
    let transport = transport_config(carrier)?;
    let (client_crypto, server_crypto) = noise::configs(identity, trust)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    Ok((server, client))
}

fn runtime() -> Result<Arc<dyn quinn::Runtime>, Error> {
    quinn::default_runtime().ok_or(Error::Setup("no async runtime"))
}

impl Transport {
    /// Binds the tunnel's UDP socket. Links are authenticated by `identity`; only keys in
    /// `trust` may open one to this node.
    pub fn bind(
        listen: SocketAddr,
        identity: &Identity,
        trust: Arc<Trust>,
    ) -> Result<Transport, Error> {
        let (server, client) = quic_configs(identity, trust, Carrier::Udp)?;
        let bind_error = |source| Error::Bind {
            address: listen,
            source,
        };
        let socket = udp_socket(listen).map_err(bind_error)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime()?,
        )
        .map_err(bind_error)?;
        Ok(Transport::new(endpoint, client))
    }

    /// A transport for end-to-end sessions through gateways, whose packets go through `relay`.
    /// Its links are authenticated exactly as direct ones, by `identity` and `trust`; dial a
    /// node at [`Relay::address_of`] its key.
    pub(crate) fn over_relay(
        relay: &Relay,
        identity: &Identity,
        trust: Arc<Trust>,
    ) -> Result<Transport, Error> {
        let (server, client) = quic_configs(identity, trust, Carrier::Relay)?;
        let mut config = quinn::EndpointConfig::default();
        // Tells peers, too, that nothing larger can arrive.
        config
            .max_udp_payload_size(INNER_MTU)
            .map_err(|_| Error::Setup("inner packet size out of range"))?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            config,
            Some(server),
            relay.socket(),
            runtime()?,
        )?;
        Ok(Transport::new(endpoint, client))
    }

    fn new(mut endpoint: quinn::Endpoint, client: quinn::ClientConfig) -> Transport {
        endpoint.set_default_client_config(client);
        Transport { endpoint }
    }

    /// The address the transport's socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Dials the node at `address` that must hold `key`.
    pub async fn connect(&self, address: SocketAddr, key: &PublicKey) -> Result<Link, Error> {
        let connecting = self
            .endpoint
            .connect(address, &noise::server_name(key))
            .map_err(|source| Error::Dial { address, source })?;
        let conn = connecting
            .await
            .map_err(|source| Error::Handshake { address, source })?;
        Ok(Link::new(conn))
    }

    /// Dials the node at `host:port` that must hold `key`, resolving the name first.
    pub(crate) async fn dial(&self, address: &str, key: &PublicKey) -> Result<Link, Error> {
        let resolve_error = |source| Error::Resolve {
            address: address.to_owned(),
            source,
        };
        let resolved = tokio::net::lookup_host(address)
            .await
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| {
                resolve_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name has no address",
                ))
            })?;
        self.connect(resolved, key).await
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
