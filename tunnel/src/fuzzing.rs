//! Entry points for the fuzz targets in `fuzz/`, for decoders that are not public API.

use std::sync::Arc;

use crate::identity::Identity;
use crate::noise;

/// Feeds `data` to a server-side handshake as the CRYPTO bytes of a stranger's Initial.
pub fn handshake(data: &[u8]) {
    noise::fuzz_server_session(
        &Identity::from_secret_bytes([7; 32]),
        Arc::new(noise::Trust::default()),
        data,
    );
}

/// Reads `data` as the decrypted payload of a peer's handshake message and decides on it as
/// a node trusting one CA would: the certificate and parameters a trusted peer could send.
pub fn handshake_payload(data: &[u8]) {
    use std::sync::OnceLock;
    use std::time::SystemTime;

    use crate::certificate::{CaKey, Certificate, Kind, Subject};
    static CA: OnceLock<Option<Certificate>> = OnceLock::new();
    let ca = CA.get_or_init(|| {
        let key = CaKey::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").ok()?;
        let subject = Subject {
            kind: Kind::Ca,
            key: key.public(),
            name: "fuzz".into(),
            datacenter: String::new(),
            services: vec![],
            groups: vec![],
        };
        key.sign(
            subject,
            SystemTime::UNIX_EPOCH,
            std::time::Duration::from_secs(u32::MAX.into()),
        )
        .ok()
    });
    let Ok((certificate, _params)) = noise::split_payload(data) else {
        return;
    };
    let trust = noise::Trust::default();
    trust.set_authorities(ca.iter().cloned().collect());
    let key = crate::identity::PublicKey([7; 32]);
    let _ = trust.admit(key, certificate, false, SystemTime::now());
}

/// Decodes a relay datagram as a gateway would; whatever decodes must encode back to the same
/// bytes, so a gateway never forwards anything but what it read (less one hop).
pub fn relay_datagram(data: &[u8]) {
    use crate::relay::datagram;
    if let Ok(relayed) = datagram::decode(data) {
        assert_eq!(
            datagram::encode(&relayed.dst, &relayed.src, relayed.hops, relayed.packet),
            data
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handshake_entry_points_take_garbage() {
        for bytes in crate::wire::garbage(500, 600) {
            super::handshake(&bytes);
            super::handshake_payload(&bytes);
        }
    }
}
