//! The relay datagram: one inner QUIC packet on its way through gateways.
//!
//! Layout (version 2), carried as one QUIC DATAGRAM frame on each outer link:
//!
//! ```text
//! u8    version (2)
//! u8    hops left: how many more gateways may forward it
//! [32]  destination node key
//! [32]  source node key
//! ...   the inner QUIC packet, to the end of the datagram
//! ```
//!
//! A gateway reads only the first 66 bytes and forwards the datagram with one hop fewer, or
//! drops it when none is left: while gateways' routes disagree (they converge, but not at
//! once), a datagram could otherwise go round a loop of three or more of them until they
//! agree, a copy on every link of the loop at every turn. The keys
//! are in the clear on each outer link (which encrypts them anyway) because gateways must route
//! on them. The source key is only a claim: the inner session's handshake is what proves who
//! sent a packet, and a packet whose claim is false fails the inner decryption and is dropped.

use bytes::{BufMut, Bytes, BytesMut};

use crate::identity::PublicKey;
use crate::wire::Reader;
use crate::Error;

const VERSION: u8 = 2;

/// The bytes in front of the inner packet: version, hops left and two keys.
pub(crate) const HEADER_LEN: usize = 1 + 1 + 32 + 32;

/// The hops a datagram starts with: more gateways than any path between datacenters crosses
/// (two, or one per datacenter on a chain of them), few enough that a loop ends quickly.
pub(crate) const MAX_HOPS: u8 = 16;

/// A decoded relay datagram, borrowing the inner packet from the buffer it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelayDatagram<'a> {
    /// The node the packet is for.
    pub dst: PublicKey,
    /// The node that claims to have sent it.
    pub src: PublicKey,
    /// How many more gateways may forward it.
    pub hops: u8,
    /// The inner QUIC packet; never empty.
    pub packet: &'a [u8],
}

/// Wraps an inner packet for the relay; a sender gives it [`MAX_HOPS`]. Copies the packet
/// once: the header goes in front.
pub(crate) fn encode(dst: &PublicKey, src: &PublicKey, hops: u8, packet: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + packet.len());
    out.put_u8(VERSION);
    out.put_u8(hops);
    out.put_slice(&dst.0);
    out.put_slice(&src.0);
    out.put_slice(packet);
    out.freeze()
}

/// Reads a relay datagram. A receiver that wants the packet as [`Bytes`] without a copy slices
/// the datagram at [`HEADER_LEN`] once this has accepted it.
pub(crate) fn decode(buf: &[u8]) -> Result<RelayDatagram<'_>, Error> {
    let mut r = Reader::new(buf);
    if r.u8()? != VERSION {
        return Err(Error::Malformed("unknown relay datagram version"));
    }
    let hops = r.u8()?;
    let dst = key(&mut r)?;
    let src = key(&mut r)?;
    let packet = r.take(r.remaining())?;
    if packet.is_empty() {
        return Err(Error::Malformed("relay datagram without a packet"));
    }
    Ok(RelayDatagram {
        dst,
        src,
        hops,
        packet,
    })
}

/// What a gateway sends on for a datagram it has decoded: the same bytes with one hop fewer,
/// or `None` when it has no hop left and must be dropped. A count above [`MAX_HOPS`] is
/// brought down to it, so a sender cannot buy its datagrams more turns of a loop. Copies the
/// datagram only when its buffer is shared (quinn hands out slices of the packet it received).
pub(crate) fn spend_hop(datagram: Bytes) -> Option<Bytes> {
    let hops = datagram.get(HOPS_AT).copied().filter(|&h| h > 0)?;
    let mut out = datagram
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    out[HOPS_AT] = hops.min(MAX_HOPS) - 1;
    Some(out.freeze())
}

/// Where the hops-left byte sits: right after the version.
const HOPS_AT: usize = 1;

fn key(r: &mut Reader<'_>) -> Result<PublicKey, Error> {
    let bytes = r.take(32)?;
    <[u8; 32]>::try_from(bytes)
        .map(PublicKey)
        .map_err(|_| Error::Malformed("truncated key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PublicKey = PublicKey([0xaa; 32]);
    const B: PublicKey = PublicKey([0xbb; 32]);

    #[test]
    fn a_datagram_decodes_to_what_was_encoded() {
        let packet = [1u8, 2, 3, 4, 5];
        let bytes = encode(&B, &A, MAX_HOPS, &packet);
        assert_eq!(bytes.len(), HEADER_LEN + packet.len());
        let datagram = decode(&bytes).expect("decodes");
        assert_eq!(
            datagram,
            RelayDatagram {
                dst: B,
                src: A,
                hops: MAX_HOPS,
                packet: &packet
            }
        );
        assert_eq!(&bytes.slice(HEADER_LEN..)[..], &packet);
    }

    #[test]
    fn truncated_datagrams_are_refused() {
        let bytes = encode(&B, &A, MAX_HOPS, &[9; 40]);
        // Every cut up to and including the bare header leaves no packet or a partial key.
        for len in 0..=HEADER_LEN {
            assert!(
                decode(&bytes[..len]).is_err(),
                "a {len}-byte prefix decoded"
            );
        }
        assert!(decode(&bytes[..HEADER_LEN + 1]).is_ok());
    }

    #[test]
    fn an_unknown_version_is_refused() {
        // Version 1 had no hop count: its keys would be read one byte off.
        let mut bytes = encode(&B, &A, MAX_HOPS, &[9; 40]).to_vec();
        bytes[0] = 1;
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn each_gateway_spends_a_hop_and_one_with_none_left_drops_the_datagram() {
        let packet = [7u8; 30];
        let mut datagram = encode(&B, &A, MAX_HOPS, &packet);
        for forwarded in 1..=MAX_HOPS {
            datagram = spend_hop(datagram)
                .unwrap_or_else(|| panic!("dropped after {} forwards", forwarded - 1));
            let seen = decode(&datagram).expect("still decodes");
            assert_eq!(seen.hops, MAX_HOPS - forwarded);
            assert_eq!((seen.dst, seen.src, seen.packet), (B, A, &packet[..]));
        }
        assert_eq!(spend_hop(datagram), None, "forwarded with no hop left");
    }

    #[test]
    fn a_sender_cannot_give_a_datagram_more_hops_than_the_limit() {
        let datagram = spend_hop(encode(&B, &A, u8::MAX, &[1; 10])).expect("has hops");
        assert_eq!(decode(&datagram).expect("decodes").hops, MAX_HOPS - 1);
    }

    #[test]
    fn a_shared_buffer_is_copied_not_changed_under_its_other_owners() {
        let received = encode(&B, &A, 3, &[1; 10]);
        let forwarded = spend_hop(received.clone()).expect("has hops");
        assert_eq!(decode(&received).expect("decodes").hops, 3);
        assert_eq!(decode(&forwarded).expect("decodes").hops, 2);
    }

    #[test]
    fn garbage_never_panics() {
        for mut bytes in crate::wire::garbage(20_000, 200) {
            // Half the inputs carry the right version, so the decoder gets past its first byte.
            if bytes.len() % 2 == 0 {
                if let Some(first) = bytes.first_mut() {
                    *first = VERSION;
                }
            }
            if let Ok(datagram) = decode(&bytes) {
                let again = encode(&datagram.dst, &datagram.src, datagram.hops, datagram.packet);
                assert_eq!(again, bytes);
            }
        }
    }
}
