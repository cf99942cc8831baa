//! Entry points for the fuzz targets in `fuzz/`, for decoders that are not public API.

/// Feeds bytes, cut at the first byte's value, to the HTTP/1 smuggling guard.
pub fn smuggling_guard(data: &[u8]) {
    crate::outbound::feed_smuggling_guard(data);
}
