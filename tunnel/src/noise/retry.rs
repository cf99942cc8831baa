//! Retry packet integrity (RFC 9001 §5.8): a fixed, public key, so that a client can tell a
//! Retry that came from the path it used from random bytes; not a secret.

use quinn_proto::ConnectionId;
use ring::aead;

const KEY: [u8; 16] = [
    0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e,
];
const NONCE: [u8; 12] = [
    0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
];

fn key() -> Option<aead::LessSafeKey> {
    aead::UnboundKey::new(&aead::AES_128_GCM, &KEY)
        .ok()
        .map(aead::LessSafeKey::new)
}

fn pseudo_packet(orig_dst_cid: &ConnectionId, parts: &[&[u8]]) -> Vec<u8> {
    let mut pseudo =
        Vec::with_capacity(1 + orig_dst_cid.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    pseudo.push(orig_dst_cid.len() as u8);
    pseudo.extend_from_slice(orig_dst_cid);
    for part in parts {
        pseudo.extend_from_slice(part);
    }
    pseudo
}

/// The integrity tag of a Retry packet.
pub(crate) fn tag(orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
    let pseudo = pseudo_packet(orig_dst_cid, &[packet]);
    let mut out = [0u8; 16];
    if let Some(key) = key() {
        let nonce = aead::Nonce::assume_unique_for_key(NONCE);
        if let Ok(tag) = key.seal_in_place_separate_tag(nonce, aead::Aad::from(&pseudo), &mut []) {
            out.copy_from_slice(tag.as_ref());
        }
    }
    out
}

/// Whether a Retry packet's tag (the last 16 bytes of `payload`) is valid.
pub(crate) fn is_valid(orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
    let Some(tag_start) = payload.len().checked_sub(16) else {
        return false;
    };
    let expected = tag(orig_dst_cid, &[header, &payload[..tag_start]].concat());
    super::keys::constant_time_eq(&expected, &payload[tag_start..])
}
