//! HTTP messages framed on a tunnel stream, decoded as they arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_frame)) = ferry_proxy::codec::Frame::decode(&mut buf) {}
});
