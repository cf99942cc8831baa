//! The relay datagram: one inner QUIC packet on its way through gateways.
//!
//! Layout (version 1), carried as one QUIC DATAGRAM frame on each outer link:
//!
//! ```text
//! u8    version (1)
//! [32]  destination node key
//! [32]  source node key
//! ...   the inner QUIC packet, to the end of the datagram
//! ```
//!
//! A gateway reads only the first 65 bytes and forwards the whole datagram unchanged. The keys
//! are in the clear on each outer link (which encrypts them anyway) because gateways must route
//! on them. The source key is only a claim: the inner session's handshake is what proves who
//! sent a packet, and a packet whose claim is false fails the inner decryption and is dropped.

use bytes::{BufMut, Bytes, BytesMut};

use crate::identity::PublicKey;
use crate::wire::Reader;
use crate::Error;

const VERSION: u8 = 1;

/// The bytes in front of the inner packet: version and two keys.
pub(crate) const HEADER_LEN: usize = 1 + 32 + 32;

/// A decoded relay datagram, borrowing the inner packet from the buffer it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelayDatagram<'a> {
    /// The node the packet is for.
    pub dst: PublicKey,
    /// The node that claims to have sent it.
    pub src: PublicKey,
    /// The inner QUIC packet; never empty.
    pub packet: &'a [u8],
}

/// Wraps an inner packet for the relay. Copies the packet once: the header goes in front.
pub(crate) fn encode(dst: &PublicKey, src: &PublicKey, packet: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + packet.len());
    out.put_u8(VERSION);
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
    let dst = key(&mut r)?;
    let src = key(&mut r)?;
    let packet = r.take(r.remaining())?;
    if packet.is_empty() {
        return Err(Error::Malformed("relay datagram without a packet"));
    }
    Ok(RelayDatagram { dst, src, packet })
}

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
        let bytes = encode(&B, &A, &packet);
        assert_eq!(bytes.len(), HEADER_LEN + packet.len());
        let datagram = decode(&bytes).expect("decodes");
        assert_eq!(
            datagram,
            RelayDatagram {
                dst: B,
                src: A,
                packet: &packet
            }
        );
        assert_eq!(&bytes.slice(HEADER_LEN..)[..], &packet);
    }

    #[test]
    fn truncated_datagrams_are_refused() {
        let bytes = encode(&B, &A, &[9; 40]);
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
        let mut bytes = encode(&B, &A, &[9; 40]).to_vec();
        bytes[0] = 2;
        assert!(decode(&bytes).is_err());
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
                assert_eq!(encode(&datagram.dst, &datagram.src, datagram.packet), bytes);
            }
        }
    }
}
