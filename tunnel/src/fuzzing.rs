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
