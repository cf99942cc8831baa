//! The HTTP/1 smuggling guard that watches every byte a client sends to the outbound listener.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_proxy::fuzzing::smuggling_guard(data);
});
