//! The header that opens every tunnel stream: what a peer sends first.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = ferry_tunnel::StreamHeader::decode(data) {
        // Whatever decodes must encode back to the same bytes.
        let mut out = bytes::BytesMut::new();
        header.encode(&mut out);
        assert_eq!(&out[2..], data);
    }
});
