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
