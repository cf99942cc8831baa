//! A peer's route updates: announcements (with catalogs and paths), withdrawals, synced.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = ferry_tunnel::Update::decode(data) {
        let mut out = bytes::BytesMut::new();
        update.encode(&mut out);
        assert_eq!(ferry_tunnel::Update::decode(&out[4..]).ok(), Some(update));
    }
});
