//! Entry points for the fuzz targets in `fuzz/`, for decoders that are not public API.

/// Feeds bytes, cut at the first byte's value, to the HTTP/1 framing guard.
pub fn framing_guard(data: &[u8]) {
    crate::outbound::feed_framing_guard(data);
}
