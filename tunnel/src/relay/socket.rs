//! A UDP socket made of relay datagrams, so that a quinn endpoint can run over gateways.
//!
//! quinn addresses peers by socket address, while the relay addresses them by node key. Each
//! remote key gets a synthetic IPv6 address from the unique-local range (`fd00::/8`), handed
//! out in order and kept for the life of the [`Relay`], so an inner connection's remote address
//! never changes under it (quinn would take a new address for a migration). Nothing here ever
//! touches a real socket: sending calls the network's callback, receiving reads what the
//! network delivered.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use crate::identity::PublicKey;

/// Sends one inner packet toward the node with this key. The network wraps it in a relay
/// header and picks the link; with no path it drops the packet, as a UDP socket would. Called
/// from quinn's drivers, so it must not block.
pub(crate) type SendPacket = Arc<dyn Fn(PublicKey, Bytes) + Send + Sync>;

/// Packets delivered but not yet read by quinn. Beyond this they are dropped, like datagrams
/// overflowing a socket's receive buffer: inner QUIC sees loss and slows down. 4,096 packets of
/// at most 1,200 bytes is under 5 MiB, a few milliseconds of a fast link.
const QUEUE_LIMIT: usize = 4096;

/// The port of every synthetic address. quinn refuses port 0, and one port is enough: a key
/// names a node, not a socket.
const PORT: u16 = 1;
/// `fd00::`: the unique-local prefix the synthetic addresses live under.
const PREFIX: u128 = 0xfd00 << 112;
/// The socket's own address is `fd00::1`; remote nodes get `fd00::2` onwards.
const LOCAL: u128 = PREFIX | 1;

/// The relay seen from the network: where it delivers packets for the inner endpoint and how
/// it learns the synthetic address of a node. Cheap to clone; clones share everything.
#[derive(Clone)]
pub(crate) struct Relay {
    shared: Arc<Shared>,
}

struct Shared {
    send: SendPacket,
    addresses: Mutex<Addresses>,
    incoming: Mutex<Incoming>,
}

#[derive(Default)]
struct Addresses {
    by_key: HashMap<PublicKey, SocketAddr>,
    by_addr: HashMap<SocketAddr, PublicKey>,
}

#[derive(Default)]
struct Incoming {
    queue: VecDeque<(SocketAddr, Bytes)>,
    /// The endpoint driver waiting in `poll_recv`: quinn has one per socket.
    waker: Option<Waker>,
}

/// Locks even a poisoned mutex: the state is plain maps and queues that a panic elsewhere
/// cannot leave inconsistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn synthetic(n: u128) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(n)), PORT)
}

impl Relay {
    /// A relay whose outgoing packets go to `send`.
    pub(crate) fn new(send: SendPacket) -> Relay {
        Relay {
            shared: Arc::new(Shared {
                send,
                addresses: Mutex::default(),
                incoming: Mutex::default(),
            }),
        }
    }

    /// The synthetic address that stands for `key`, the same on every call.
    pub(crate) fn address_of(&self, key: &PublicKey) -> SocketAddr {
        let mut addresses = lock(&self.shared.addresses);
        if let Some(addr) = addresses.by_key.get(key) {
            return *addr;
        }
        let addr = synthetic(LOCAL + 1 + addresses.by_key.len() as u128);
        addresses.by_key.insert(*key, addr);
        addresses.by_addr.insert(addr, *key);
        addr
    }

    /// The key a synthetic address stands for, if this relay handed it out.
    pub(crate) fn key_of(&self, addr: SocketAddr) -> Option<PublicKey> {
        lock(&self.shared.addresses).by_addr.get(&addr).copied()
    }

    /// Hands the inner endpoint a packet that `src` sent through the relay. Never blocks: a
    /// full queue drops the packet.
    pub(crate) fn deliver(&self, src: PublicKey, packet: Bytes) {
        let addr = self.address_of(&src);
        let mut incoming = lock(&self.shared.incoming);
        if incoming.queue.len() >= QUEUE_LIMIT {
            return;
        }
        incoming.queue.push_back((addr, packet));
        if let Some(waker) = incoming.waker.take() {
            waker.wake();
        }
    }

    /// The socket to build a quinn endpoint on.
    pub(crate) fn socket(&self) -> Arc<dyn AsyncUdpSocket> {
        Arc::new(RelaySocket {
            relay: self.clone(),
        })
    }
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("nodes", &lock(&self.shared.addresses).by_key.len())
            .field("queued", &lock(&self.shared.incoming).queue.len())
            .finish_non_exhaustive()
    }
}

/// The relay as quinn sees it: a UDP socket.
#[derive(Debug)]
struct RelaySocket {
    relay: Relay,
}

