//! The key schedule: QUIC packet and header keys from secrets, as RFC 9001 §5 derives them
//! from TLS secrets, but with the secrets coming from the Noise handshake.
//!
//! A secret is 32 bytes. From it, HKDF-Expand-Label (RFC 8446 §7.1, SHA-256) derives the
//! packet key (`quic key`), IV (`quic iv`) and header-protection key (`quic hp`); a key update
//! replaces it with its `quic ku` expansion (RFC 9001 §6). The AEADs and header protection are
//! rustls's QUIC implementations over ring, the ones quinn uses with TLS.

use ring::hkdf;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::quic::Algorithm;

use quinn_proto::crypto::{HeaderKey, KeyPair, Keys, PacketKey};

/// Secrets are SHA-256 sized.
pub(crate) type Secret = [u8; 32];

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label from RFC 8446 §7.1, with SHA-256. `out` is at most 255 × 32 bytes, far
/// more than any caller asks for.
pub(crate) fn expand_label(secret: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let context_len = [context.len() as u8];
    let info: [&[u8]; 6] = [&length, &label_len, b"tls13 ", label, &context_len, context];
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    // Expanding to a length HKDF-SHA-256 supports (≤ 8160 bytes) cannot fail.
    if let Ok(okm) = prk.expand(&info, Len(out.len())) {
        let _ = okm.fill(out);
    }
}

pub(crate) fn derive(secret: &[u8], label: &[u8], context: &[u8]) -> Secret {
    let mut out = [0u8; 32];
    expand_label(secret, label, context, &mut out);
    out
}

/// The packet key for one direction.
pub(crate) fn packet_key(quic: &'static dyn Algorithm, secret: &Secret) -> Box<dyn PacketKey> {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    expand_label(secret, b"quic key", b"", &mut key);
    expand_label(secret, b"quic iv", b"", &mut iv);
    Box::new(quic.packet_key(AeadKey::from(key), Iv::from(iv)))
}

/// The header-protection key for one direction; it never changes after the handshake.
pub(crate) fn header_key(quic: &'static dyn Algorithm, secret: &Secret) -> Box<dyn HeaderKey> {
    let mut key = [0u8; 32];
    expand_label(secret, b"quic hp", b"", &mut key);
    Box::new(quic.header_protection_key(AeadKey::from(key)))
}

/// Compares in time that does not depend on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The next generation of a 1-RTT secret (a QUIC key update).
pub(crate) fn next_secret(secret: &Secret) -> Secret {
    derive(secret, b"quic ku", b"")
}

/// The keys of one packet space.
pub(crate) fn keys(quic: &'static dyn Algorithm, local: &Secret, remote: &Secret) -> Keys {
    Keys {
        header: KeyPair {
            local: header_key(quic, local),
            remote: header_key(quic, remote),
        },
        packet: KeyPair {
            local: packet_key(quic, local),
            remote: packet_key(quic, remote),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_label_matches_rfc_9001_appendix_a() {
        // RFC 9001 A.1: client_initial_secret's "quic key" for DCID 0x8394c8f03e515708.
        let client_initial: [u8; 32] = [
            0xc0, 0x0c, 0xf1, 0x51, 0xca, 0x5b, 0xe0, 0x75, 0xed, 0x0e, 0xbf, 0xb5, 0xc8, 0x03,
            0x23, 0xc4, 0x2d, 0x6b, 0x7d, 0xb6, 0x78, 0x81, 0x28, 0x9a, 0xf4, 0x00, 0x8f, 0x1f,
            0x6c, 0x35, 0x7a, 0xea,
        ];
        let mut key = [0u8; 16];
        expand_label(&client_initial, b"quic key", b"", &mut key);
        assert_eq!(
            key,
            [
                0x1f, 0x36, 0x96, 0x13, 0xdd, 0x76, 0xd5, 0x46, 0x77, 0x30, 0xef, 0xcb, 0xe3, 0xb1,
                0xa2, 0x2d
            ]
        );
    }

    #[test]
    fn key_updates_change_the_secret_every_time() {
        let s0 = [7u8; 32];
        let s1 = next_secret(&s0);
        let s2 = next_secret(&s1);
        assert!(s0 != s1 && s1 != s2 && s0 != s2);
    }
}
