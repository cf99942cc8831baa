//! A peer's announcement of its services.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(catalog) = ferry_tunnel::Catalog::decode(data) {
        let mut out = bytes::BytesMut::new();
        catalog.encode(&mut out);
        assert_eq!(ferry_tunnel::Catalog::decode(&out[4..]).ok(), Some(catalog));
    }
});