impl AsyncUdpSocket for RelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    /// Never `WouldBlock`: the callback drops what it cannot send, so there is no readiness to
    /// wait for.
    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(key) = self.relay.key_of(transmit.destination) else {
            return Ok(());
        };
        // One packet per transmit, as max_transmit_segments promises quinn; splitting on a
        // segment size anyway costs nothing and keeps each relay datagram a single packet.
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for packet in transmit.contents.chunks(size) {
            (self.relay.shared.send)(key, Bytes::copy_from_slice(packet));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut incoming = lock(&self.relay.shared.incoming);
        let mut filled = 0;
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some((addr, packet)) = incoming.queue.pop_front() else {
                break;
            };
            // quinn's buffers hold its largest UDP payload; a bigger packet would arrive
            // truncated from a real socket and fail decryption, so it is dropped here.
            let Some(dst) = buf.get_mut(..packet.len()) else {
                continue;
            };
            dst.copy_from_slice(&packet);
            *meta = RecvMeta {
                addr,
                len: packet.len(),
                stride: packet.len(),
                ecn: None,
                dst_ip: None,
            };
            filled += 1;
        }
        if filled > 0 {
            return Poll::Ready(Ok(filled));
        }
        match &incoming.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => incoming.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(synthetic(LOCAL))
    }

    /// No GSO: each transmit must become exactly one relay datagram.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    /// True, so that quinn turns path MTU discovery off on its own: an inner packet larger
    /// than the outer links can carry is lost, never fragmented, and probing for it would only
    /// waste packets. The transport config turns it off as well.
    fn may_fragment(&self) -> bool {
        true
    }
}

/// A relay socket can always take a packet: see `try_send`.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet_relay() -> Relay {
        Relay::new(Arc::new(|_, _| {}))
    }

    #[test]
    fn each_key_keeps_one_address_and_maps_back() {
        let relay = quiet_relay();
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let addr_a = relay.address_of(&a);
        let addr_b = relay.address_of(&b);
        assert_ne!(addr_a, addr_b);
        assert_eq!(relay.address_of(&a), addr_a);
        assert_eq!(relay.key_of(addr_a), Some(a));
        assert_eq!(relay.key_of(addr_b), Some(b));
        assert_ne!(Some(addr_a), relay.socket().local_addr().ok());
        assert_eq!(relay.key_of("[fd00::99]:1".parse().expect("address")), None);
    }

    #[test]
    fn sends_go_to_the_key_behind_the_address_and_unknown_addresses_are_dropped() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let relay = Relay::new(Arc::new(move |key, packet| {
            lock(&log).push((key, packet));
        }));
        let key = PublicKey([3; 32]);
        let socket = relay.socket();
        let transmit = |destination, contents| Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: None,
        };
        socket
            .try_send(&transmit(relay.address_of(&key), b"hello"))
            .expect("sent");
        socket
            .try_send(&transmit("[fd00::99]:1".parse().expect("address"), b"lost"))
            .expect("dropped quietly");
        assert_eq!(*lock(&sent), vec![(key, Bytes::from_static(b"hello"))]);
    }

    #[test]
    fn delivered_packets_are_read_in_order_several_per_poll() {
        let relay = quiet_relay();
        let socket = relay.socket();
        let src = PublicKey([4; 32]);
        for i in 0..3u8 {
            relay.deliver(src, Bytes::from(vec![i; 10 + i as usize]));
        }
        let mut storage = [[0u8; 64]; 2];
        let [first, second] = &mut storage;
        let mut bufs = [IoSliceMut::new(first), IoSliceMut::new(second)];
        let mut meta = [RecvMeta::default(); 2];
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(2)) = socket.poll_recv(&mut cx, &mut bufs, &mut meta) else {
            panic!("two packets should be ready");
        };
        assert_eq!((meta[0].len, meta[0].stride), (10, 10));
        assert_eq!(meta[1].len, 11);
        assert_eq!(meta[0].addr, relay.address_of(&src));
        assert_eq!(&bufs[1][..11], &[1u8; 11]);
        assert!(matches!(
            socket.poll_recv(&mut cx, &mut bufs, &mut meta),
            Poll::Ready(Ok(1))
        ));
        assert!(socket.poll_recv(&mut cx, &mut bufs, &mut meta).is_pending());
    }

    #[test]
    fn a_full_queue_drops_what_arrives_next() {
        let relay = quiet_relay();
        let src = PublicKey([5; 32]);
        for _ in 0..QUEUE_LIMIT + 10 {
            relay.deliver(src, Bytes::from_static(b"x"));
        }
        assert_eq!(lock(&relay.shared.incoming).queue.len(), QUEUE_LIMIT);
    }
}
